use ozone_sdk::testing::{self, BatchMachine};
use ozone_sdk::BatchScaler;

use super::table::cases;
use super::Scaler;

#[test]
fn decision_table_natively() {
    for case in cases() {
        let machine = BatchMachine {
            best_batch: case.best_batch,
            peak_tps: 1000.0,
            oom_above: case.oom_above,
        };
        let model = testing::model(32_768);
        let run = testing::run_batch::<Scaler>(
            case.settings,
            &Default::default(),
            &model,
            &case.bounds,
            |b| machine.batch_trial(b),
        )
        .unwrap_or_else(|e| panic!("{}: {e}", case.name));
        assert_eq!(run.proposals, case.proposals(), "{}", case.name);
        assert_eq!(run.best, case.best(), "{}", case.name);
    }
}

#[test]
fn wrong_setting_type_is_an_error() {
    let model = testing::model(32_768);
    let bounds = testing::batch_bounds(32);
    let new = |settings: &str| {
        Scaler::new(settings, &Default::default(), &model, &bounds)
            .err()
            .unwrap_or_default()
    };
    let err = new(r#"{"scale_up_factor": "lots"}"#);
    assert!(err.contains("invalid type"), "{err}");
    let err = new(r#"{"scale_up_factor": 1.0}"#);
    assert!(err.contains("greater than 1"), "{err}");
}

#[test]
fn without_throughput_figures_the_first_stable_batch_wins() {
    let model = testing::model(32_768);
    let bounds = testing::batch_bounds(32);
    let mut scaler = Scaler::new("{}", &Default::default(), &model, &bounds).unwrap();
    let b = scaler.propose().unwrap();
    scaler.observe(&testing::stable(testing::batch_config(b)));
    let b2 = scaler.propose().unwrap();
    scaler.observe(&testing::stable(testing::batch_config(b2)));
    assert_eq!(scaler.propose(), None);
    assert_eq!(scaler.best(), Some(b));
}
