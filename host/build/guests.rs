//! Compiles guest crates of the workspace to wasm32-wasip2 components with a nested
//! `cargo build`. Shared by `host/build.rs` (the embedded strategies) and
//! `host/tests/artifacts/build.rs` (test guests and examples).
//!
//! The nested build uses its own target dir (`<outer target>/wasm-guests`, or
//! `OZONE_GUEST_TARGET_DIR`): the outer build holds the lock on its own, and sharing it
//! would deadlock (the same approach as wasmtime's `crates/test-programs/artifacts`).
//! Both build scripts share that dir, so the SDK is compiled for wasm once; two nested
//! builds at the same time wait for each other's lock.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

pub const TARGET: &str = "wasm32-wasip2";
/// `[profile.guest]` in the workspace manifest: small and quick to build.
pub const PROFILE: &str = "guest";

/// Builds `packages` of the workspace at `root` and returns the folder holding
/// `<package with underscores>.wasm` for each. Panics with the fix when it cannot.
pub fn build(root: &Path, packages: &[&str]) -> PathBuf {
    println!("cargo:rerun-if-env-changed=OZONE_GUEST_TARGET_DIR");
    let target_dir = guest_target_dir();
    check_target_installed();

    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root)
        .args([
            "build",
            "--target",
            TARGET,
            "--profile",
            PROFILE,
            "--target-dir",
        ])
        .arg(&target_dir);
    for package in packages {
        cmd.args(["-p", package]);
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
        Err(e) => panic!("could not run cargo to build the wasm guests: {e}"),
    };
    if !output.status.success() {
        panic!(
            "building the wasm guests {packages:?} (cargo build --target {TARGET} --profile {PROFILE}) failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let out = target_dir.join(TARGET).join(PROFILE);
    for package in packages {
        let wasm = out.join(format!("{}.wasm", package.replace('-', "_")));
        assert!(
            wasm.is_file(),
            "the guest build did not produce {}",
            wasm.display()
        );
    }
    out
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

/// Asks cargo to run the build script again when any of `paths` (relative to `root`)
/// changes.
pub fn rerun_if_changed(root: &Path, paths: &[&str]) {
    for path in paths {
        println!("cargo:rerun-if-changed={}", root.join(path).display());
    }
}
