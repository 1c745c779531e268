//! A strategy that misbehaves on purpose, chosen by its settings (`{"mode": "..."}`), so
//! the host's sandbox tests can check every failure path. It exports all three
//! interfaces (context, batch, concurrency), so each kind of handle can be tested.
//! Never listed by `ozone plugins list`; built by `host/tests/artifacts` for the tests only.

use ozone_sdk::{
    settings, BatchBounds, BatchScaler, ConcurrencyBounds, ConcurrencyOutcome, ConcurrencySearch,
    ContextSearch, HardwareFacts, LogLevel, ModelFacts, Slo, TrialOutcome,
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
    fn new(settings: &str, _: &HardwareFacts, _: &ModelFacts) -> Result<Self, String> {
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
    fn propose(&mut self) -> Option<u32> {
        Misbehaving::propose(self)
    }
    fn observe(&mut self, _: &TrialOutcome) {}
    fn best(&self) -> Option<u32> {
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

ozone_sdk::export_context_search!(Misbehaving);
ozone_sdk::export_batch_scaler!(Misbehaving);
ozone_sdk::export_concurrency_search!(Misbehaving);
