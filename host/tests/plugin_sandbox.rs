//! Sandbox tests: purpose-built misbehaving guests (host/tests/guests/misbehaving) and
//! malformed components. Each must fail with a clear error naming the plugin, within a
//! bounded time (a hang fails the test), and a good plugin must still run afterwards.

#[path = "plugin_common/mod.rs"]
mod common;

use std::sync::mpsc;
use std::time::Duration;

use common::{guest, hardware, host, host_with, model};
use ozone::plugin::{PluginError, PluginHost, PluginRef, SandboxLimits};
use ozone_sdk::testing::{self, MemoryMachine};

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

fn facts() -> (ozone::plugin::HardwareFacts, ozone::plugin::ModelInfo) {
    let machine = MemoryMachine::with_context_limit(100_000);
    (
        hardware(&machine.hardware()),
        model(&testing::model(131_072)),
    )
}

/// Loads the misbehaving guest with `settings` and calls `propose` once.
fn misbehave(host: &PluginHost, settings: &str) -> Result<Option<u32>, PluginError> {
    let (hw, m) = facts();
    let mut search = host.load_context(&guest("misbehaving.wasm"), settings, &hw, &m)?;
    search.propose()
}

/// A good plugin still runs normally on the same host.
fn good_plugin_still_runs(host: &PluginHost) {
    let (hw, m) = facts();
    let machine = MemoryMachine::with_context_limit(100_000);
    let mut search = host
        .load_context(&"binary-search".parse().expect("built-in"), "{}", &hw, &m)
        .expect("good plugin loads");
    let run = common::drive_context(&mut search, |ctx| machine.context_trial(ctx))
        .expect("good plugin runs");
    assert_eq!(run.best, Some(99_840));
}

fn expect_err(result: Result<Option<u32>, PluginError>) -> String {
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
            .load_context(&guest("misbehaving.wasm"), r#"{"mode": "panic"}"#, &hw, &m)
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
fn the_host_batch_bound_comes_from_the_settings_max_batch() {
    let host = host();
    let (hw, m) = facts();
    let plugin: PluginRef = "batch-scaler".parse().expect("built-in");
    let scaler = host
        .load_batch(&plugin, r#"{"max_batch": 64}"#, &hw, &m)
        .expect("loads");
    assert_eq!(scaler.max_batch(), 64);
    let scaler = host.load_batch(&plugin, "{}", &hw, &m).expect("loads");
    assert_eq!(scaler.max_batch(), 256);
}

#[test]
fn wrong_world_is_named() {
    let host = host();
    let (hw, m) = facts();
    let err = host
        .load_context(&"batch-scaler".parse().expect("built-in"), "{}", &hw, &m)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert_eq!(
        err,
        "plugin batch-scaler is a batch-strategy plugin, but a context-strategy plugin is needed here"
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
        (export "ozone:strategy/context@0.2.0" (instance $inst))
    )"#;
    let plugin = write_fixture("future-api.wasm", wat.as_bytes());
    let (hw, m) = facts();
    let err = host()
        .load_context(&plugin, "{}", &hw, &m)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("is built for plugin API 0.2.0, this ozone speaks 0.1.0"),
        "{err}"
    );
    // `ozone plugins check` inspects before loading: same verdict.
    let err = host()
        .inspect(&plugin)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("plugin API 0.2.0"), "{err}");
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
        .load_context(&plugin, "{}", &hw, &m)
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
        .load_context(&core, "{}", &hw, &m)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("is not a WebAssembly component: it is a core WebAssembly module"),
        "{err}"
    );

    let garbage = write_fixture("garbage.wasm", b"#!/bin/sh\necho hi\n");
    let err = host()
        .load_context(&garbage, "{}", &hw, &m)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("garbage.wasm is not a WebAssembly component"),
        "{err}"
    );

    let missing = PluginRef::File("/nonexistent/plugin.wasm".into());
    let err = host()
        .load_context(&missing, "{}", &hw, &m)
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
