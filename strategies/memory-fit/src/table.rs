//! The decision table on the SDK's simulated GPU (`ozone_sdk::testing::MemoryMachine`:
//! 5 GiB + 128 KiB per token, the model's KV prior exact). Run natively here (`cargo test
//! -p memory-fit`) and through the embedded component by the host's plugin tests, so
//! both paths make the same decisions. Noisy and CPU machines are in `tests.rs`.

/// One scenario: a machine whose largest stable context is `limit`.
#[derive(Debug, Clone)]
pub struct Case {
    pub name: &'static str,
    pub settings: &'static str,
    pub trained: u32,
    pub limit: u32,
    pub hint: Option<u32>,
    /// Whether the model states its KV bytes per token (the slope's prior).
    pub prior: bool,
    /// What `best()` must return: the largest 256-aligned stable context.
    pub best: Option<u32>,
    /// The exact proposals.
    pub proposals: &'static [u32],
}

pub fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "limit 100000 of 131072: minimum, half the prior's way, aim, limit, step above",
            settings: "{}",
            trained: 131_072,
            limit: 100_000,
            hint: None,
            prior: true,
            best: Some(99_840),
            proposals: &[2048, 50_944, 99_328, 99_840, 100_096],
        },
        Case {
            name: "limit at the minimum context",
            settings: "{}",
            trained: 131_072,
            limit: 2048,
            hint: None,
            prior: true,
            best: Some(2048),
            proposals: &[2048, 2304],
        },
        Case {
            name: "nothing fits, not even the minimum",
            settings: "{}",
            trained: 131_072,
            limit: 1000,
            hint: None,
            prior: true,
            best: None,
            proposals: &[2048],
        },
        Case {
            name: "the trained context binds: nothing fails",
            settings: "{}",
            trained: 131_072,
            limit: 400_000,
            hint: None,
            prior: true,
            best: Some(131_072),
            proposals: &[2048, 131_072],
        },
        Case {
            name: "warm start: an unchanged limit is confirmed in two trials",
            settings: "{}",
            trained: 131_072,
            limit: 100_000,
            hint: Some(99_840),
            prior: true,
            best: Some(99_840),
            proposals: &[99_840, 100_096],
        },
        Case {
            name: "warm start: the limit grew",
            settings: "{}",
            trained: 131_072,
            limit: 100_000,
            hint: Some(60_160),
            prior: true,
            best: Some(99_840),
            proposals: &[60_160, 60_416, 80_128, 99_328, 99_840, 100_096],
        },
        Case {
            name: "warm start: the limit shrank",
            settings: "{}",
            trained: 131_072,
            limit: 50_000,
            hint: Some(99_840),
            prior: true,
            best: Some(49_920),
            proposals: &[99_840, 2048, 25_856, 49_664, 49_920, 50_176],
        },
        Case {
            name: "no KV prior: one doubling, then the fit with a wide margin",
            settings: "{}",
            trained: 131_072,
            limit: 100_000,
            hint: None,
            prior: false,
            best: Some(99_840),
            proposals: &[2048, 4096, 76_544, 99_840, 100_096],
        },
        Case {
            name: "settings: no margin, so the first aim is the limit",
            settings: r#"{"margin": 0.0, "unknown": 1}"#,
            trained: 131_072,
            limit: 100_000,
            hint: None,
            prior: true,
            best: Some(99_840),
            proposals: &[2048, 50_944, 99_840, 100_096],
        },
        Case {
            name: "settings: max_iterations stops the search",
            settings: r#"{"max_iterations": 3}"#,
            trained: 131_072,
            limit: 100_000,
            hint: None,
            prior: true,
            best: Some(99_328),
            proposals: &[2048, 50_944, 99_328],
        },
    ]
}
