//! The default plugins, compiled from `strategies/` by `host/build.rs` and embedded.

use super::World;

/// A plugin shipped inside the `ozone` binary.
#[derive(Debug, Clone, Copy)]
pub struct Builtin {
    pub name: &'static str,
    pub world: World,
    pub summary: &'static str,
    pub wasm: &'static [u8],
}

pub const BUILTINS: &[Builtin] = &[
    Builtin {
        name: "binary-search",
        world: World::Context,
        summary: "grow the context by binary_search_factor, then bisect (default)",
        wasm: include_bytes!(concat!(env!("OZONE_GUEST_DIR"), "/binary_search.wasm")),
    },
    Builtin {
        name: "memory-fit",
        world: World::Context,
        summary:
            "fit peak memory against context, aim just below where headroom runs out, then bisect",
        wasm: include_bytes!(concat!(env!("OZONE_GUEST_DIR"), "/memory_fit.wasm")),
    },
    Builtin {
        name: "batch-scaler",
        world: World::Batch,
        summary: "multiply the batch by scale_up_factor while throughput improves (default)",
        wasm: include_bytes!(concat!(env!("OZONE_GUEST_DIR"), "/batch_scaler.wasm")),
    },
    Builtin {
        name: "concurrency-ladder",
        world: World::Concurrency,
        summary:
            "1, 2, 4, 8 streams until one is unstable; under an SLO, double then bisect (default)",
        wasm: include_bytes!(concat!(env!("OZONE_GUEST_DIR"), "/concurrency_ladder.wasm")),
    },
    Builtin {
        name: "variant-frontier",
        world: World::Variant,
        summary: "the flags' variant first, then those predicted to widen the context-quality frontier (default)",
        wasm: include_bytes!(concat!(env!("OZONE_GUEST_DIR"), "/variant_frontier.wasm")),
    },
    Builtin {
        name: "offload-bisect",
        world: World::Offload,
        summary: "from llama.cpp's fit: MoE experts to the CPU first, then bisect the GPU layers (default)",
        wasm: include_bytes!(concat!(env!("OZONE_GUEST_DIR"), "/offload_bisect.wasm")),
    },
];

pub fn find(name: &str) -> Option<&'static Builtin> {
    BUILTINS.iter().find(|b| b.name == name)
}

/// The built-ins' names, for messages: `binary-search, batch-scaler, …`.
pub fn names() -> String {
    BUILTINS
        .iter()
        .map(|b| b.name)
        .collect::<Vec<_>>()
        .join(", ")
}
