//! The default plugins' decision tables, run through the wasm components and natively
//! (SDK harness): both paths must make the same decisions. The examples through their
//! components too.

use crate::common::plugins as common;
use common::{drive, guest, host};
use ozone::plugin::{self, PluginHost, PluginRef, SandboxLimits, Strategy};
use ozone_sdk::testing::{self, BatchMachine, MemoryMachine};
use ozone_sdk::{BatchBounds, Slo};
use ozone_test_artifacts::{GOLDEN_BATCH, MEMORY_MODEL};

#[test]
fn binary_search_table_through_the_component_matches_native() {
    let host = host();
    let plugin: PluginRef = "binary-search".parse().expect("built-in");
    for case in binary_search::table::cases() {
        let machine = MemoryMachine::with_context_limit(case.limit);
        let mut model = testing::model(case.trained);
        model.hint = case.hint;
        let native = testing::run_context::<binary_search::BinarySearch>(
            case.settings,
            &machine.hardware(),
            &model,
            |ctx| machine.context_trial(ctx),
        )
        .expect("native run");

        let mut search = host
            .load_context(
                &plugin,
                case.settings,
                &machine.hardware(),
                &model,
                &Default::default(),
            )
            .expect("load binary-search");
        let wasm = drive(&mut search, |ctx| machine.context_trial(ctx))
            .unwrap_or_else(|e| panic!("{}: {e}", case.name));

        assert_eq!(wasm.proposals, native.proposals, "{}", case.name);
        assert_eq!(wasm.best, case.best, "{}: {:?}", case.name, wasm.proposals);
        if let Some(expected) = case.proposals {
            assert_eq!(wasm.proposals, expected, "{}", case.name);
        }
        assert!(
            wasm.proposals.len() <= case.max_trials,
            "{}: {:?}",
            case.name,
            wasm.proposals
        );
    }
}

#[test]
fn memory_fit_table_through_the_component_matches_native() {
    let host = host();
    let plugin: PluginRef = "memory-fit".parse().expect("built-in");
    for case in memory_fit::table::cases() {
        let machine = MemoryMachine::with_context_limit(case.limit);
        let mut model = testing::model(case.trained);
        model.hint = case.hint;
        if !case.prior {
            model.kv_bytes_per_token = None;
            model.layers.clear();
        }
        let native = testing::run_context::<memory_fit::MemoryFit>(
            case.settings,
            &machine.hardware(),
            &model,
            |ctx| machine.context_trial(ctx),
        )
        .expect("native run");

        let mut search = host
            .load_context(
                &plugin,
                case.settings,
                &machine.hardware(),
                &model,
                &Default::default(),
            )
            .expect("load memory-fit");
        let wasm = drive(&mut search, |ctx| machine.context_trial(ctx))
            .unwrap_or_else(|e| panic!("{}: {e}", case.name));

        assert_eq!(wasm.proposals, native.proposals, "{}", case.name);
        assert_eq!(wasm.proposals, case.proposals, "{}", case.name);
        assert_eq!(wasm.best, case.best, "{}", case.name);
    }
}

#[test]
fn batch_scaler_table_through_the_component_matches_native() {
    let host = host();
    let plugin: PluginRef = "batch-scaler".parse().expect("built-in");
    for case in batch_scaler::table::cases() {
        let machine = BatchMachine {
            best_batch: case.best_batch,
            peak_tps: 1000.0,
            oom_above: case.oom_above,
        };
        let model = testing::model(32_768);
        let hw = MemoryMachine::with_context_limit(32_768).hardware();
        let native = testing::run_batch::<batch_scaler::Scaler>(
            case.settings,
            &hw,
            &model,
            &case.bounds,
            |b| machine.batch_trial(b),
        )
        .expect("native run");

        let mut scaler = host
            .load_batch(&plugin, case.settings, &hw, &model, &case.bounds)
            .expect("load batch-scaler");
        let wasm = drive(&mut scaler, |b| machine.batch_trial(b))
            .unwrap_or_else(|e| panic!("{}: {e}", case.name));

        assert_eq!(wasm.proposals, native.proposals, "{}", case.name);
        assert_eq!(wasm.proposals, case.proposals(), "{}", case.name);
        assert_eq!(wasm.best, case.best(), "{}", case.name);
    }
}

