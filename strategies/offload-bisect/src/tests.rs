use ozone_sdk::testing;
use ozone_sdk::OffloadSearch;

use super::table::cases;
use super::Bisect;

#[test]
fn decision_table_natively() {
    for case in cases() {
        let model = testing::model(131_072);
        let run = testing::run_offload::<Bisect>(
            case.settings,
            &Default::default(),
            &model,
            &case.bounds,
            |o| case.machine.offload_trial(case.bounds.ctx, o),
        )
        .unwrap_or_else(|e| panic!("{}: {e}", case.name));
        assert_eq!(run.proposals, case.proposals(), "{}", case.name);
        assert_eq!(run.best, case.best(), "{}", case.name);
    }
}

#[test]
fn a_refuted_best_is_withdrawn() {
    let case = &cases()[0];
    let model = testing::model(131_072);
    let mut search = Bisect::new("{}", &Default::default(), &model, &case.bounds).unwrap();
    let first = search.propose().expect("the fit");
    assert_eq!(search.propose(), Some(first), "pending");
    search.observe(&case.machine.offload_trial(case.bounds.ctx, first));
    assert_eq!(search.best(), Some(first));
    // The host's verification of 48 layers fails: it is no answer any more.
    let mut refuted = case.machine.offload_trial(case.bounds.ctx, first);
    refuted.verdict = ozone_sdk::Verdict::Unstable;
    refuted.stage = ozone_sdk::Stage::Verify;
    search.observe(&refuted);
    assert_eq!(search.best(), None);
    assert!(Bisect::new(
        r#"{"max_trials": 0}"#,
        &Default::default(),
        &model,
        &case.bounds
    )
    .is_err());
}
