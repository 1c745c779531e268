//! The three traits a policy implements, one per WIT world.
//!
//! The host drives each as `new` → (`propose` → trial → `observe`)* → `best`;
//! `propose` returning `None` ends the search. Asked again before `observe`, `propose`
//! should answer the same value ([`crate::bisect::Bisection`] keeps that bookkeeping).

use crate::concurrency::{ConcurrencyOutcome, Slo};
use crate::types::{BatchBounds, ConcurrencyBounds, HardwareFacts, ModelFacts, TrialOutcome};

/// A context search (world `context-strategy`): finds the largest context that runs.
/// Register the type with [`export_context_search!`](crate::export_context_search).
pub trait ContextSearch: Sized + 'static {
    /// Builds the search from the plugin's settings (JSON object text, `{}` when the
    /// user configured nothing), the machine and the model. An `Err` is shown to the
    /// user, naming the plugin.
    fn new(settings: &str, hardware: &HardwareFacts, model: &ModelFacts) -> Result<Self, String>;

    /// The next context to try (within `model.bounds`), or `None` when done.
    fn propose(&mut self) -> Option<u32>;

    /// The outcome of the trial of the last proposal, or of the host's verification of
    /// `best` (stage `Verify`).
    fn observe(&mut self, outcome: &TrialOutcome);

    /// The largest context considered stable, if any.
    fn best(&self) -> Option<u32>;
}

/// A batch scaler (world `batch-strategy`): finds the batch size with the best
/// throughput. Register with [`export_batch_scaler!`](crate::export_batch_scaler).
pub trait BatchScaler: Sized + 'static {
    /// As [`ContextSearch::new`]; every proposal must lie within `bounds`, and
    /// `bounds.initial` was already measured at the context found.
    fn new(
        settings: &str,
        hardware: &HardwareFacts,
        model: &ModelFacts,
        bounds: &BatchBounds,
    ) -> Result<Self, String>;

    /// The next batch size to try, or `None` when done.
    fn propose(&mut self) -> Option<u32>;

    /// The outcome of the trial of the last proposal.
    fn observe(&mut self, outcome: &TrialOutcome);

    /// The batch size settled on, if any trial was stable.
    fn best(&self) -> Option<u32>;
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
