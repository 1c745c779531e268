//! The decision table of the documented semantics. Run natively here (`cargo test -p
//! binary-search`) and through the wasm component by the host's plugin tests, so both
//! paths are held to the same expectations.

/// One scenario: a machine whose largest stable context is `limit` (memory grows
/// linearly with context, see `ozone_sdk::testing::MemoryMachine`).
#[derive(Debug, Clone)]
pub struct Case {
    pub name: &'static str,
    pub settings: &'static str,
    pub trained: u32,
    pub limit: u32,
    pub hint: Option<u32>,
    /// What `best()` must return: the largest 256-aligned stable context.
    pub best: Option<u32>,
    /// The exact proposals, when the scenario pins them.
    pub proposals: Option<&'static [u32]>,
    /// Upper bound on the number of trials.
    pub max_trials: usize,
}

pub fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "limit 100000 of 131072: grow, then bisect within 7 iterations",
            settings: "{}",
            trained: 131_072,
            limit: 100_000,
            hint: None,
            best: Some(99_840),
            proposals: Some(&[
                65_536, 84_992, 110_336, 97_536, 103_936, 100_608, 99_072, 99_840, 100_096,
            ]),
            max_trials: 3 + 7,
        },
        Case {
            name: "limit at the minimum context",
            settings: "{}",
            trained: 131_072,
            limit: 2048,
            hint: None,
            best: Some(2048),
            proposals: None,
            max_trials: 1 + 7,
        },
        Case {
            name: "limit at the trained context",
            settings: "{}",
            trained: 131_072,
            limit: 131_072,
            hint: None,
            best: Some(131_072),
            proposals: Some(&[65_536, 84_992, 110_336, 131_072]),
            max_trials: 4,
        },
        Case {
            name: "first probe fails",
            settings: "{}",
            trained: 131_072,
            limit: 30_000,
            hint: None,
            best: Some(29_952),
            proposals: None,
            max_trials: 1 + 7,
        },
        Case {
            name: "nothing fits: not even the minimum",
            settings: "{}",
            trained: 131_072,
            limit: 1000,
            hint: None,
            best: None,
            proposals: None,
            max_trials: 1 + 7,
        },
        Case {
            name: "trained context below the first probe",
            settings: "{}",
            trained: 32_768,
            limit: 100_000,
            hint: None,
            best: Some(32_768),
            proposals: Some(&[32_768]),
            max_trials: 1,
        },
        Case {
            name: "warm start: an unchanged limit is confirmed in two trials",
            settings: "{}",
            trained: 131_072,
            limit: 100_000,
            hint: Some(99_840),
            best: Some(99_840),
            proposals: Some(&[99_840, 100_096]),
            max_trials: 2,
        },
        Case {
            name: "settings: smaller first probe and factor 2",
            settings: r#"{"initial_context_probe": 8192, "binary_search_factor": 2.0, "unknown": 1}"#,
            trained: 131_072,
            limit: 20_000,
            hint: None,
            best: Some(19_968),
            proposals: None,
            max_trials: 3 + 7,
        },
    ]
}
