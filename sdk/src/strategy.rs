//! The five traits a policy implements, one per WIT world.
//!
//! The host drives each as `new` → (`propose` → trial → `observe`)* → `best`;
//! `propose` returning `None` ends the search. Asked again before `observe`, `propose`
//! should answer the same value ([`crate::bisect::Bisection`] keeps that bookkeeping).

use crate::concurrency::{ConcurrencyOutcome, Slo};
use crate::model::ModelFacts;
use crate::offload::{Offload, OffloadBounds};
use crate::types::{
    BatchBounds, BatchProposal, ConcurrencyBounds, ContextLimits, HardwareFacts, TrialOutcome,
};
use crate::variant::{Variant, VariantOutcome, VariantSpace};

/// A context search (world `context-strategy`): finds the largest context that runs.
/// Register the type with [`export_context_search!`](crate::export_context_search).
pub trait ContextSearch: Sized + 'static {
    /// Builds the search from the plugin's settings (JSON object text, `{}` when the
    /// user configured nothing), the machine, the model (at the variant the search runs
    /// at) and what bounds a context besides memory (`limits`: the latency objective, the
    /// request timeout). An `Err` is shown to the user, naming the plugin.
    fn new(
        settings: &str,
        hardware: &HardwareFacts,
        model: &ModelFacts,
        limits: &ContextLimits,
    ) -> Result<Self, String>;

    /// The next context to try (within `model.bounds`), or `None` when done.
    fn propose(&mut self) -> Option<u32>;

    /// The outcome of the trial of the last proposal, or of the host's verification of
    /// `best` (stage `Verify`).
    fn observe(&mut self, outcome: &TrialOutcome);

    /// The largest context considered stable, if any.
    fn best(&self) -> Option<u32>;
}

/// A batch scaler (world `batch-strategy`): finds the batch and micro-batch with the
/// best throughput. Register with [`export_batch_scaler!`](crate::export_batch_scaler).
pub trait BatchScaler: Sized + 'static {
    /// As [`ContextSearch::new`]; every proposal must lie within `bounds`, and
    /// `bounds.initial` was already measured at the context found.
    fn new(
        settings: &str,
        hardware: &HardwareFacts,
        model: &ModelFacts,
        bounds: &BatchBounds,
    ) -> Result<Self, String>;

    /// The next batch and micro-batch to try, or `None` when done.
    fn propose(&mut self) -> Option<BatchProposal>;

    /// The outcome of the trial of the last proposal.
    fn observe(&mut self, outcome: &TrialOutcome);

    /// The batch settled on, if any trial was stable.
    fn best(&self) -> Option<BatchProposal>;
}

/// A concurrency search (world `concurrency-strategy`): finds how many simultaneous
/// streams the machine serves, under the user's objective when there is one. Register
/// with [`export_concurrency_search!`](crate::export_concurrency_search).
pub trait ConcurrencySearch: Sized + 'static {
    /// As [`ContextSearch::new`]; proposals must lie within `bounds`; `slo` is empty
    /// when the user set no objective.
    fn new(
        settings: &str,
        hardware: &HardwareFacts,
        model: &ModelFacts,
        bounds: &ConcurrencyBounds,
        slo: &Slo,
    ) -> Result<Self, String>;

    /// The next number of streams to try, or `None` when done.
    fn propose(&mut self) -> Option<u32>;

    /// The outcome of the trial of the last proposal.
    fn observe(&mut self, outcome: &ConcurrencyOutcome);

    /// The most streams that passed (stable, objective held), if any.
    fn best(&self) -> Option<u32>;
}

/// A variant search (world `variant-strategy`): chooses which server configurations to
/// measure; the host runs each one's context search and batch scaling and keeps every
/// outcome as the frontier (there is no `best`). Register with
/// [`export_variant_search!`](crate::export_variant_search).
pub trait VariantSearch: Sized + 'static {
    /// As [`ContextSearch::new`]; `model` is at `space.initial`, and every proposal must
    /// be one of `space.candidates`.
    fn new(
        settings: &str,
        hardware: &HardwareFacts,
        model: &ModelFacts,
        space: &VariantSpace,
    ) -> Result<Self, String>;

    /// The next variant to measure, or `None` when no remaining one can improve the
    /// frontier.
    fn propose(&mut self) -> Option<Variant>;

    /// What the host measured for the last proposal.
    fn observe(&mut self, outcome: &VariantOutcome);
}

/// An offload search (world `offload-strategy`): how many layers (and which MoE
/// experts) stay on the GPU at a context that does not fit with all of them there.
/// Register with [`export_offload_search!`](crate::export_offload_search).
pub trait OffloadSearch: Sized + 'static {
    /// As [`ContextSearch::new`]; every proposal must lie within `bounds`.
    fn new(
        settings: &str,
        hardware: &HardwareFacts,
        model: &ModelFacts,
        bounds: &OffloadBounds,
    ) -> Result<Self, String>;

    /// The next offload to try at `bounds.ctx`, or `None` when done.
    fn propose(&mut self) -> Option<Offload>;

    /// The outcome of the trial of the last proposal, or of the host's verification of
    /// `best` (stage `Verify`).
    fn observe(&mut self, outcome: &TrialOutcome);

    /// The offload with the most on the GPU that was stable, if any.
    fn best(&self) -> Option<Offload>;
}
