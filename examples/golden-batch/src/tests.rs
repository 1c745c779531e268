use batch_scaler::Scaler;
use ozone_sdk::testing::{self, BatchMachine, Run};
use ozone_sdk::{BatchBounds, BatchProposal, BatchScaler};

use super::GoldenBatch;

/// Runs `S` with the host's batch bounds `1..=max`, starting at 32.
fn run<S: BatchScaler>(machine: &BatchMachine, settings: &str, max: u32) -> Run<BatchProposal> {
    let bounds = BatchBounds {
        max,
        ..testing::batch_bounds(32)
    };
    testing::run_batch::<S>(
        settings,
        &Default::default(),
        &testing::model(32_768),
        &bounds,
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
    let golden = run::<GoldenBatch>(&machine, "{}", 1024);
    let doubling = run::<Scaler>(&machine, "{}", 1024);
    let best = golden.best.expect("a stable batch").batch;
    assert!((352..=416).contains(&best), "{golden:?}");
    assert!(golden.proposals.len() <= 10, "{golden:?}");
    let tps = |b: Option<BatchProposal>| b.map(|b| machine.throughput(b.ubatch)).unwrap_or(0.0);
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
    let golden = run::<GoldenBatch>(&machine, "{}", 1024);
    let best = golden.best.expect("a stable batch").batch;
    assert!((256..=288).contains(&best), "{golden:?}");
}

#[test]
fn every_proposal_is_a_candidate_and_none_repeats() {
    let machine = BatchMachine {
        best_batch: 64,
        peak_tps: 500.0,
        oom_above: None,
    };
    let golden = run::<GoldenBatch>(&machine, r#"{"min_batch": 16, "step": 16}"#, 512);
    let mut seen: Vec<u32> = golden.proposals.iter().map(|p| p.batch).collect();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen.len(), golden.proposals.len(), "{golden:?}");
    assert!(golden
        .proposals
        .iter()
        .all(|p| p.batch % 16 == 0 && (16..=512).contains(&p.batch) && p.ubatch == p.batch));
    assert_eq!(golden.best.map(|b| b.batch), Some(64), "{golden:?}");
}

#[test]
fn never_above_the_hosts_largest_batch() {
    // The host's default bounds (1..=256): the plugin's own idea of a maximum is gone.
    let machine = BatchMachine {
        best_batch: 2048,
        peak_tps: 1000.0,
        oom_above: None,
    };
    let golden = run::<GoldenBatch>(&machine, "{}", 256);
    assert!(
        golden.proposals.iter().all(|p| p.batch <= 256),
        "{golden:?}"
    );
    assert_eq!(golden.best.map(|b| b.batch), Some(256), "{golden:?}");
}

#[test]
fn bad_settings_are_refused() {
    let new = |settings: &str| {
        GoldenBatch::new(
            settings,
            &Default::default(),
            &testing::model(4096),
            &testing::batch_bounds(32),
        )
        .err()
        .unwrap_or_default()
    };
    assert!(new(r#"{"step": 0}"#).contains("step > 0"));
    let err = new(r#"{"min_batch": 300}"#);
    assert!(err.contains("above the host's largest batch 256"), "{err}");
}
