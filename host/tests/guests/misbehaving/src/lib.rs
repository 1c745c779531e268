//! A strategy that misbehaves on purpose, chosen by its settings (`{"mode": "..."}`), so
//! the host's sandbox tests can check every failure path. It exports all five
//! interfaces (context, batch, concurrency, variants, offload), so each kind of handle
//! can be tested.
//! Never listed by `ozone plugins list`; built by `host/tests/artifacts` for the tests only.

use ozone_sdk::{
    settings, BatchBounds, BatchProposal, BatchScaler, ConcurrencyBounds, ConcurrencyOutcome,
    ConcurrencySearch, ContextLimits, ContextSearch, HardwareFacts, LogLevel, ModelFacts, Offload,
    OffloadBounds, OffloadSearch, Slo, TrialOutcome, Variant, VariantOutcome, VariantSearch,
    VariantSpace,
};
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Settings {
    /// `loop`, `loop-in-create`, `memory-bomb`, `panic`, `stack-overflow`, `wasi`,
    /// `propose` (always proposes `value`), `stubborn` (proposes `value` once, then
    /// names it as its best whatever it observed).
    mode: String,
    value: u32,
}

pub struct Misbehaving {
    settings: Settings,
    proposals: u32,
}

#[inline(never)]
fn recurse(depth: u64, sink: &mut [u64; 64]) -> u64 {
    sink[(depth % 64) as usize] = depth;
    if depth == u64::MAX {
        return 0;
    }
    recurse(depth + 1, sink) + sink[(depth % 7) as usize]
}

impl Misbehaving {
    fn new(settings: &str) -> Result<Self, String> {
        let settings: Settings = settings::parse(settings)?;
        if settings.mode == "loop-in-create" {
            #[allow(clippy::empty_loop)]
            loop {}
        }
        Ok(Self {
            settings,
            proposals: 0,
        })
    }

    fn propose(&mut self) -> Option<u32> {
        self.proposals += 1;
        match self.settings.mode.as_str() {
            "stubborn" if self.proposals > 1 => None,
            "loop" => {
                let mut x: u64 = 1;
                loop {
                    x = std::hint::black_box(x.wrapping_mul(3));
                }
            }
            "memory-bomb" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 8 << 20]);
                    ozone_sdk::log(LogLevel::Debug, &format!("holding {} MiB", hoard.len() * 8));
                }
            }
            "panic" => panic!("deliberate failure in propose"),
            "stack-overflow" => {
                let mut sink = [0u64; 64];
                Some(recurse(0, &mut sink) as u32)
            }
            "wasi" => {
                // Reading the environment needs WASI, which the host does not grant.
                Some(std::env::vars().count() as u32)
            }
            _ => Some(self.settings.value),
        }
    }
}

impl ContextSearch for Misbehaving {
    fn new(
        settings: &str,
        _: &HardwareFacts,
        _: &ModelFacts,
        _: &ContextLimits,
    ) -> Result<Self, String> {
        Misbehaving::new(settings)
    }
    fn propose(&mut self) -> Option<u32> {
        Misbehaving::propose(self)
    }
    fn observe(&mut self, _: &TrialOutcome) {}
    fn best(&self) -> Option<u32> {
        (self.settings.mode == "stubborn").then_some(self.settings.value)
    }
}

impl BatchScaler for Misbehaving {
    fn new(s: &str, _: &HardwareFacts, _: &ModelFacts, _: &BatchBounds) -> Result<Self, String> {
        Misbehaving::new(s)
    }
    /// `value` as the batch and its micro-batch.
    fn propose(&mut self) -> Option<BatchProposal> {
        Misbehaving::propose(self).map(|v| BatchProposal {
            batch: v,
            ubatch: v,
        })
    }
    fn observe(&mut self, _: &TrialOutcome) {}
    fn best(&self) -> Option<BatchProposal> {
        None
    }
}

impl ConcurrencySearch for Misbehaving {
    fn new(
        s: &str,
        _: &HardwareFacts,
        _: &ModelFacts,
        _: &ConcurrencyBounds,
        _: &Slo,
    ) -> Result<Self, String> {
        Misbehaving::new(s)
    }
    fn propose(&mut self) -> Option<u32> {
        Misbehaving::propose(self)
    }
    fn observe(&mut self, _: &ConcurrencyOutcome) {}
    fn best(&self) -> Option<u32> {
        None
    }
}

impl VariantSearch for Misbehaving {
    fn new(s: &str, _: &HardwareFacts, _: &ModelFacts, _: &VariantSpace) -> Result<Self, String> {
        Misbehaving::new(s)
    }
    /// In `propose` mode: the default variant with `value` threads, which no space of
    /// the tests holds (an impossible variant); `value` 0: the default variant, again and
    /// again after it was observed.
    fn propose(&mut self) -> Option<Variant> {
        Misbehaving::propose(self).map(|v| Variant {
            threads: (v > 0).then_some(v),
            ..Variant::default()
        })
    }
    fn observe(&mut self, _: &VariantOutcome) {}
}

impl OffloadSearch for Misbehaving {
    fn new(s: &str, _: &HardwareFacts, _: &ModelFacts, _: &OffloadBounds) -> Result<Self, String> {
        Misbehaving::new(s)
    }
    /// `value` layers on the GPU.
    fn propose(&mut self) -> Option<Offload> {
        Misbehaving::propose(self).map(|v| Offload {
            gpu_layers: v,
            cpu_moe_layers: 0,
        })
    }
    fn observe(&mut self, _: &TrialOutcome) {}
    fn best(&self) -> Option<Offload> {
        None
    }
}

ozone_sdk::export_context_search!(Misbehaving);
ozone_sdk::export_batch_scaler!(Misbehaving);
ozone_sdk::export_concurrency_search!(Misbehaving);
ozone_sdk::export_variant_search!(Misbehaving);
ozone_sdk::export_offload_search!(Misbehaving);
