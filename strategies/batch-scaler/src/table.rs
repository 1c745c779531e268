//! The decision table of the documented semantics, run natively here and through the
//! wasm component by the host's plugin tests.

use ozone_sdk::SizeClass;

/// One scenario: a throughput curve peaking at `best_batch`, out of memory above
/// `oom_above` (see `ozone_sdk::testing::BatchMachine`).
#[derive(Debug, Clone)]
pub struct Case {
    pub name: &'static str,
    pub settings: &'static str,
    pub size_class: SizeClass,
    pub best_batch: u32,
    pub oom_above: Option<u32>,
    /// What `best()` must return.
    pub best: Option<u32>,
    /// The exact proposals.
    pub proposals: &'static [u32],
}

pub fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "medium model: double while throughput improves, stop at the regression",
            settings: "{}",
            size_class: SizeClass::Medium,
            best_batch: 128,
            oom_above: None,
            best: Some(128),
            proposals: &[32, 64, 128, 256],
        },
        Case {
            name: "out of memory above 64: settle on the best stable",
            settings: "{}",
            size_class: SizeClass::Medium,
            best_batch: 512,
            oom_above: Some(64),
            best: Some(64),
            proposals: &[32, 64, 128],
        },
        Case {
            name: "never above max_batch",
            settings: "{}",
            size_class: SizeClass::Small,
            best_batch: 4096,
            oom_above: None,
            best: Some(256),
            proposals: &[64, 128, 256],
        },
        Case {
            name: "large model starts at 16",
            settings: "{}",
            size_class: SizeClass::Large,
            best_batch: 32,
            oom_above: None,
            best: Some(32),
            proposals: &[16, 32, 64],
        },
        Case {
            name: "first trial fails: back off by halves",
            settings: "{}",
            size_class: SizeClass::Medium,
            best_batch: 128,
            oom_above: Some(8),
            best: Some(8),
            proposals: &[32, 16, 8],
        },
        Case {
            name: "nothing stable",
            settings: "{}",
            size_class: SizeClass::Large,
            best_batch: 128,
            oom_above: Some(0),
            best: None,
            proposals: &[16, 8, 4, 2, 1],
        },
        Case {
            name: "settings: factor 1.5, max 512",
            settings: r#"{"scale_up_factor": 1.5, "max_batch": 512, "other": "ignored"}"#,
            size_class: SizeClass::Medium,
            best_batch: 128,
            oom_above: None,
            best: Some(108),
            proposals: &[32, 48, 72, 108, 162],
        },
    ]
}
