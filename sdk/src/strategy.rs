//! The two traits a policy implements.

use crate::types::{HardwareFacts, ModelInfo, Outcome};

/// A context search: finds the largest context that runs stable.
///
/// The host drives it as `new` → (`propose` → trial → `observe`)* → `best`. `propose`
/// returning `None` ends the search. Register the type with
/// [`export_context_search!`](crate::export_context_search).
pub trait ContextSearch: Sized + 'static {
    /// Builds the search from the plugin's settings (JSON object text, `{}` when the
    /// user configured nothing), the machine and the model. An `Err` is shown to the
    /// user, naming the plugin.
    fn new(settings: &str, hardware: &HardwareFacts, model: &ModelInfo) -> Result<Self, String>;

    /// The next context to try (must be within `model.bounds`), or `None` when done.
    fn propose(&mut self) -> Option<u32>;

    /// The outcome of the trial of the last proposal.
    fn observe(&mut self, outcome: &Outcome);

    /// The largest context considered stable, if any.
    fn best(&self) -> Option<u32>;
}

/// A batch scaler: finds the batch size with the best throughput.
///
/// Same protocol as [`ContextSearch`]; register with
/// [`export_batch_scaler!`](crate::export_batch_scaler).
pub trait BatchScaler: Sized + 'static {
    /// See [`ContextSearch::new`].
    fn new(settings: &str, hardware: &HardwareFacts, model: &ModelInfo) -> Result<Self, String>;

    /// The next batch size to try, or `None` when done.
    fn propose(&mut self) -> Option<u32>;

    /// The outcome of the trial of the last proposal.
    fn observe(&mut self, outcome: &Outcome);

    /// The batch size settled on, if any trial was stable.
    fn best(&self) -> Option<u32>;
}
