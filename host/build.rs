//! Compiles the guest crates (default strategies, examples, test guests) to
//! wasm32-wasip2 components, so `ozone` can embed the default plugins.
//!
//! The nested `cargo build` uses its own target dir (`<target>/wasm-guests`): the outer
//! build holds the lock on its own, and sharing it would deadlock (the same approach as
//! wasmtime's `crates/test-programs/artifacts/build.rs`). Its output dir is passed to
//! the crate as `OZONE_GUEST_DIR`.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Guest packages; each produces `<name with underscores>.wasm`.
/// Default strategies (embedded), examples and test guests (used by the tests).
const GUESTS: &[&str] = &[
    "binary-search",
    "batch-scaler",
    "memory-model",
    "golden-batch",
    "linear-sweep",
    "misbehaving",
];

const TARGET: &str = "wasm32-wasip2";
const PROFILE: &str = "guest";

fn main() {
    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest_dir
        .parent()
        .expect("host/ lives in the workspace root")
        .to_path_buf();
    for watched in [
        "wit",
        "sdk",
        "strategies",
        "examples",
        "host/tests/guests",
        "Cargo.toml",
        "Cargo.lock",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    println!("cargo:rerun-if-env-changed=OZONE_GUEST_TARGET_DIR");

    let target_dir = guest_target_dir();
    check_target_installed();

    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&root)
        .args([
            "build",
            "--target",
            TARGET,
            "--profile",
            PROFILE,
            "--target-dir",
        ])
        .arg(&target_dir);
    for guest in GUESTS {
        cmd.args(["-p", guest]);
    }
    // The outer build's flags (coverage, sanitizers, a clippy wrapper) are for the host
    // target; the guests get a clean environment.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_MANIFEST_PATH",
    ] {
        cmd.env_remove(var);
    }
    let output = match cmd.output() {
        Ok(output) => output,
        Err(e) => panic!("could not run cargo to build the wasm plugins: {e}"),
    };
    if !output.status.success() {
        panic!(
            "building the wasm plugins (cargo build --target {TARGET} --profile {PROFILE}) failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let out = target_dir.join(TARGET).join(PROFILE);
    for guest in GUESTS {
        let wasm = out.join(format!("{}.wasm", guest.replace('-', "_")));
        assert!(
            wasm.is_file(),
            "the guest build did not produce {}",
            wasm.display()
        );
    }
    println!("cargo:rustc-env=OZONE_GUEST_DIR={}", out.display());
}

/// `<outer target dir>/wasm-guests`, found from OUT_DIR (`<target>/<profile>/build/<pkg>/out`).
fn guest_target_dir() -> PathBuf {
    if let Some(dir) = env::var_os("OZONE_GUEST_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    out_dir
        .ancestors()
        .find(|p| p.file_name().is_some_and(|n| n == "build"))
        .and_then(Path::parent)
        .and_then(Path::parent)
        .map(|target| target.join("wasm-guests"))
        .unwrap_or_else(|| out_dir.join("wasm-guests"))
}

/// Fails early, with the fix, when the wasm target's standard library is missing.
fn check_target_installed() {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let sysroot = Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    if let Some(sysroot) = sysroot {
        if !sysroot.join("lib/rustlib").join(TARGET).is_dir() {
            panic!(
                "\n\nozone embeds its default plugins as WebAssembly components, which needs the \
                 {TARGET} target.\nInstall it with:\n\n    rustup target add {TARGET}\n\n"
            );
        }
    }
}
