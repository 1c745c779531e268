//! The variant loop's real parts: each variant's plugins loaded from the run's set-up,
//! and its quality cost measured on a llama-server of the run's binary and model.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::backend::llama_server::LlamaServerSpec;
use crate::plugin::{BatchScaler, ContextSearch, PluginError, PluginHost};
use crate::record::{Quality, Variant};
use crate::trial::quality::{QualityMeter, QualityProbe};
use crate::tune::driver::{QualityJudge, VariantPlugins};
use crate::tune::setup::load_context_and_batch;
use crate::tune::RunSetup;

/// The context the quality of a cache is measured at: long enough that half of it is a
/// real prefix, short enough for the shipped text and a small machine.
const QUALITY_CONTEXT: u32 = 4096;

/// Loads each variant's context and batch plugins as the run's own are loaded.
pub(super) struct SetupPlugins<'a> {
    pub host: Arc<PluginHost>,
    pub setup: &'a RunSetup,
}

impl VariantPlugins for SetupPlugins<'_> {
    fn load(
        &mut self,
        variant: &Variant,
        hint: Option<u32>,
    ) -> Result<(ContextSearch, BatchScaler), PluginError> {
        let s = self.setup;
        load_context_and_batch(
            &self.host,
            &s.config,
            &s.hardware,
            &s.thresholds(),
            &s.model,
            variant,
            // The first variant starts where a remembered run did.
            hint.or(s.params().hint),
        )
    }
}

/// Measures a cache's quality cost on the run's llama-server: one server for the f16
/// reference (once), one per variant.
pub(super) struct ServerQuality {
    meter: QualityMeter,
    /// Costs measured before a `--resume`, by variant.
    known: Vec<(Variant, Quality)>,
}

impl ServerQuality {
    pub fn new(
        spec: &LlamaServerSpec,
        trained_context: Option<u32>,
        health_timeout: Duration,
        known: Vec<(Variant, Quality)>,
        cancel: &CancellationToken,
    ) -> Self {
        let ctx = trained_context.map_or(QUALITY_CONTEXT, |t| t.min(QUALITY_CONTEXT));
        let meter = QualityMeter::new(
            spec.clone(),
            QualityProbe::new(ctx),
            health_timeout,
            cancel.clone(),
        );
        Self { meter, known }
    }
}

impl QualityJudge for ServerQuality {
    async fn quality(
        &mut self,
        variant: &Variant,
        _cancel: &CancellationToken,
    ) -> Result<Quality, String> {
        if let Some((_, q)) = self.known.iter().find(|(v, _)| v == variant) {
            return Ok(*q);
        }
        self.meter
            .quality_of(variant)
            .await
            .map_err(|e| e.to_string())
    }
}
