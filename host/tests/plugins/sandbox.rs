//! Sandbox tests: purpose-built misbehaving guests (host/tests/guests/misbehaving, which
//! exports all five interfaces), a component built for plugin API 0.2.0
//! (host/tests/guests/legacy-v0-2) and malformed components. Each must fail with a clear
//! error naming the plugin, within a bounded time (a hang fails the test), and a good
//! plugin must still run afterwards.

use crate::common::plugins as common;
use std::sync::mpsc;
use std::time::Duration;

use common::{guest, host, host_with};
use ozone::plugin::{
    self, PluginError, PluginHost, PluginRef, SandboxLimits, Strategy, World, BUILTINS,
};
use ozone_sdk::testing::{self, MemoryMachine};
use ozone_sdk::{
    BatchProposal, CacheType, HardwareFacts, ModelFacts, Offload, OffloadBounds, Slo, Variant,
    VariantSpace,
};
use ozone_test_artifacts::{LEGACY_V0_2, MISBEHAVING};

/// Runs `f` on its own thread; a plugin that hangs the host fails the test instead of
/// hanging it.
fn within<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("{what}: no answer within 60 s: the host hung"))
}

fn facts() -> (HardwareFacts, ModelFacts) {
    let machine = MemoryMachine::with_context_limit(100_000);
    (machine.hardware(), testing::model(131_072))
}

/// Loads the misbehaving guest as a context search with `settings` and calls `propose`
/// once.
fn misbehave(host: &PluginHost, settings: &str) -> Result<Option<u32>, PluginError> {
    let (hw, m) = facts();
    let mut search =
        host.load_context(&guest(MISBEHAVING), settings, &hw, &m, &Default::default())?;
    search.propose()
}

/// The same, as a batch scaler within `1..=256` (micro-batches up to 512).
fn misbehave_batch(
    host: &PluginHost,
    settings: &str,
) -> Result<Option<BatchProposal>, PluginError> {
    let (hw, m) = facts();
    let bounds = plugin::batch_bounds(256, 512, 32);
    let mut scaler = host.load_batch(&guest(MISBEHAVING), settings, &hw, &m, &bounds)?;
    scaler.propose()
}

/// The same, as a variant search over f16 and q8_0 caches.
fn misbehave_variant(host: &PluginHost, settings: &str) -> Result<Option<Variant>, PluginError> {
    let (hw, m) = facts();
    let mut search = host.load_variant(&guest(MISBEHAVING), settings, &hw, &m, &variant_space())?;
    search.propose()
}

/// The same, as an offload search over 33 layers of a dense model.
fn misbehave_offload(host: &PluginHost, settings: &str) -> Result<Option<Offload>, PluginError> {
    let (hw, m) = facts();
    let bounds = OffloadBounds {
        layers: 33,
        expert_layers: 0,
        ctx: 32_768,
        fit: None,
    };
    let mut search = host.load_offload(&guest(MISBEHAVING), settings, &hw, &m, &bounds)?;
    search.propose()
}

fn variant_space() -> VariantSpace {
    let q8 = Variant {
        cache_type_k: CacheType::Q8_0,
        cache_type_v: CacheType::Q8_0,
        ..Variant::default()
    };
    VariantSpace {
        initial: Variant::default(),
        candidates: vec![Variant::default(), q8],
        max_variants: 4,
    }
}

/// The same, as a concurrency search within `1..=64`.
fn misbehave_concurrency(host: &PluginHost, settings: &str) -> Result<Option<u32>, PluginError> {
    let (hw, m) = facts();
    let bounds = plugin::concurrency_bounds(64);
    let mut search = host.load_concurrency(
        &guest(MISBEHAVING),
        settings,
        &hw,
        &m,
        &bounds,
        &Slo::default(),
    )?;
    search.propose()
}

