//! The decision table of the documented semantics, run natively here and through the
//! wasm component by the host's plugin tests. The machine is
//! `ozone_sdk::testing::VariantMachine`: an f16 cache binds by memory at `f16_limit`
//! tokens, a quantized one holds proportionally more, up to the trained context.

use ozone_sdk::testing::VariantMachine;
use ozone_sdk::{CacheType, FlashAttn, Variant, VariantSpace};

#[derive(Debug, Clone)]
pub struct Case {
    pub name: &'static str,
    pub settings: &'static str,
    pub space: VariantSpace,
    pub machine: VariantMachine,
    /// The exact proposals.
    pub proposals: Vec<Variant>,
}

/// Both halves of the cache of one type, flash attention auto.
pub fn cache(t: CacheType) -> Variant {
    Variant {
        cache_type_k: t,
        cache_type_v: t,
        ..Variant::default()
    }
}

fn space(initial: Variant, candidates: &[Variant], max_variants: u32) -> VariantSpace {
    VariantSpace {
        initial,
        candidates: candidates.to_vec(),
        max_variants,
    }
}

pub fn cases() -> Vec<Case> {
    let (f16, q8, q4) = (
        cache(CacheType::F16),
        cache(CacheType::Q8_0),
        cache(CacheType::Q4_0),
    );
    let fa_off = Variant {
        flash_attn: FlashAttn::Off,
        ..f16
    };
    let memory_bound = VariantMachine {
        f16_limit: 8000,
        trained: 32_768,
        trials_each: 6,
    };
    let trained_bound = VariantMachine {
        f16_limit: 40_000,
        ..memory_bound
    };
    vec![
        Case {
            name: "memory binds: the largest predicted gain first, then the middle ground",
            settings: "{}",
            space: space(f16, &[f16, q8, q4], 6),
            machine: memory_bound,
            proposals: vec![f16, q4, q8],
        },
        Case {
            name: "the trained context binds: a smaller cache widens nothing",
            settings: "{}",
            space: space(f16, &[f16, q8, q4], 6),
            machine: trained_bound,
            proposals: vec![f16],
        },
        Case {
            name: "measure_all: every candidate, in order",
            settings: r#"{"measure_all": true}"#,
            space: space(f16, &[f16, q8, q4], 6),
            machine: trained_bound,
            proposals: vec![f16, q8, q4],
        },
        Case {
            name: "at most max_variants",
            settings: "{}",
            space: space(f16, &[f16, q8, q4], 2),
            machine: memory_bound,
            proposals: vec![f16, q4],
        },
        Case {
            name: "another flash-attention setting cannot be predicted: measured once",
            settings: "{}",
            space: space(f16, &[f16, fa_off], 6),
            machine: trained_bound,
            proposals: vec![f16, fa_off],
        },
        Case {
            name: "the flags' variant first, even when quantized; f16 next for its quality",
            settings: "{}",
            space: space(q8, &[f16, q8], 6),
            machine: trained_bound,
            proposals: vec![q8, f16],
        },
        Case {
            name: "an initial variant outside the space: the first candidate",
            settings: "{}",
            space: space(fa_off, &[q8, f16], 6),
            machine: trained_bound,
            proposals: vec![q8, f16],
        },
        Case {
            name: "a higher min_context_gain skips the middle ground",
            settings: r#"{"min_context_gain": 2.0}"#,
            space: space(f16, &[f16, q8, q4], 6),
            machine: memory_bound,
            proposals: vec![f16, q4],
        },
    ]
}