#[test]
fn variant_frontier_table_through_the_component_matches_native() {
    let host = host();
    let plugin: PluginRef = "variant-frontier".parse().expect("built-in");
    let hw = MemoryMachine::with_context_limit(8192).hardware();
    for case in variant_frontier::table::cases() {
        let model = testing::model(case.machine.trained);
        let native = testing::run_variants::<variant_frontier::Frontier>(
            case.settings,
            &hw,
            &model,
            &case.space,
            |v| case.machine.variant_trial(v),
        )
        .expect("native run");
        let mut search = host
            .load_variant(&plugin, case.settings, &hw, &model, &case.space)
            .expect("load variant-frontier");
        let mut proposals = Vec::new();
        while let Some(v) = search
            .propose()
            .unwrap_or_else(|e| panic!("{}: {e}", case.name))
        {
            proposals.push(v);
            assert!(proposals.len() <= 16, "{}: no end", case.name);
            search
                .observe(&case.machine.variant_trial(v))
                .expect("observe");
        }
        assert_eq!(proposals, native.proposals, "{}", case.name);
        assert_eq!(proposals, case.proposals, "{}", case.name);
    }
}

#[test]
fn offload_bisect_table_through_the_component_matches_native() {
    let host = host();
    let plugin: PluginRef = "offload-bisect".parse().expect("built-in");
    let hw = MemoryMachine::with_context_limit(8192).hardware();
    let model = testing::model(131_072);
    for case in offload_bisect::table::cases() {
        let trial = |o| case.machine.offload_trial(case.bounds.ctx, o);
        let native = testing::run_offload::<offload_bisect::Bisect>(
            case.settings,
            &hw,
            &model,
            &case.bounds,
            trial,
        )
        .expect("native run");
        let mut search = host
            .load_offload(&plugin, case.settings, &hw, &model, &case.bounds)
            .expect("load offload-bisect");
        let wasm = drive(&mut search, trial).unwrap_or_else(|e| panic!("{}: {e}", case.name));
        assert_eq!(wasm.proposals, native.proposals, "{}", case.name);
        assert_eq!(wasm.proposals, case.proposals(), "{}", case.name);
        assert_eq!(wasm.best, case.best(), "{}", case.name);
    }
}

#[test]
fn concurrency_ladder_table_through_the_component_matches_native() {
    let host = host();
    let plugin: PluginRef = "concurrency-ladder".parse().expect("built-in");
    let hw = MemoryMachine::with_context_limit(8192).hardware();
    let model = testing::model(8192);
    for case in concurrency_ladder::table::cases() {
        let bounds = plugin::concurrency_bounds(case.max);
        let trial = |n| case.machine.concurrency_trial(n, &case.slo);
        let native = testing::run_concurrency::<concurrency_ladder::Ladder>(
            case.settings,
            &hw,
            &model,
            &bounds,
            &case.slo,
            trial,
        )
        .expect("native run");

        let mut search = host
            .load_concurrency(&plugin, case.settings, &hw, &model, &bounds, &case.slo)
            .expect("load concurrency-ladder");
        let wasm = drive(&mut search, trial).unwrap_or_else(|e| panic!("{}: {e}", case.name));

        assert_eq!(wasm.proposals, native.proposals, "{}", case.name);
        assert_eq!(wasm.proposals, case.proposals, "{}", case.name);
        assert_eq!(wasm.best, case.best, "{}", case.name);
    }
}

