use ozone_sdk::testing::{self, ConcurrencyMachine};
use ozone_sdk::{ConcurrencyBounds, ConcurrencySearch, Slo};

use super::table::cases;
use super::Ladder;

#[test]
fn decision_table_natively() {
    for case in cases() {
        let run = testing::run_concurrency::<Ladder>(
            case.settings,
            &Default::default(),
            &testing::model(8192),
            &testing::concurrency_bounds(case.max),
            &case.slo,
            |n| case.machine.concurrency_trial(n, &case.slo),
        )
        .unwrap_or_else(|e| panic!("{}: {e}", case.name));
        assert_eq!(run.proposals, case.proposals, "{}", case.name);
        assert_eq!(run.best, case.best, "{}", case.name);
    }
}

#[test]
fn a_minimum_above_one_is_where_the_objective_search_starts() {
    let slo = Slo {
        bounds: vec![ozone_sdk::SloBound {
            metric: ozone_sdk::SloMetric::TtftP95,
            value: 1e9,
        }],
    };
    let machine = ConcurrencyMachine::default();
    let run = testing::run_concurrency::<Ladder>(
        "{}",
        &Default::default(),
        &testing::model(8192),
        &ConcurrencyBounds { min: 3, max: 20 },
        &slo,
        |n| machine.concurrency_trial(n, &slo),
    )
    .expect("run");
    assert_eq!(run.proposals, vec![3, 6, 12, 20]);
}

#[test]
fn propose_twice_repeats_the_pending_value() {
    let mut ladder = Ladder::new(
        "{}",
        &Default::default(),
        &testing::model(8192),
        &testing::concurrency_bounds(64),
        &Slo::default(),
    )
    .expect("new");
    assert_eq!(ladder.propose(), Some(1));
    assert_eq!(ladder.propose(), Some(1));
}

#[test]
fn bad_levels_are_refused() {
    let new = |settings: &str| {
        Ladder::new(
            settings,
            &Default::default(),
            &testing::model(8192),
            &testing::concurrency_bounds(64),
            &Slo::default(),
        )
        .err()
        .unwrap_or_default()
    };
    assert!(new(r#"{"levels": [1, 0]}"#).contains("at least 1"));
    assert!(new(r#"{"levels": "1,2"}"#).contains("invalid type"));
}
