use serde::Deserialize;

use crate::testing::{self, MemoryMachine};
use crate::*;

#[derive(Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
struct Knobs {
    factor: f64,
    steps: u32,
}

#[test]
fn settings_default_on_blank_ignore_unknown_and_reject_wrong_types() {
    assert_eq!(settings::parse::<Knobs>("  "), Ok(Knobs::default()));
    let knobs: Knobs = settings::parse(r#"{"steps": 3, "other": true}"#).expect("parses");
    assert_eq!(
        knobs,
        Knobs {
            factor: 0.0,
            steps: 3
        }
    );
    let err = settings::parse::<Knobs>(r#"{"steps": "three"}"#).expect_err("wrong type");
    assert!(
        err.starts_with("invalid settings: invalid type: string"),
        "{err}"
    );
}

#[test]
fn bounds_fit_aligns_down_and_clamps() {
    let b = ContextBounds {
        min: 2048,
        max: 131_072,
        granularity: 256,
    };
    assert_eq!(b.fit(100_000), 99_840);
    assert_eq!(b.fit(10), 2048);
    assert_eq!(b.fit(1 << 40), 131_072);
    assert!(b.accepts(2048) && !b.accepts(2049) && !b.accepts(0));
}

/// Proposes a fixed sequence, then stops.
struct Script(Vec<u32>);

impl ContextSearch for Script {
    fn new(settings: &str, _: &HardwareFacts, _: &ModelInfo) -> Result<Self, String> {
        let values: Vec<u32> = serde_json::from_str(settings).map_err(|e| e.to_string())?;
        Ok(Script(values.into_iter().rev().collect()))
    }
    fn propose(&mut self) -> Option<u32> {
        self.0.last().copied()
    }
    fn observe(&mut self, _: &Outcome) {
        self.0.pop();
    }
    fn best(&self) -> Option<u32> {
        None
    }
}

#[test]
fn the_harness_catches_out_of_bounds_proposals_and_endless_policies() {
    let machine = MemoryMachine::with_context_limit(50_000);
    let model = testing::model(131_072);
    let run = |settings: &str| {
        testing::run_context::<Script>(settings, &machine.hardware(), &model, |c| {
            machine.context_trial(c)
        })
    };
    assert_eq!(
        run("[4096, 8192]").map(|r| r.proposals),
        Ok(vec![4096, 8192])
    );
    let err = run("[4096, 1000]").expect_err("out of bounds");
    assert!(err.contains("proposed context 1000"), "{err}");
    let endless = format!("{:?}", vec![4096; 100]);
    let err = run(&endless).expect_err("endless");
    assert!(err.contains("did not stop"), "{err}");
}

#[test]
fn memory_machine_reports_peaks_and_headroom() {
    let machine = MemoryMachine::with_context_limit(10_000);
    let ok = machine.context_trial(10_000);
    assert!(ok.is_stable());
    assert_eq!(ok.headroom.gpu_memory_bytes, Some(0));
    let bad = machine.context_trial(10_240);
    assert_eq!(bad.failure, Some(Failure::ThresholdBreach(Threshold::Vram)));
    assert!(bad.headroom.gpu_memory_bytes.is_some_and(|h| h < 0));
}
