use binary_search::BinarySearch;
use ozone_sdk::testing::{self, MemoryMachine, Run};
use ozone_sdk::ContextSearch;

use super::MemoryModel;

fn run<S: ContextSearch>(machine: &MemoryMachine, trained: u32, hint: Option<u32>) -> Run {
    let mut model = testing::model(trained);
    model.hint = hint;
    testing::run_context::<S>("{}", &machine.hardware(), &model, |ctx| {
        machine.context_trial(ctx)
    })
    .expect("run")
}

#[test]
fn finds_the_same_limit_as_binary_search_in_fewer_trials() {
    for limit in [2048, 5000, 30_000, 65_536, 100_000, 131_072] {
        let machine = MemoryMachine::with_context_limit(limit);
        let model = run::<MemoryModel>(&machine, 131_072, None);
        let binary = run::<BinarySearch>(&machine, 131_072, None);
        let expected = limit / 256 * 256;
        assert_eq!(
            model.best,
            Some(expected),
            "limit {limit}: {:?}",
            model.proposals
        );
        // binary-search may stop short after its 7 bisections (e.g. 4608 for 5000).
        assert!(binary.best.is_some_and(|b| b <= expected), "limit {limit}");
        assert!(
            model.proposals.len() < binary.proposals.len(),
            "limit {limit}: memory-model {:?} vs binary-search {:?}",
            model.proposals,
            binary.proposals
        );
    }
}

#[test]
fn limit_100000_in_three_trials() {
    let run = run::<MemoryModel>(&MemoryMachine::with_context_limit(100_000), 131_072, None);
    assert_eq!(run.proposals, vec![2048, 99_840, 100_096]);
    assert_eq!(run.best, Some(99_840));
}

#[test]
fn a_wrong_prior_is_corrected_by_the_fit() {
    // Buffers grow with context too: real slope 1.6× the KV-only prior, plus a larger base.
    let machine = MemoryMachine {
        base_bytes: 7 << 30,
        bytes_per_token: MemoryMachine::LLAMA_8B_KV_BYTES * 16 / 10,
        limit_bytes: (7 << 30) + MemoryMachine::LLAMA_8B_KV_BYTES * 16 / 10 * 70_000,
    };
    let run = run::<MemoryModel>(&machine, 131_072, None);
    assert_eq!(run.best, Some(69_888), "{:?}", run.proposals);
    assert!(run.proposals.len() <= 6, "{:?}", run.proposals);
}

#[test]
fn without_memory_figures_it_falls_back_to_bisection() {
    let mut model = testing::model(131_072);
    model.kv_bytes_per_token = None;
    let limit = 40_000;
    let run = testing::run_context::<MemoryModel>("{}", &Default::default(), &model, |ctx| {
        if ctx <= limit {
            testing::stable(testing::context_config(ctx))
        } else {
            testing::failed(testing::context_config(ctx), ozone_sdk::Failure::Timeout)
        }
    })
    .expect("run");
    assert_eq!(
        run.best.map(|b| b <= limit),
        Some(true),
        "{:?}",
        run.proposals
    );
}

#[test]
fn warm_start_confirms_an_unchanged_limit() {
    let run = run::<MemoryModel>(
        &MemoryMachine::with_context_limit(100_000),
        131_072,
        Some(99_840),
    );
    assert_eq!(run.proposals, vec![99_840, 100_096]);
}
