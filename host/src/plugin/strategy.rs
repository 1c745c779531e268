//! Handles to live plugin instances — [`ContextSearch`], [`BatchScaler`],
//! [`ConcurrencySearch`], [`OffloadSearch`], [`VariantSearch`] — and the [`Strategy`]
//! trait the search loop drives the first four by. Each handle owns its store; every call
//! is metered, and its proposals are checked against the bounds the plugin was created
//! with.

use ozone_sdk::{
    BatchBounds, BatchProposal, ConcurrencyBounds, ConcurrencyOutcome, ContextBounds, Offload,
    OffloadBounds, TrialOutcome, Variant, VariantOutcome, VariantSpace,
};
use wasmtime::component::ResourceAny;
use wasmtime::Store;

use super::bindings::{self, wit};
use super::sandbox::{self, StoreState};
use super::{PluginError, SandboxLimits};

/// What the search loop needs of a plugin: every kind is driven alike, as
/// `propose` → trial → `observe` → … → `best`.
pub trait Strategy {
    /// What the plugin proposes: a context, a batch, a stream count, an offload.
    type Proposal;
    /// What the plugin is told after each trial.
    type Outcome;

    /// The plugin's name (built-in name or file path).
    fn name(&self) -> &str;

    /// The next value to try, checked against the bounds; `None` when finished.
    fn propose(&mut self) -> Result<Option<Self::Proposal>, PluginError>;

    /// Tells the plugin the outcome of the trial of its last proposal.
    fn observe(&mut self, outcome: &Self::Outcome) -> Result<(), PluginError>;

    /// The value the plugin settled on.
    fn best(&mut self) -> Result<Option<Self::Proposal>, PluginError>;
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
    type Proposal = u32;
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
                .call_observe(store, r, &outcome)
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
    type Proposal = BatchProposal;
    type Outcome = TrialOutcome;

    fn name(&self) -> &str {
        &self.inner.plugin
    }

    fn propose(&mut self) -> Result<Option<BatchProposal>, PluginError> {
        let value = self.inner.call("propose", |store, b, r| {
            b.ozone_strategy_batch()
                .batch_scaler()
                .call_propose(store, r)
        })?;
        match value.map(BatchProposal::from) {
            Some(p) if !self.bounds.accepts(p) => Err(PluginError::BatchOutOfRange {
                plugin: self.inner.plugin.clone(),
                batch: p.batch,
                ubatch: p.ubatch,
                min: self.bounds.min,
                max: self.bounds.max,
                max_ubatch: self.bounds.max_ubatch,
            }),
            other => Ok(other),
        }
    }

    fn observe(&mut self, outcome: &TrialOutcome) -> Result<(), PluginError> {
        let outcome = wit::TrialOutcome::from(outcome);
        self.inner.call("observe", |store, b, r| {
            b.ozone_strategy_batch()
                .batch_scaler()
                .call_observe(store, r, &outcome)
        })
    }

    fn best(&mut self) -> Result<Option<BatchProposal>, PluginError> {
        self.inner
            .call("best", |store, b, r| {
                b.ozone_strategy_batch().batch_scaler().call_best(store, r)
            })
            .map(|best| best.map(Into::into))
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
    type Proposal = u32;
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

/// A running offload-search plugin.
pub struct OffloadSearch {
    pub(super) inner: Sandboxed<bindings::offload::OffloadStrategy>,
    pub(super) bounds: OffloadBounds,
}

impl OffloadSearch {
    /// The bounds every proposal is checked against (handed to the plugin at create).
    pub fn bounds(&self) -> OffloadBounds {
        self.bounds
    }
}

impl Strategy for OffloadSearch {
    type Proposal = Offload;
    type Outcome = TrialOutcome;

    fn name(&self) -> &str {
        &self.inner.plugin
    }

    fn propose(&mut self) -> Result<Option<Offload>, PluginError> {
        let value = self.inner.call("propose", |store, b, r| {
            b.ozone_strategy_offload()
                .offload_search()
                .call_propose(store, r)
        })?;
        match value.map(Offload::from) {
            Some(o) if !self.bounds.accepts(o) => Err(PluginError::OffloadOutOfRange {
                plugin: self.inner.plugin.clone(),
                gpu_layers: o.gpu_layers,
                cpu_moe_layers: o.cpu_moe_layers,
                layers: self.bounds.layers,
                expert_layers: self.bounds.expert_layers,
            }),
            other => Ok(other),
        }
    }

    fn observe(&mut self, outcome: &TrialOutcome) -> Result<(), PluginError> {
        let outcome = wit::TrialOutcome::from(outcome);
        self.inner.call("observe", |store, b, r| {
            b.ozone_strategy_offload()
                .offload_search()
                .call_observe(store, r, &outcome)
        })
    }

    fn best(&mut self) -> Result<Option<Offload>, PluginError> {
        self.inner
            .call("best", |store, b, r| {
                b.ozone_strategy_offload()
                    .offload_search()
                    .call_best(store, r)
            })
            .map(|best| best.map(Into::into))
    }
}

/// A running variant-search plugin: `propose` → the host measures the variant →
/// `observe`, until `propose` says `None` (no `best`: the host keeps every variant).
pub struct VariantSearch {
    pub(super) inner: Sandboxed<bindings::variants::VariantStrategy>,
    pub(super) space: VariantSpace,
    /// Every variant proposed and accepted, in order.
    pub(super) proposed: Vec<Variant>,
    /// Proposed and not observed yet: asked again, the plugin may repeat it.
    pub(super) pending: Option<Variant>,
}

impl VariantSearch {
    pub fn name(&self) -> &str {
        &self.inner.plugin
    }

    /// The space every proposal is checked against.
    pub fn space(&self) -> &VariantSpace {
        &self.space
    }

    /// The next variant to measure: one of the space's candidates, not proposed before
    /// (the host measures each once); `None` when the plugin is done.
    pub fn propose(&mut self) -> Result<Option<Variant>, PluginError> {
        let value = self.inner.call("propose", |store, b, r| {
            b.ozone_strategy_variants()
                .variant_search()
                .call_propose(store, r)
        })?;
        let Some(variant) = value.map(Variant::from) else {
            return Ok(None);
        };
        let repeated = self.pending != Some(variant) && self.proposed.contains(&variant);
        if !self.space.accepts(&variant) || repeated {
            return Err(PluginError::ImpossibleVariant {
                plugin: self.inner.plugin.clone(),
                variant: variant.to_string(),
                why: if repeated {
                    "it was measured already".into()
                } else {
                    format!(
                        "it is not one of the {} candidates (--kv-cache-types, --flash-attn, \
                         --threads; a quantized V cache needs flash attention)",
                        self.space.candidates.len()
                    )
                },
            });
        }
        if self.pending != Some(variant) {
            self.proposed.push(variant);
            self.pending = Some(variant);
        }
        Ok(Some(variant))
    }

    /// What the host measured for the last proposal.
    pub fn observe(&mut self, outcome: &VariantOutcome) -> Result<(), PluginError> {
        self.pending = None;
        let outcome = wit::VariantOutcome::from(outcome);
        self.inner.call("observe", |store, b, r| {
            b.ozone_strategy_variants()
                .variant_search()
                .call_observe(store, r, outcome)
        })
    }
}
