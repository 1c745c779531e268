//! Compiles the test guests (`host/tests/guests`) and the example strategies
//! (`examples/`) to wasm32-wasip2 components for the host's tests and benches, the way
//! wasmtime's `crates/test-programs/artifacts` does. `host/build.rs` builds only what
//! `ozone` embeds; this crate is a dev-dependency, so `cargo install` never builds these.

#[path = "../../build/guests.rs"]
mod guests;

use std::env;
use std::path::PathBuf;

/// Test guests and examples; `src/lib.rs` names each `.wasm`.
const GUESTS: &[&str] = &[
    "misbehaving",
    "legacy-v0-2",
    "memory-model",
    "golden-batch",
    "linear-sweep",
];

fn main() {
    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest_dir
        .ancestors()
        .nth(3)
        .expect("host/tests/artifacts lives three levels below the workspace root")
        .to_path_buf();
    guests::rerun_if_changed(
        &root,
        &[
            "wit",
            "sdk",
            "examples",
            "host/tests/guests",
            "host/build",
            "Cargo.toml",
            "Cargo.lock",
        ],
    );
    let out = guests::build(&root, GUESTS);
    println!("cargo:rustc-env=OZONE_TEST_GUEST_DIR={}", out.display());
}
