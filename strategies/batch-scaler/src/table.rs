//! The decision table of the documented semantics, run natively here and through the
//! wasm component by the host's plugin tests.

use ozone_sdk::BatchBounds;

/// One scenario: a throughput curve peaking at `best_batch`, out of memory above
/// `oom_above` (see `ozone_sdk::testing::BatchMachine`), within the host's `bounds`.
#[derive(Debug, Clone)]
pub struct Case {
    pub name: &'static str,
    pub settings: &'static str,
    pub bounds: BatchBounds,
    pub best_batch: u32,
    pub oom_above: Option<u32>,
    /// What `best()` must return.
    pub best: Option<u32>,
    /// The exact proposals.
    pub proposals: &'static [u32],
}

/// Bounds `1..=max` starting at `initial`.
const fn bounds(initial: u32, max: u32) -> BatchBounds {
    BatchBounds {
        min: 1,
        max,
        initial,
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
            best: Some(128),
            proposals: &[32, 64, 128, 256],
        },
        Case {
            name: "out of memory above 64: settle on the best stable",
            settings: "{}",
            bounds: bounds(32, 256),
            best_batch: 512,
            oom_above: Some(64),
            best: Some(64),
            proposals: &[32, 64, 128],
        },
        Case {
            name: "never above the host's max",
            settings: "{}",
            bounds: bounds(64, 256),
            best_batch: 4096,
            oom_above: None,
            best: Some(256),
            proposals: &[64, 128, 256],
        },
        Case {
            name: "a lower max from the host",
            settings: "{}",
            bounds: bounds(32, 96),
            best_batch: 4096,
            oom_above: None,
            best: Some(96),
            proposals: &[32, 64, 96],
        },
        Case {
            name: "starts at the host's initial batch",
            settings: "{}",
            bounds: bounds(16, 256),
            best_batch: 32,
            oom_above: None,
            best: Some(32),
            proposals: &[16, 32, 64],
        },
        Case {
            name: "an initial batch above the max starts at the max",
            settings: "{}",
            bounds: bounds(512, 256),
            best_batch: 4096,
            oom_above: None,
            best: Some(256),
            proposals: &[256],
        },
        Case {
            name: "first trial fails: back off by halves",
            settings: "{}",
            bounds: bounds(32, 256),
            best_batch: 128,
            oom_above: Some(8),
            best: Some(8),
            proposals: &[32, 16, 8],
        },
        Case {
            name: "nothing stable",
            settings: "{}",
            bounds: bounds(16, 256),
            best_batch: 128,
            oom_above: Some(0),
            best: None,
            proposals: &[16, 8, 4, 2, 1],
        },
        Case {
            name: "settings: factor 1.5 (the host's max_batch 512)",
            settings: r#"{"scale_up_factor": 1.5, "max_batch": 9999, "other": "ignored"}"#,
            bounds: bounds(32, 512),
            best_batch: 128,
            oom_above: None,
            best: Some(108),
            proposals: &[32, 48, 72, 108, 162],
        },
    ]
}
