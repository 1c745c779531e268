//! The decision table of the documented semantics, run natively here and through the
//! wasm component by the host's plugin tests.
//!
//! The machine is `ozone_sdk::testing::ConcurrencyMachine::default()` unless a case
//! says otherwise: 250 ms to first token per queued prompt (p95 at N streams:
//! 250 × ⌈0.95 N⌉ ms), 40 tokens/s per stream, 160 tokens/s in all.

use ozone_sdk::testing::ConcurrencyMachine;
use ozone_sdk::{Slo, SloBound, SloMetric};

#[derive(Debug, Clone)]
pub struct Case {
    pub name: &'static str,
    pub settings: &'static str,
    /// The host's `max_concurrency` (bounds `1..=max`).
    pub max: u32,
    pub slo: Slo,
    pub machine: ConcurrencyMachine,
    /// What `best()` must return.
    pub best: Option<u32>,
    /// The exact proposals.
    pub proposals: &'static [u32],
}

fn slo(bounds: &[(SloMetric, f64)]) -> Slo {
    Slo {
        bounds: bounds
            .iter()
            .map(|&(metric, value)| SloBound { metric, value })
            .collect(),
    }
}

pub fn cases() -> Vec<Case> {
    let machine = ConcurrencyMachine::default();
    let shaky = ConcurrencyMachine {
        unstable_above: Some(10),
        ..machine
    };
    vec![
        Case {
            name: "no objective: the original 1, 2, 4, 8",
            settings: "{}",
            max: 64,
            slo: Slo::default(),
            machine,
            best: Some(8),
            proposals: &[1, 2, 4, 8],
        },
        Case {
            name: "no objective: stops at the first level that is not stable",
            settings: "{}",
            max: 64,
            slo: Slo::default(),
            machine: ConcurrencyMachine {
                unstable_above: Some(2),
                ..machine
            },
            best: Some(2),
            proposals: &[1, 2, 4],
        },
        Case {
            name: "no objective: levels from the settings, those above the max skipped",
            settings: r#"{"levels": [1, 3, 6, 12, 96]}"#,
            max: 64,
            slo: Slo::default(),
            machine,
            best: Some(12),
            proposals: &[1, 3, 6, 12],
        },
        Case {
            name: "an objective between two levels ends between them after bisection",
            settings: "{}",
            max: 64,
            // p95 TTFT: 4 streams 1000 ms, 6 → 1500, 7 → 1750, 8 → 2000.
            slo: slo(&[(SloMetric::TtftP95, 1600.0)]),
            machine,
            best: Some(6),
            proposals: &[1, 2, 4, 8, 6, 7],
        },
        Case {
            name: "an objective tighter than one stream: nothing passes",
            settings: "{}",
            max: 64,
            slo: slo(&[(SloMetric::TtftP95, 100.0)]),
            machine,
            best: None,
            proposals: &[1],
        },
        Case {
            name: "a loose objective reaches the cap",
            settings: "{}",
            max: 64,
            slo: slo(&[(SloMetric::TtftP95, 1e9)]),
            machine,
            best: Some(64),
            proposals: &[1, 2, 4, 8, 16, 32, 64],
        },
        Case {
            name: "never above the cap, even between powers of two",
            settings: "{}",
            max: 48,
            slo: slo(&[(SloMetric::E2eP95, 1e9)]),
            machine,
            best: Some(48),
            proposals: &[1, 2, 4, 8, 16, 32, 48],
        },
        Case {
            name: "a throughput floor: each stream at least 15 tokens/s",
            settings: "{}",
            max: 64,
            // 160 / 10 = 16 passes, 160 / 11 ≈ 14.5 misses.
            slo: slo(&[(SloMetric::DecodeMin, 15.0)]),
            machine,
            best: Some(10),
            proposals: &[1, 2, 4, 8, 16, 12, 10, 11],
        },
        Case {
            name: "an unstable level bounds the search like a miss",
            settings: "{}",
            max: 64,
            slo: slo(&[(SloMetric::TtftP95, 1e9)]),
            machine: shaky,
            best: Some(10),
            proposals: &[1, 2, 4, 8, 16, 12, 10, 11],
        },
    ]
}
