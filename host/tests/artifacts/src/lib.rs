//! Paths of the wasm components `build.rs` compiles for the host's tests and benches.

macro_rules! guest {
    ($file:literal) => {
        concat!(env!("OZONE_TEST_GUEST_DIR"), "/", $file)
    };
}

/// `host/tests/guests/misbehaving`: breaks the sandbox on purpose (`{"mode": …}`).
pub const MISBEHAVING: &str = guest!("misbehaving.wasm");
/// `host/tests/guests/legacy-v0-2`: built against plugin API 0.2.0, to be refused.
pub const LEGACY_V0_2: &str = guest!("legacy_v0_2.wasm");
/// `examples/memory-model`: context search predicting the limit from memory figures.
pub const MEMORY_MODEL: &str = guest!("memory_model.wasm");
/// `examples/golden-batch`: golden-section batch search.
pub const GOLDEN_BATCH: &str = guest!("golden_batch.wasm");
/// `examples/linear-sweep`: the baseline context search.
pub const LINEAR_SWEEP: &str = guest!("linear_sweep.wasm");
