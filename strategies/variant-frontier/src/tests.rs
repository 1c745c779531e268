use ozone_sdk::testing;
use ozone_sdk::VariantSearch;

use super::table::cases;
use super::Frontier;

#[test]
fn decision_table_natively() {
    for case in cases() {
        let model = testing::model(case.machine.trained);
        let run = testing::run_variants::<Frontier>(
            case.settings,
            &Default::default(),
            &model,
            &case.space,
            |v| case.machine.variant_trial(v),
        )
        .unwrap_or_else(|e| panic!("{}: {e}", case.name));
        assert_eq!(run.proposals, case.proposals, "{}", case.name);
    }
}

#[test]
fn propose_twice_repeats_the_pending_variant_and_bad_settings_are_refused() {
    let case = &cases()[0];
    let model = testing::model(32_768);
    let mut search = Frontier::new("{}", &Default::default(), &model, &case.space).unwrap();
    assert_eq!(search.propose(), search.propose());
    let err = Frontier::new(
        r#"{"min_context_gain": 0.5}"#,
        &Default::default(),
        &model,
        &case.space,
    )
    .err()
    .unwrap_or_default();
    assert!(err.contains("at least 1"), "{err}");
    let err = Frontier::new(
        r#"{"measure_all": 3}"#,
        &Default::default(),
        &model,
        &case.space,
    )
    .err()
    .unwrap_or_default();
    assert!(err.contains("invalid type"), "{err}");
}