/// A good plugin still runs normally on the same host.
fn good_plugin_still_runs(host: &PluginHost) {
    let (hw, m) = facts();
    let machine = MemoryMachine::with_context_limit(100_000);
    let mut search = host
        .load_context(
            &"binary-search".parse().expect("built-in"),
            "{}",
            &hw,
            &m,
            &Default::default(),
        )
        .expect("good plugin loads");
    let run =
        common::drive(&mut search, |ctx| machine.context_trial(ctx)).expect("good plugin runs");
    assert_eq!(run.best, Some(99_840));
}

fn expect_err<T: std::fmt::Debug>(result: Result<Option<T>, PluginError>) -> String {
    match result {
        Ok(v) => panic!("expected an error, the plugin returned {v:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn infinite_loop_exhausts_the_per_call_budget() {
    let err = within("loop", || {
        let host = host();
        let err = expect_err(misbehave(&host, r#"{"mode": "loop"}"#));
        good_plugin_still_runs(&host);
        err
    });
    assert!(
        err.contains("plugin ") && err.contains("misbehaving.wasm"),
        "{err}"
    );
    assert!(err.contains("exceeded its per-call budget"), "{err}");
    assert!(err.contains("in propose"), "{err}");
}

#[test]
fn infinite_loop_in_the_constructor_too() {
    let err = within("loop-in-create", || {
        let host = host();
        let err = expect_err(misbehave(&host, r#"{"mode": "loop-in-create"}"#));
        good_plugin_still_runs(&host);
        err
    });
    assert!(
        err.contains("exceeded its per-call budget") && err.contains("in create"),
        "{err}"
    );
    assert!(err.contains("raise ozone.sandbox.fuel_per_call"), "{err}");
}

#[test]
fn memory_bomb_hits_the_memory_cap() {
    let err = within("memory-bomb", || {
        let host = host();
        let err = expect_err(misbehave(&host, r#"{"mode": "memory-bomb"}"#));
        good_plugin_still_runs(&host);
        err
    });
    assert!(err.contains("tried to grow memory past 64 MiB"), "{err}");
    assert!(err.contains("raise ozone.sandbox.memory_mb"), "{err}");
}

#[test]
fn the_memory_cap_is_configurable() {
    let err = within("memory-bomb 16", || {
        let host = host_with(SandboxLimits {
            memory_mb: 16,
            ..SandboxLimits::default()
        });
        expect_err(misbehave(&host, r#"{"mode": "memory-bomb"}"#))
    });
    assert!(err.contains("tried to grow memory past 16 MiB"), "{err}");
}

#[test]
fn a_panic_is_a_trap_with_its_message_and_the_instance_is_discarded() {
    let (first, second) = within("panic", || {
        let host = host();
        let (hw, m) = facts();
        let mut search = host
            .load_context(
                &guest(MISBEHAVING),
                r#"{"mode": "panic"}"#,
                &hw,
                &m,
                &Default::default(),
            )
            .expect("loads");
        let first = expect_err(search.propose());
        // The trapped store is never reused.
        let second = expect_err(search.propose());
        good_plugin_still_runs(&host);
        (first, second)
    });
    assert!(first.contains("trapped in propose"), "{first}");
    assert!(first.contains("deliberate failure in propose"), "{first}");
    assert!(
        second.contains("trapped earlier and its instance was discarded"),
        "{second}"
    );
}

#[test]
fn deep_recursion_hits_the_stack_cap() {
    let err = within("stack-overflow", || {
        let host = host();
        let err = expect_err(misbehave(&host, r#"{"mode": "stack-overflow"}"#));
        good_plugin_still_runs(&host);
        err
    });
    assert!(err.contains("trapped") && err.contains("stack"), "{err}");
    assert!(err.contains("raise ozone.sandbox.stack_kb"), "{err}");
}

#[test]
fn wasi_is_not_granted() {
    let err = within("wasi", || {
        expect_err(misbehave(&host(), r#"{"mode": "wasi"}"#))
    });
    assert!(err.contains("trapped in propose"), "{err}");
    assert!(err.contains("wasi:"), "{err}");
}

#[test]
fn absurd_context_proposals_are_refused_with_the_valid_range() {
    let host = host();
    for (value, _why) in [
        (0, "zero"),
        (1792, "below min"),
        (131_328, "above trained"),
        (65_537, "misaligned"),
    ] {
        let settings = format!(r#"{{"mode": "propose", "value": {value}}}"#);
        let err = within("propose", {
            let host = host_with(host.limits().clone());
            move || expect_err(misbehave(&host, &settings))
        });
        assert!(
            err.contains(&format!(
                "proposed context {value} (must be between 2048 and the model's trained context 131072, a multiple of 256)"
            )),
            "{err}"
        );
        assert!(err.contains("misbehaving.wasm"), "{err}");
    }
    // The edges themselves are fine.
    for value in [2048, 131_072] {
        let settings = format!(r#"{{"mode": "propose", "value": {value}}}"#);
        assert_eq!(misbehave(&host, &settings).expect("valid"), Some(value));
    }
}

#[test]
fn batch_proposals_are_held_to_the_batch_bounds() {
    let host = host();
    for value in [0, 257, 1024] {
        let settings = format!(r#"{{"mode": "propose", "value": {value}}}"#);
        let err = expect_err(misbehave_batch(&host, &settings));
        assert!(
            err.contains(&format!(
                "plugin {MISBEHAVING} proposed batch {value} with micro-batch {value} (its batch \
                 bounds are 1..=256, the micro-batch 1..=min(batch, 512); the largest are \
                 search_strategy.batch_adaptation.max_batch and max_ubatch)"
            )),
            "{err}"
        );
    }
    for value in [1, 256] {
        let settings = format!(r#"{{"mode": "propose", "value": {value}}}"#);
        assert_eq!(
            misbehave_batch(&host, &settings).expect("valid"),
            Some(BatchProposal {
                batch: value,
                ubatch: value
            })
        );
    }
    // The bounds are the host's, whatever the settings say.
    let (hw, m) = facts();
    let scaler = host
        .load_batch(
            &"batch-scaler".parse().expect("built-in"),
            r#"{"max_batch": 1024}"#,
            &hw,
            &m,
            &plugin::batch_bounds(64, 512, 16),
        )
        .expect("loads");
    assert_eq!(
        (scaler.bounds().max, scaler.bounds().initial.batch),
        (64, 16)
    );
}

#[test]
fn concurrency_proposals_are_held_to_the_concurrency_bounds() {
    let host = host();
    for value in [0, 65] {
        let settings = format!(r#"{{"mode": "propose", "value": {value}}}"#);
        let err = expect_err(misbehave_concurrency(&host, &settings));
        assert!(
            err.contains(&format!(
                "plugin {MISBEHAVING} proposed concurrency {value} (its concurrency bounds are 1..=64 streams; \
                 the largest is testing.concurrency_progression.max_concurrency)"
            )),
            "{err}"
        );
    }
    assert_eq!(
        misbehave_concurrency(&host, r#"{"mode": "propose", "value": 64}"#).expect("valid"),
        Some(64)
    );
}

#[test]
fn a_concurrency_plugin_that_loops_or_panics_is_stopped_like_the_others() {
    let (looped, panicked) = within("concurrency loop", || {
        let host = host();
        (
            expect_err(misbehave_concurrency(&host, r#"{"mode": "loop"}"#)),
            expect_err(misbehave_concurrency(&host, r#"{"mode": "panic"}"#)),
        )
    });
    assert!(
        looped.contains("exceeded its per-call budget") && looped.contains("in propose"),
        "{looped}"
    );
    assert!(
        panicked.contains("trapped in propose")
            && panicked.contains("deliberate failure in propose"),
        "{panicked}"
    );
}

#[test]
fn wrong_world_is_named() {
    let host = host();
    let (hw, m) = facts();
    let err = host
        .load_context(
            &"batch-scaler".parse().expect("built-in"),
            "{}",
            &hw,
            &m,
            &Default::default(),
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert_eq!(
        err,
        "plugin batch-scaler is a batch-strategy plugin, but a context-strategy plugin is needed here"
    );
    let err = host
        .load_batch(
            &"concurrency-ladder".parse().expect("built-in"),
            "{}",
            &hw,
            &m,
            &plugin::batch_bounds(256, 512, 32),
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert_eq!(
        err,
        "plugin concurrency-ladder is a concurrency-strategy plugin, but a batch-strategy plugin is needed here"
    );
}

#[test]
fn every_builtin_is_a_component_of_its_world_at_this_version() {
    let host = host();
    for builtin in BUILTINS {
        let plugin = PluginRef::Builtin(builtin.name.to_string());
        assert_eq!(
            host.inspect(&plugin).ok(),
            Some(builtin.world),
            "{}",
            builtin.name
        );
    }
    // Every world has a built-in, and the configured defaults are built-ins of theirs.
    for world in World::ALL {
        assert!(BUILTINS.iter().any(|b| b.world == world), "{world:?}");
    }
    let defaults = ozone::config::Config::default().ozone;
    for (name, world) in [
        (&defaults.context_strategy, World::Context),
        (&defaults.batch_strategy, World::Batch),
        (&defaults.concurrency_strategy, World::Concurrency),
    ] {
        let builtin = BUILTINS.iter().find(|b| b.name == name.as_str());
        assert_eq!(builtin.map(|b| b.world), Some(world), "default {name}");
    }
}

/// The message a plugin built for 0.2.0 gets, whichever kind of plugin is asked for.
#[test]
fn a_plugin_built_for_api_0_2_0_is_refused_with_how_to_rebuild_it() {
    let host = host();
    let (hw, m) = facts();
    let legacy = guest(LEGACY_V0_2);
    let expected = format!(
        "plugin {LEGACY_V0_2} is built for plugin API 0.2.0; this ozone speaks 0.3.0: update \
         its ozone-sdk dependency to 0.3 and rebuild it (`cargo build --target wasm32-wasip2 \
         --release`); see wit/CHANGES.md"
    );
    let as_context = host
        .load_context(&legacy, "{}", &hw, &m, &Default::default())
        .err();
    assert_eq!(as_context.map(|e| e.to_string()), Some(expected.clone()));
    let as_batch = host
        .load_batch(&legacy, "{}", &hw, &m, &plugin::batch_bounds(256, 512, 32))
        .err();
    assert_eq!(as_batch.map(|e| e.to_string()), Some(expected.clone()));
    let inspected = host.inspect(&legacy).err();
    assert!(
        matches!(inspected, Some(PluginError::WrongApiVersion { ref found, .. }) if found == "0.2.0"),
        "{inspected:?}"
    );
}

fn write_fixture(name: &str, bytes: &[u8]) -> PluginRef {
    let path = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::write(&path, bytes).expect("write fixture");
    PluginRef::File(path)
}

#[test]
fn wrong_api_version_is_named() {
    // A component exporting the context interface of a future API version.
    let wat = r#"(component
        (core module $m (func (export "f") (result i32) i32.const 0))
        (core instance $i (instantiate $m))
        (func $f (result u32) (canon lift (core func $i "f")))
        (instance $inst (export "best" (func $f)))
        (export "ozone:strategy/context@0.4.0" (instance $inst))
    )"#;
    let plugin = write_fixture("future-api.wasm", wat.as_bytes());
    let (hw, m) = facts();
    let err = host()
        .load_context(&plugin, "{}", &hw, &m, &Default::default())
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains(
            "is built for plugin API 0.4.0; this ozone speaks 0.3.0: it needs a newer ozone"
        ),
        "{err}"
    );
    // `ozone plugins check` inspects before loading: same verdict.
    let err = host()
        .inspect(&plugin)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("plugin API 0.4.0"), "{err}");
}

#[test]
fn a_component_that_is_no_strategy_is_named() {
    let wat = r#"(component
        (core module $m (func (export "f") (result i32) i32.const 0))
        (core instance $i (instantiate $m))
        (func $f (result u32) (canon lift (core func $i "f")))
        (export "run" (func $f))
    )"#;
    let plugin = write_fixture("not-a-strategy.wasm", wat.as_bytes());
    let (hw, m) = facts();
    let err = host()
        .load_context(&plugin, "{}", &hw, &m, &Default::default())
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("is not an Ozone strategy"), "{err}");
}

#[test]
fn core_modules_and_garbage_are_not_components() {
    let (hw, m) = facts();
    let core = write_fixture("core-module.wasm", b"\0asm\x01\0\0\0");
    let err = host()
        .load_context(&core, "{}", &hw, &m, &Default::default())
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("is not a WebAssembly component: it is a core WebAssembly module"),
        "{err}"
    );

    let garbage = write_fixture("garbage.wasm", b"#!/bin/sh\necho hi\n");
    let err = host()
        .load_context(&garbage, "{}", &hw, &m, &Default::default())
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("garbage.wasm is not a WebAssembly component"),
        "{err}"
    );

    let missing = PluginRef::File("/nonexistent/plugin.wasm".into());
    let err = host()
        .load_context(&missing, "{}", &hw, &m, &Default::default())
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("cannot read plugin /nonexistent/plugin.wasm"),
        "{err}"
    );
}

#[test]
fn plugin_refs_parse() {
    assert_eq!(
        "binary-search".parse::<PluginRef>().ok(),
        Some(PluginRef::Builtin("binary-search".into()))
    );
    assert_eq!(
        "./my.wasm".parse::<PluginRef>().ok(),
        Some(PluginRef::File("./my.wasm".into()))
    );
    let err = "binary_search"
        .parse::<PluginRef>()
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("unknown built-in plugin `binary_search`"),
        "{err}"
    );
}

#[test]
fn variant_and_offload_plugins_that_loop_panic_or_propose_the_impossible_are_stopped() {
    let host = host();
    let (looped, panicked) = within("variant loop", {
        let host = host_with(host.limits().clone());
        move || {
            (
                expect_err(misbehave_variant(&host, r#"{"mode": "loop"}"#)),
                expect_err(misbehave_offload(&host, r#"{"mode": "panic"}"#)),
            )
        }
    });
    assert!(
        looped.contains("exceeded its per-call budget") && looped.contains("in propose"),
        "{looped}"
    );
    assert!(panicked.contains("trapped in propose"), "{panicked}");
    // 7 threads: no candidate of the space.
    let err = expect_err(misbehave_variant(
        &host,
        r#"{"mode": "propose", "value": 7}"#,
    ));
    assert!(
        err.contains(&format!(
            "plugin {MISBEHAVING} proposed the variant kv f16/f16 fa auto t 7, which cannot run \
             here: it is not one of the 2 candidates"
        )),
        "{err}"
    );
    // The same candidate again, after it was measured.
    let (hw, m) = facts();
    let mut search = host
        .load_variant(
            &guest(MISBEHAVING),
            r#"{"mode": "propose", "value": 0}"#,
            &hw,
            &m,
            &variant_space(),
        )
        .expect("loads");
    let first = search.propose().expect("valid").expect("a variant");
    assert_eq!(search.propose().expect("pending, repeated"), Some(first));
    let machine = ozone_sdk::testing::VariantMachine {
        f16_limit: 8192,
        trained: 32_768,
        trials_each: 4,
    };
    search
        .observe(&machine.variant_trial(first))
        .expect("observes");
    let err = expect_err(search.propose());
    assert!(err.contains("it was measured already"), "{err}");
    // Offload above the model's layers.
    let err = expect_err(misbehave_offload(
        &host,
        r#"{"mode": "propose", "value": 34}"#,
    ));
    assert!(
        err.contains("proposed offload of 34 layers on the GPU") && err.contains("33 layers"),
        "{err}"
    );
    assert_eq!(
        misbehave_offload(&host, r#"{"mode": "propose", "value": 33}"#).expect("valid"),
        Some(Offload {
            gpu_layers: 33,
            cpu_moe_layers: 0
        })
    );
}