#[test]
fn wrong_setting_type_is_reported_naming_the_plugin() {
    let host = host();
    let machine = MemoryMachine::with_context_limit(50_000);
    let err = host
        .load_context(
            &"binary-search".parse().expect("built-in"),
            r#"{"max_binary_iterations": "seven"}"#,
            &machine.hardware(),
            &testing::model(131_072),
            &Default::default(),
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("plugin binary-search rejected its settings"),
        "{err}"
    );
    assert!(err.contains("invalid type"), "{err}");
    let err = host
        .load_concurrency(
            &"concurrency-ladder".parse().expect("built-in"),
            r#"{"levels": [1, 0]}"#,
            &machine.hardware(),
            &testing::model(131_072),
            &plugin::concurrency_bounds(64),
            &Slo::default(),
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("plugin concurrency-ladder rejected its settings")
            && err.contains("at least 1"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_run_from_inside_a_tokio_runtime() {
    let host = host();
    let machine = MemoryMachine::with_context_limit(100_000);
    let mut search = host
        .load_context(
            &"binary-search".parse().expect("built-in"),
            "{}",
            &machine.hardware(),
            &testing::model(131_072),
            &Default::default(),
        )
        .expect("load");
    let mut steps = 0;
    while let Some(ctx) = search.propose().expect("propose") {
        // Interleave with real async work, as the tune loop does around each trial.
        tokio::task::yield_now().await;
        search
            .observe(&machine.context_trial(ctx))
            .expect("observe");
        steps += 1;
    }
    assert_eq!(search.best().expect("best"), Some(99_840));
    assert_eq!(steps, 9);
    // And from a task on another worker thread.
    let best = tokio::spawn(async move { search.best() })
        .await
        .expect("join")
        .expect("best");
    assert_eq!(best, Some(99_840));
}

#[test]
fn compiled_components_are_cached_on_disk() {
    let dir = std::env::temp_dir().join(format!("ozone-plugin-cache-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let host = PluginHost::new(SandboxLimits::default(), Some(dir.clone())).expect("engine");
    let plugin: PluginRef = "batch-scaler".parse().expect("built-in");
    let hw = MemoryMachine::with_context_limit(8192).hardware();
    let m = testing::model(32_768);
    let bounds = testing::batch_bounds(32);
    host.load_batch(&plugin, "{}", &hw, &m, &bounds)
        .expect("cold load");
    let entries: Vec<_> = std::fs::read_dir(&dir)
        .expect("cache dir")
        .flatten()
        .collect();
    assert_eq!(entries.len(), 1, "one compiled component stored");
    // A second host (a second run) loads it from the cache and it still works.
    let again = PluginHost::new(SandboxLimits::default(), Some(dir.clone())).expect("engine");
    let mut scaler = again
        .load_batch(&plugin, "{}", &hw, &m, &bounds)
        .expect("cached load");
    assert_eq!(scaler.propose().expect("propose"), Some(bounds.initial));
    // A corrupt entry is recompiled, not trusted.
    std::fs::write(entries[0].path(), b"garbage").expect("corrupt");
    let mut scaler = again
        .load_batch(&plugin, "{}", &hw, &m, &bounds)
        .expect("recompiled");
    assert_eq!(scaler.propose().expect("propose"), Some(bounds.initial));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn memory_model_example_through_the_component() {
    let host = host();
    let machine = MemoryMachine::with_context_limit(100_000);
    let mut search = host
        .load_context(
            &guest(MEMORY_MODEL),
            "{}",
            &machine.hardware(),
            &testing::model(131_072),
            &Default::default(),
        )
        .expect("load memory-model");
    let run = drive(&mut search, |ctx| machine.context_trial(ctx)).expect("run");
    assert_eq!(run.proposals, vec![2048, 99_840, 100_096]);
    assert_eq!(run.best, Some(99_840));
}

#[test]
fn golden_batch_example_through_the_component() {
    let host = host();
    let machine = BatchMachine {
        best_batch: 384,
        peak_tps: 1000.0,
        oom_above: None,
    };
    let hw = MemoryMachine::with_context_limit(32_768).hardware();
    // A host configured with `max_batch: 1024`.
    let bounds = BatchBounds {
        max: 1024,
        ..testing::batch_bounds(32)
    };
    let mut scaler = host
        .load_batch(
            &guest(GOLDEN_BATCH),
            "{}",
            &hw,
            &testing::model(32_768),
            &bounds,
        )
        .expect("load golden-batch");
    let run = drive(&mut scaler, |b| machine.batch_trial(b)).expect("run");
    assert!(
        run.best.is_some_and(|b| (352..=416).contains(&b.batch)),
        "{run:?}"
    );
}
