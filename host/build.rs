//! Compiles the strategies `ozone` embeds (`strategies/`) to wasm32-wasip2 components,
//! and passes their folder to the crate as `OZONE_GUEST_DIR` (see `src/plugin/builtin.rs`).
//!
//! Only these: test guests and examples are built by the test-only crate
//! `host/tests/artifacts`, so `cargo install --path host` builds nothing it does not ship.

#[path = "build/guests.rs"]
mod guests;

use std::env;
use std::path::PathBuf;

/// The embedded strategies; each produces `<name with underscores>.wasm`.
const EMBEDDED: &[&str] = &[
    "binary-search",
    "memory-fit",
    "batch-scaler",
    "concurrency-ladder",
    "variant-frontier",
    "offload-bisect",
];

fn main() {
    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest_dir
        .parent()
        .expect("host/ lives in the workspace root")
        .to_path_buf();
    guests::rerun_if_changed(
        &root,
        &[
            "wit",
            "sdk",
            "strategies",
            "host/build",
            "Cargo.toml",
            "Cargo.lock",
        ],
    );
    let out = guests::build(&root, EMBEDDED);
    println!("cargo:rustc-env=OZONE_GUEST_DIR={}", out.display());
}
