//! The decision table of the documented semantics, run natively here and through the
//! wasm component by the host's plugin tests. The machine is
//! `ozone_sdk::testing::OffloadMachine`: up to `fits_layers` layers fit, MoE experts on
//! the CPU make room for `layers_per_moe_layer` layers each.

use ozone_sdk::testing::OffloadMachine;
use ozone_sdk::{Offload, OffloadBounds};

#[derive(Debug, Clone)]
pub struct Case {
    pub name: &'static str,
    pub settings: &'static str,
    pub bounds: OffloadBounds,
    pub machine: OffloadMachine,
    /// `(gpu_layers, cpu_moe_layers)`, exactly.
    pub proposals: &'static [(u32, u32)],
    pub best: Option<(u32, u32)>,
}

impl Case {
    pub fn proposals(&self) -> Vec<Offload> {
        self.proposals.iter().map(|&(g, c)| offload(g, c)).collect()
    }

    pub fn best(&self) -> Option<Offload> {
        self.best.map(|(g, c)| offload(g, c))
    }
}

pub const fn offload(gpu_layers: u32, cpu_moe_layers: u32) -> Offload {
    Offload {
        gpu_layers,
        cpu_moe_layers,
    }
}

const fn dense(fits_layers: u32) -> OffloadMachine {
    OffloadMachine {
        fits_layers,
        layers_per_moe_layer: 0.0,
        layers: 65,
        gpu_tps: 40.0,
        cpu_tps: 5.0,
    }
}

const fn moe(fits_layers: u32, layers_per_moe_layer: f64) -> OffloadMachine {
    OffloadMachine {
        fits_layers,
        layers_per_moe_layer,
        layers: 49,
        gpu_tps: 60.0,
        cpu_tps: 12.0,
    }
}

pub fn cases() -> Vec<Case> {
    let dense_bounds = |fit| OffloadBounds {
        layers: 65,
        expert_layers: 0,
        ctx: 32_768,
        fit,
    };
    let moe_bounds = |fit| OffloadBounds {
        layers: 49,
        expert_layers: 48,
        ctx: 65_536,
        fit,
    };
    vec![
        Case {
            name: "dense: from the fit's 48 layers up to the 52 that fit",
            settings: "{}",
            bounds: dense_bounds(Some(offload(48, 0))),
            machine: dense(52),
            proposals: &[(48, 0), (56, 0), (52, 0), (54, 0), (53, 0)],
            best: Some((52, 0)),
        },
        Case {
            name: "dense without a fit: bisection from the middle",
            settings: "{}",
            bounds: dense_bounds(None),
            machine: dense(52),
            proposals: &[(32, 0), (48, 0), (56, 0), (52, 0), (54, 0), (53, 0)],
            best: Some((52, 0)),
        },
        Case {
            name: "a fit that projected too much: the bracket's upper end",
            settings: "{}",
            bounds: dense_bounds(Some(offload(60, 0))),
            machine: dense(52),
            proposals: &[
                (60, 0),
                (29, 0),
                (44, 0),
                (52, 0),
                (56, 0),
                (54, 0),
                (53, 0),
            ],
            best: Some((52, 0)),
        },
        Case {
            name: "nothing but the CPU fits",
            settings: "{}",
            bounds: dense_bounds(None),
            machine: dense(0),
            proposals: &[(32, 0), (15, 0), (7, 0), (3, 0), (1, 0), (0, 0)],
            best: Some((0, 0)),
        },
        Case {
            name: "MoE: experts to the CPU before any layer, from the fit",
            settings: "{}",
            bounds: moe_bounds(Some(offload(49, 24))),
            machine: moe(30, 1.0),
            proposals: &[(49, 24), (49, 12), (49, 18), (49, 21), (49, 20), (49, 19)],
            best: Some((49, 19)),
        },
        Case {
            name: "MoE without a fit: all experts on the CPU first",
            settings: "{}",
            bounds: moe_bounds(None),
            machine: moe(30, 1.0),
            proposals: &[
                (49, 48),
                (49, 24),
                (49, 12),
                (49, 18),
                (49, 21),
                (49, 20),
                (49, 19),
            ],
            best: Some((49, 19)),
        },
        Case {
            name: "MoE that does not fit with every expert on the CPU: layers go",
            settings: "{}",
            bounds: moe_bounds(None),
            machine: moe(10, 0.5),
            proposals: &[
                (49, 48),
                (24, 48),
                (36, 48),
                (30, 48),
                (33, 48),
                (34, 48),
                (35, 48),
            ],
            best: Some((34, 48)),
        },
        Case {
            name: "max_trials",
            settings: r#"{"max_trials": 2}"#,
            bounds: dense_bounds(None),
            machine: dense(52),
            proposals: &[(32, 0), (48, 0)],
            best: Some((48, 0)),
        },
    ]
}
