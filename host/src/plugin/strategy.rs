//! Handles to live plugin instances — [`ContextSearch`], [`BatchScaler`],
//! [`ConcurrencySearch`] — and the [`Strategy`] trait the search loop drives them by.
//! Each handle owns its store; every call is metered, and its proposals are checked
//! against the bounds the plugin was created with.

use ozone_sdk::{BatchBounds, ConcurrencyBounds, ConcurrencyOutcome, ContextBounds, TrialOutcome};
use wasmtime::component::ResourceAny;
use wasmtime::Store;

use super::bindings::{self, wit};
use super::sandbox::{self, StoreState};
use super::{PluginError, SandboxLimits};

/// What the search loop needs of a plugin: every kind is driven alike, as
/// `propose` → trial → `observe` → … → `best`.
pub trait Strategy {
    /// What the plugin is told after each trial.
    type Outcome;

    /// The plugin's name (built-in name or file path).
    fn name(&self) -> &str;

    /// The next value to try, checked against the bounds; `None` when finished.
    fn propose(&mut self) -> Result<Option<u32>, PluginError>;

    /// Tells the plugin the outcome of the trial of its last proposal.
    fn observe(&mut self, outcome: &Self::Outcome) -> Result<(), PluginError>;

    /// The value the plugin settled on.
    fn best(&mut self) -> Result<Option<u32>, PluginError>;
}

/// A store with its instantiated world and the strategy resource, or nothing once a
/// call failed: a trapped store is never reused.
pub(super) struct Sandboxed<B> {
    plugin: String,
    limits: SandboxLimits,
    live: Option<(Store<StoreState>, B, ResourceAny)>,
}

impl<B> Sandboxed<B> {
    pub(super) fn new(
        plugin: String,
        limits: SandboxLimits,
        store: Store<StoreState>,
        bindings: B,
        resource: ResourceAny,
    ) -> Self {
        Self {
            plugin,
            limits,
            live: Some((store, bindings, resource)),
        }
    }

    fn call<R>(
        &mut self,
        call: &'static str,
        f: impl FnOnce(&mut Store<StoreState>, &B, ResourceAny) -> wasmtime::Result<R>,
    ) -> Result<R, PluginError> {
        let Some((store, bindings, resource)) = self.live.as_mut() else {
            return Err(PluginError::Discarded {
                plugin: self.plugin.clone(),
            });
        };
        sandbox::arm(store, &self.limits)?;
        match f(store, bindings, *resource) {
            Ok(value) => Ok(value),
            Err(error) => {
                let error = sandbox::classify(error, store, call, &self.limits);
                self.live = None;
                Err(error)
            }
        }
    }
}

/// A running context-search plugin.
pub struct ContextSearch {
    pub(super) inner: Sandboxed<bindings::context::ContextStrategy>,
    pub(super) bounds: ContextBounds,
}

impl ContextSearch {
    /// The bounds every proposal is checked against.
    pub fn bounds(&self) -> ContextBounds {
        self.bounds
    }
}

impl Strategy for ContextSearch {
    type Outcome = TrialOutcome;

    fn name(&self) -> &str {
        &self.inner.plugin
    }

    fn propose(&mut self) -> Result<Option<u32>, PluginError> {
        let value = self.inner.call("propose", |store, b, r| {
            b.ozone_strategy_context()
                .context_search()
                .call_propose(store, r)
        })?;
        match value {
            Some(ctx) if !self.bounds.accepts(ctx) => Err(PluginError::ContextOutOfRange {
                plugin: self.inner.plugin.clone(),
                value: ctx,
                min: self.bounds.min,
                max: self.bounds.max,
                granularity: self.bounds.granularity,
            }),
            other => Ok(other),
        }
    }

    fn observe(&mut self, outcome: &TrialOutcome) -> Result<(), PluginError> {
        let outcome = wit::TrialOutcome::from(outcome);
        self.inner.call("observe", |store, b, r| {
            b.ozone_strategy_context()
                .context_search()
                .call_observe(store, r, outcome)
        })
    }

    fn best(&mut self) -> Result<Option<u32>, PluginError> {
        self.inner.call("best", |store, b, r| {
            b.ozone_strategy_context()
                .context_search()
                .call_best(store, r)
        })
    }
}

/// A running batch-scaling plugin.
pub struct BatchScaler {
    pub(super) inner: Sandboxed<bindings::batch::BatchStrategy>,
    pub(super) bounds: BatchBounds,
}

impl BatchScaler {
    /// The bounds every proposal is checked against (handed to the plugin at create).
    pub fn bounds(&self) -> BatchBounds {
        self.bounds
    }
}

impl Strategy for BatchScaler {
    type Outcome = TrialOutcome;

    fn name(&self) -> &str {
        &self.inner.plugin
    }

    fn propose(&mut self) -> Result<Option<u32>, PluginError> {
        let value = self.inner.call("propose", |store, b, r| {
            b.ozone_strategy_batch()
                .batch_scaler()
                .call_propose(store, r)
        })?;
        match value {
            Some(batch) if !self.bounds.accepts(batch) => Err(PluginError::BatchOutOfRange {
                plugin: self.inner.plugin.clone(),
                value: batch,
                min: self.bounds.min,
                max: self.bounds.max,
            }),
            other => Ok(other),
        }
    }

    fn observe(&mut self, outcome: &TrialOutcome) -> Result<(), PluginError> {
        let outcome = wit::TrialOutcome::from(outcome);
        self.inner.call("observe", |store, b, r| {
            b.ozone_strategy_batch()
                .batch_scaler()
                .call_observe(store, r, outcome)
        })
    }

    fn best(&mut self) -> Result<Option<u32>, PluginError> {
        self.inner.call("best", |store, b, r| {
            b.ozone_strategy_batch().batch_scaler().call_best(store, r)
        })
    }
}

/// A running concurrency-search plugin.
pub struct ConcurrencySearch {
    pub(super) inner: Sandboxed<bindings::concurrency::ConcurrencyStrategy>,
    pub(super) bounds: ConcurrencyBounds,
}

impl ConcurrencySearch {
    /// The bounds every proposal is checked against (handed to the plugin at create).
    pub fn bounds(&self) -> ConcurrencyBounds {
        self.bounds
    }
}

impl Strategy for ConcurrencySearch {
    type Outcome = ConcurrencyOutcome;

    fn name(&self) -> &str {
        &self.inner.plugin
    }

    fn propose(&mut self) -> Result<Option<u32>, PluginError> {
        let value = self.inner.call("propose", |store, b, r| {
            b.ozone_strategy_concurrency()
                .concurrency_search()
                .call_propose(store, r)
        })?;
        match value {
            Some(n) if !self.bounds.accepts(n) => Err(PluginError::ConcurrencyOutOfRange {
                plugin: self.inner.plugin.clone(),
                value: n,
                min: self.bounds.min,
                max: self.bounds.max,
            }),
            other => Ok(other),
        }
    }

    fn observe(&mut self, outcome: &ConcurrencyOutcome) -> Result<(), PluginError> {
        let outcome = wit::ConcurrencyOutcome::from(outcome);
        self.inner.call("observe", |store, b, r| {
            b.ozone_strategy_concurrency()
                .concurrency_search()
                .call_observe(store, r, &outcome)
        })
    }

    fn best(&mut self) -> Result<Option<u32>, PluginError> {
        self.inner.call("best", |store, b, r| {
            b.ozone_strategy_concurrency()
                .concurrency_search()
                .call_best(store, r)
        })
    }
}
