use batch_scaler::Scaler;
use ozone_sdk::testing::{self, BatchMachine, Run};
use ozone_sdk::BatchScaler;

use super::GoldenBatch;

fn run<S: BatchScaler>(machine: &BatchMachine, settings: &str) -> Run {
    testing::run_batch::<S>(
        settings,
        &Default::default(),
        &testing::model(32_768),
        |b| machine.batch_trial(b),
    )
    .expect("run")
}

#[test]
fn finds_a_peak_between_powers_of_two() {
    let machine = BatchMachine {
        best_batch: 384,
        peak_tps: 1000.0,
        oom_above: None,
    };
    let golden = run::<GoldenBatch>(&machine, "{}");
    let doubling = run::<Scaler>(&machine, r#"{"max_batch": 1024}"#);
    let best = golden.best.expect("a stable batch");
    assert!((352..=416).contains(&best), "{golden:?}");
    assert!(golden.proposals.len() <= 10, "{golden:?}");
    let tps = |b: Option<u32>| b.map(|b| machine.throughput(b)).unwrap_or(0.0);
    assert!(
        tps(golden.best) > tps(doubling.best),
        "{golden:?} vs {doubling:?}"
    );
}

#[test]
fn steers_away_from_out_of_memory() {
    let machine = BatchMachine {
        best_batch: 2048,
        peak_tps: 1000.0,
        oom_above: Some(300),
    };
    let golden = run::<GoldenBatch>(&machine, "{}");
    let best = golden.best.expect("a stable batch");
    assert!((256..=288).contains(&best), "{golden:?}");
}

#[test]
fn every_proposal_is_a_candidate_and_none_repeats() {
    let machine = BatchMachine {
        best_batch: 64,
        peak_tps: 500.0,
        oom_above: None,
    };
    let golden = run::<GoldenBatch>(
        &machine,
        r#"{"min_batch": 16, "max_batch": 512, "step": 16}"#,
    );
    let mut seen = golden.proposals.clone();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen.len(), golden.proposals.len(), "{golden:?}");
    assert!(golden
        .proposals
        .iter()
        .all(|b| b % 16 == 0 && (16..=512).contains(b)));
    assert_eq!(golden.best, Some(64), "{golden:?}");
}

#[test]
fn bad_settings_are_refused() {
    let err = GoldenBatch::new(r#"{"step": 0}"#, &Default::default(), &testing::model(4096))
        .err()
        .unwrap_or_default();
    assert!(err.contains("step > 0"), "{err}");
}
