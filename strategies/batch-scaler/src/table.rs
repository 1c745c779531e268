//! The decision table of the documented semantics, run natively here and through the
//! wasm component by the host's plugin tests.

use ozone_sdk::{BatchBounds, BatchProposal};

/// One scenario: a prefill curve peaking at micro-batch `best_batch`, out of memory
/// above micro-batch `oom_above` (see `ozone_sdk::testing::BatchMachine`), within the
/// host's `bounds`. Proposals and the best are `(batch, ubatch)`.
#[derive(Debug, Clone)]
pub struct Case {
    pub name: &'static str,
    pub settings: &'static str,
    pub bounds: BatchBounds,
    pub best_batch: u32,
    pub oom_above: Option<u32>,
    /// What `best()` must return.
    pub best: Option<(u32, u32)>,
    /// The exact proposals.
    pub proposals: &'static [(u32, u32)],
}

impl Case {
    pub fn best(&self) -> Option<BatchProposal> {
        self.best
            .map(|(batch, ubatch)| BatchProposal { batch, ubatch })
    }

    pub fn proposals(&self) -> Vec<BatchProposal> {
        self.proposals
            .iter()
            .map(|&(batch, ubatch)| BatchProposal { batch, ubatch })
            .collect()
    }
}

/// Bounds `1..=max`, micro-batches up to 512, starting at `initial` whole.
const fn bounds(initial: u32, max: u32) -> BatchBounds {
    BatchBounds {
        min: 1,
        max,
        max_ubatch: 512,
        initial: BatchProposal {
            batch: initial,
            ubatch: if initial < 512 { initial } else { 512 },
        },
    }
}

pub fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "double while throughput improves, stop at the regression",
            settings: "{}",
            bounds: bounds(32, 256),
            best_batch: 128,
            oom_above: None,
            best: Some((128, 128)),
            proposals: &[(32, 32), (64, 64), (128, 128), (256, 256)],
        },
        Case {
            name: "out of memory above 64: half the micro-batch, then the best stable",
            settings: "{}",
            bounds: bounds(32, 256),
            best_batch: 512,
            oom_above: Some(64),
            best: Some((64, 64)),
            proposals: &[(32, 32), (64, 64), (128, 128), (128, 64)],
        },
        Case {
            name: "never above the host's max",
            settings: "{}",
            bounds: bounds(64, 256),
            best_batch: 4096,
            oom_above: None,
            best: Some((256, 256)),
            proposals: &[(64, 64), (128, 128), (256, 256)],
        },
        Case {
            name: "a lower max from the host",
            settings: "{}",
            bounds: bounds(32, 96),
            best_batch: 4096,
            oom_above: None,
            best: Some((96, 96)),
            proposals: &[(32, 32), (64, 64), (96, 96)],
        },
        Case {
            name: "starts at the host's initial batch",
            settings: "{}",
            bounds: bounds(16, 256),
            best_batch: 32,
            oom_above: None,
            best: Some((32, 32)),
            proposals: &[(16, 16), (32, 32), (64, 64)],
        },
        Case {
            name: "an initial batch above the max starts at the max",
            settings: "{}",
            bounds: bounds(512, 256),
            best_batch: 4096,
            oom_above: None,
            best: Some((256, 256)),
            proposals: &[(256, 256)],
        },
        Case {
            name: "first trial fails: half the micro-batch, then back off by halves",
            settings: "{}",
            bounds: bounds(32, 256),
            best_batch: 128,
            oom_above: Some(8),
            best: Some((16, 8)),
            proposals: &[(32, 32), (32, 16), (16, 16), (16, 8)],
        },
        Case {
            name: "nothing stable",
            settings: "{}",
            bounds: bounds(16, 256),
            best_batch: 128,
            oom_above: Some(0),
            best: None,
            proposals: &[
                (16, 16),
                (16, 8),
                (8, 8),
                (8, 4),
                (4, 4),
                (4, 2),
                (2, 2),
                (2, 1),
                (1, 1),
            ],
        },
        Case {
            name: "settings: factor 1.5 (the host's max_batch 512)",
            settings: r#"{"scale_up_factor": 1.5, "max_batch": 9999, "other": "ignored"}"#,
            bounds: bounds(32, 512),
            best_batch: 128,
            oom_above: None,
            best: Some((108, 108)),
            proposals: &[(32, 32), (48, 48), (72, 72), (108, 108), (162, 162)],
        },
    ]
}
