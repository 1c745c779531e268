use ozone_sdk::testing::{self, MemoryMachine};
use ozone_sdk::ContextSearch;

use super::table::cases;
use super::BinarySearch;

#[test]
fn decision_table_natively() {
    for case in cases() {
        let machine = MemoryMachine::with_context_limit(case.limit);
        let mut model = testing::model(case.trained);
        model.hint = case.hint;
        let run = testing::run_context::<BinarySearch>(
            case.settings,
            &machine.hardware(),
            &model,
            |ctx| machine.context_trial(ctx),
        )
        .unwrap_or_else(|e| panic!("{}: {e}", case.name));
        assert_eq!(run.best, case.best, "{}: {:?}", case.name, run.proposals);
        if let Some(expected) = case.proposals {
            assert_eq!(run.proposals, expected, "{}", case.name);
        }
        assert!(
            run.proposals.len() <= case.max_trials,
            "{}: {} trials: {:?}",
            case.name,
            run.proposals.len(),
            run.proposals
        );
    }
}

#[test]
fn propose_twice_repeats_the_pending_value() {
    let model = testing::model(131_072);
    let mut search =
        BinarySearch::new("{}", &Default::default(), &model, &Default::default()).unwrap();
    assert_eq!(search.propose(), Some(65_536));
    assert_eq!(search.propose(), Some(65_536));
}

#[test]
fn wrong_setting_type_is_an_error() {
    let model = testing::model(131_072);
    let err = BinarySearch::new(
        r#"{"binary_search_factor": "fast"}"#,
        &Default::default(),
        &model,
        &Default::default(),
    )
    .err()
    .unwrap_or_default();
    assert!(err.contains("invalid type"), "{err}");
    let err = BinarySearch::new(
        r#"{"binary_search_factor": 0.5}"#,
        &Default::default(),
        &model,
        &Default::default(),
    )
    .err()
    .unwrap_or_default();
    assert!(err.contains("greater than 1"), "{err}");
}

#[test]
fn unstable_counts_as_failure() {
    let model = testing::model(131_072);
    let mut search =
        BinarySearch::new("{}", &Default::default(), &model, &Default::default()).unwrap();
    let ctx = search.propose().unwrap();
    let mut outcome = testing::stable(testing::context_config(ctx));
    outcome.verdict = ozone_sdk::Verdict::Unstable;
    search.observe(&outcome);
    assert_eq!(search.best(), None);
    assert!(search.propose().is_some_and(|next| next < ctx));
}

#[test]
fn a_transient_failure_is_measured_again_and_noise_does_not_move_the_answer() {
    let answer = testing::check_noise_tolerance::<BinarySearch>("{}", 100_000, 131_072, 0..20)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(answer, Some(99_840));
}

#[test]
fn a_memory_failure_counts_at_once() {
    let model = testing::model(131_072);
    let mut search =
        BinarySearch::new("{}", &Default::default(), &model, &Default::default()).unwrap();
    let ctx = search.propose().unwrap();
    let mut outcome = testing::failed(
        testing::context_config(ctx),
        ozone_sdk::Failure::ThresholdBreach(ozone_sdk::Threshold::Vram),
    );
    outcome.stage = ozone_sdk::Stage::Screen;
    search.observe(&outcome);
    assert!(search.propose().is_some_and(|next| next < ctx));
}

/// Screens pass up to 26 624 tokens; the host's verification of that answer fails (the
/// full trial's peak is higher): the bisection resumes between the older pass and the
/// refuted one, and ends within a step of where full trials hold, not at the older pass.
#[test]
fn a_refuted_answer_resumes_the_bisection() {
    let model = testing::model(32_768);
    let mut search =
        BinarySearch::new("{}", &Default::default(), &model, &Default::default()).unwrap();
    let screens = MemoryMachine::with_context_limit(26_700);
    while let Some(ctx) = search.propose() {
        search.observe(&screens.context_trial(ctx));
    }
    let answer = search.best().expect("an answer");
    assert_eq!(answer, 26_624);

    // The full trials hold up to 25 900 tokens.
    let full = MemoryMachine::with_context_limit(25_900);
    let mut verification = full.context_trial(answer);
    verification.stage = ozone_sdk::Stage::Verify;
    search.observe(&verification);
    let mut resumed = Vec::new();
    while let Some(ctx) = search.propose() {
        resumed.push(ctx);
        search.observe(&full.context_trial(ctx));
    }
    assert!(!resumed.is_empty(), "the search went on");
    assert!(resumed.iter().all(|&c| c < answer), "{resumed:?}");
    assert_eq!(search.best(), Some(25_856), "{resumed:?}");
}

/// A time edge, as on a busy CPU: fills grow faster than the context (attention), the
/// host holds each to the timeout margin, and its verification's slowest request is 3 %
/// slower than a screen's. Timeouts the screens' curve predicted are not measured twice;
/// the refuted answer withdraws only the passes the 3 % slowdown puts over the limit,
/// so the second verification holds, within a few steps of the verifications' edge.
#[test]
fn a_time_edge_is_found_without_retrying_predicted_timeouts_and_a_refutation_keeps_consistent_screens(
) {
    let machine = testing::TimeMachine::default();
    let limits = ozone_sdk::ContextLimits::default();
    let model = testing::model(32_768);
    let settings = r#"{"initial_context_probe": 4096}"#;
    let mut search = BinarySearch::new(settings, &Default::default(), &model, &limits).unwrap();
    let (proposals, verified) = machine.search_and_verify(&mut search);
    let edge = machine.edge(&limits, 256);
    let verify_edge = machine.verify_edge(&limits, 256);
    assert!(verified.len() <= 2, "{verified:?} after {proposals:?}");
    let published = *verified.last().unwrap();
    assert!(machine.verify(published).is_stable());
    assert!(
        published + 3 * 256 >= verify_edge && published <= verify_edge,
        "{published} vs the verifications' edge {verify_edge} (screens' {edge}): {proposals:?}"
    );
    let mut seen = std::collections::HashSet::new();
    let repeats: Vec<u32> = proposals
        .iter()
        .copied()
        .filter(|c| !seen.insert(*c))
        .collect();
    assert!(
        repeats.iter().all(|&c| c <= edge + edge / 10),
        "a timeout far over the limit was measured twice: {repeats:?} in {proposals:?}"
    );
}
