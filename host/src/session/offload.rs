//! The offload phase's real parts: llama.cpp's fit at the context searched (one
//! llama-server start with `-fit on -c CTX`), and the run's offload plugin.
//!
//! Fit's margin (`-fitt`) is what the run allows: under a GPU-memory budget, the
//! device's free memory at load (as the failed trial's server saw it) less the budget,
//! so fit aims at the same figure the trials are held to; otherwise `--fit-target-mb`
//! or llama.cpp's default 1024 MiB.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::backend::llama_server::{
    fit_offload, FitOffloadRequest, LlamaServerSpec, DEFAULT_FIT_MARGIN_MIB,
};
use crate::plugin::{OffloadBounds, OffloadSearch, PluginError, PluginHost};
use crate::record::{FitOffload, TrialConfig, TrialRecord};
use crate::tune::driver::OffloadPlugins;
use crate::tune::setup::{load_offload_search, offload_layers, sampler};
use crate::tune::RunSetup;

pub(super) struct SetupOffload<'a> {
    pub host: Arc<PluginHost>,
    pub setup: &'a RunSetup,
    /// The run's llama-server (`None`: another backend, no offload phase).
    pub spec: Option<LlamaServerSpec>,
    pub health_timeout: Duration,
}

impl SetupOffload<'_> {
    /// `-fitt` for a fit that aims at the run's limit (see the module).
    fn margin_mib(&self, failed: &TrialRecord) -> u64 {
        let budget = self.setup.config.ozone.gpu_memory_budget_mb;
        let free = failed
            .breach
            .as_ref()
            .and_then(|b| b.device.as_ref())
            .map(|d| d.free_mib)
            .or_else(|| {
                let d = failed.memory_breakdown.as_ref()?.devices.first()?;
                Some(d.free_mib)
            });
        match (budget, free) {
            (Some(budget), Some(free)) => free.saturating_sub(budget),
            _ => self
                .setup
                .params()
                .fit_target_mb
                .unwrap_or(DEFAULT_FIT_MARGIN_MIB),
        }
    }
}

impl OffloadPlugins for SetupOffload<'_> {
    fn layers(&self) -> Option<(u32, u32)> {
        self.spec.as_ref()?;
        offload_layers(self.setup)
    }

    async fn fit(
        &mut self,
        config: &TrialConfig,
        failed: &TrialRecord,
        cancel: &CancellationToken,
    ) -> Option<FitOffload> {
        let spec = self.spec.as_ref()?;
        let request = FitOffloadRequest {
            config: config.clone(),
            margin_mib: self.margin_mib(failed),
            sampler: sampler(&self.setup.config, self.setup.thresholds()),
            health_timeout: self.health_timeout,
        };
        Some(fit_offload(spec, &request, cancel).await)
    }

    fn load(&mut self, bounds: &OffloadBounds) -> Result<OffloadSearch, PluginError> {
        load_offload_search(&self.host, self.setup, bounds)
    }
}
