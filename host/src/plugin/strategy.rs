//! Handles to live plugin instances: [`ContextSearch`] and [`BatchScaler`]. Each owns
//! its store; every call is metered, and its proposals are checked against the bounds.

use wasmtime::component::ResourceAny;
use wasmtime::Store;

use super::bindings::{self, wit};
use super::facts::{ContextBounds, Outcome};
use super::sandbox::{self, StoreState};
use super::{PluginError, SandboxLimits};

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
    /// The plugin's name (built-in name or file path).
    pub fn name(&self) -> &str {
        &self.inner.plugin
    }

    /// The next context to try, checked against the bounds; `None` when finished.
    pub fn propose(&mut self) -> Result<Option<u32>, PluginError> {
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

    /// The bounds every proposal is checked against.
    pub fn bounds(&self) -> ContextBounds {
        self.bounds
    }

    /// Tells the plugin the outcome of the trial of its last proposal.
    pub fn observe(&mut self, outcome: &Outcome) -> Result<(), PluginError> {
        let outcome = wit::TrialOutcome::from(outcome);
        self.inner.call("observe", |store, b, r| {
            b.ozone_strategy_context()
                .context_search()
                .call_observe(store, r, outcome)
        })
    }

    /// The largest context the plugin considers stable.
    pub fn best(&mut self) -> Result<Option<u32>, PluginError> {
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
    /// Largest batch the host accepts (see [`super::PluginHost::load_batch`]).
    pub(super) max_batch: u32,
}

impl BatchScaler {
    pub fn name(&self) -> &str {
        &self.inner.plugin
    }

    /// The next batch size to try, checked to be in `1..=max_batch`; `None` when finished.
    pub fn propose(&mut self) -> Result<Option<u32>, PluginError> {
        let value = self.inner.call("propose", |store, b, r| {
            b.ozone_strategy_batch()
                .batch_scaler()
                .call_propose(store, r)
        })?;
        match value {
            Some(batch) if batch == 0 || batch > self.max_batch => {
                Err(PluginError::BatchOutOfRange {
                    plugin: self.inner.plugin.clone(),
                    value: batch,
                    max: self.max_batch,
                })
            }
            other => Ok(other),
        }
    }

    pub fn observe(&mut self, outcome: &Outcome) -> Result<(), PluginError> {
        let outcome = wit::TrialOutcome::from(outcome);
        self.inner.call("observe", |store, b, r| {
            b.ozone_strategy_batch()
                .batch_scaler()
                .call_observe(store, r, outcome)
        })
    }

    pub fn best(&mut self) -> Result<Option<u32>, PluginError> {
        self.inner.call("best", |store, b, r| {
            b.ozone_strategy_batch().batch_scaler().call_best(store, r)
        })
    }

    /// The host's upper bound on proposals.
    pub fn max_batch(&self) -> u32 {
        self.max_batch
    }
}
