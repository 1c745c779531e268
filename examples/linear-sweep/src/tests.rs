use ozone_sdk::testing::{self, MemoryMachine, Run};

use super::LinearSweep;

fn run(settings: &str, limit: u32, trained: u32) -> Run {
    let machine = MemoryMachine::with_context_limit(limit);
    testing::run_context::<LinearSweep>(
        settings,
        &machine.hardware(),
        &testing::model(trained),
        |ctx| machine.context_trial(ctx),
    )
    .expect("run")
}

#[test]
fn sweeps_in_4k_steps_then_refines_in_granularity_steps_to_the_limit() {
    let run = run("{}", 13_000, 32_768);
    assert_eq!(
        run.proposals,
        vec![4096, 8192, 12_288, 16_384, 12_544, 12_800, 13_056]
    );
    assert_eq!(run.best, Some(12_800));
}

#[test]
fn without_refining_it_stops_at_the_first_failure() {
    let run = run(r#"{"refine": false}"#, 13_000, 32_768);
    assert_eq!(run.proposals, vec![4096, 8192, 12_288, 16_384]);
    assert_eq!(run.best, Some(12_288));
}

#[test]
fn ends_at_the_trained_context_when_nothing_fails() {
    let run = run("{}", 1_000_000, 10_240);
    assert_eq!(run.proposals, vec![4096, 8192, 10_240]);
    assert_eq!(run.best, Some(10_240));
}

#[test]
fn a_first_failure_refines_from_the_smallest_context() {
    let at_minimum = run("{}", 2048, 32_768);
    assert_eq!(at_minimum.proposals, vec![4096, 2048, 2304]);
    assert_eq!(at_minimum.best, Some(2048));
    let below = run("{}", 2000, 32_768);
    assert_eq!(below.proposals, vec![4096, 2048]);
    assert_eq!(below.best, None);
}

#[test]
fn step_is_a_setting() {
    let run = run(r#"{"step": 2048, "refine": false}"#, 5000, 32_768);
    assert_eq!(run.proposals, vec![2048, 4096, 6144]);
    assert_eq!(run.best, Some(4096));
}

#[test]
fn rejects_a_step_below_the_granularity() {
    let machine = MemoryMachine::with_context_limit(8192);
    let err = testing::run_context::<LinearSweep>(
        r#"{"step": 100}"#,
        &machine.hardware(),
        &testing::model(32_768),
        |ctx| machine.context_trial(ctx),
    )
    .expect_err("a step of 100 is rejected");
    assert!(err.contains("step"), "{err}");
}

#[test]
fn can_measure_every_step_like_a_fixed_context_list() {
    let run = run(r#"{"stop_at_first_failure": false}"#, 13_000, 32_768);
    assert_eq!(
        run.proposals,
        vec![4096, 8192, 12_288, 16_384, 20_480, 24_576, 28_672, 32_768]
    );
    assert_eq!(run.best, Some(12_288));
}

#[test]
fn a_failed_verification_withdraws_the_answer_and_all_above_it() {
    use ozone_sdk::{ContextSearch, Stage};
    let machine = MemoryMachine::with_context_limit(13_000);
    let mut search = LinearSweep::new(
        "{}",
        &machine.hardware(),
        &testing::model(32_768),
        &Default::default(),
    )
    .expect("settings");
    while let Some(ctx) = search.propose() {
        search.observe(&machine.context_trial(ctx));
    }
    assert_eq!(search.best(), Some(12_800));
    let mut refuted = machine.context_trial(12_800);
    refuted.stage = Stage::Verify;
    refuted.verdict = ozone_sdk::Verdict::Unstable;
    search.observe(&refuted);
    assert_eq!(search.propose(), None);
    assert_eq!(search.best(), Some(12_544));
}
