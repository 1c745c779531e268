//! The configuration frontier: one row per server variant measured (KV cache types,
//! flash attention, threads) — its verified context and what bound it, its speed, TTFT
//! and peak memory at that context, what its cache costs in quality against f16, and
//! which presets chose it.

use std::fmt::Write;

use serde::{Deserialize, Serialize};

use crate::record::{Variant, VariantOutcome};
use crate::tune::presets::{within_gate, Preset, PresetName};

use super::LogEvent;

/// One measured variant, as the summary writes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrontierRow {
    #[serde(flatten)]
    pub outcome: VariantOutcome,
    /// Within the quality gate (`ozone.max_kld`): an f16 cache, or a quantized one whose
    /// measured cost is at most the gate. Only these are presets.
    pub within_gate: bool,
    /// The presets at this variant.
    pub presets: Vec<PresetName>,
}

/// Every variant's last row in the log, in the order they were measured.
pub fn outcomes_in(events: &[LogEvent]) -> Vec<VariantOutcome> {
    let mut rows: Vec<VariantOutcome> = Vec::new();
    for event in events {
        if let LogEvent::Variant { outcome } = event {
            match rows.iter_mut().find(|r| r.variant == outcome.variant) {
                Some(old) => *old = outcome.clone(),
                None => rows.push(outcome.clone()),
            }
        }
    }
    rows
}

/// The frontier's rows: each outcome with its gate and the presets that chose it.
pub fn frontier_rows<'a>(
    outcomes: &[VariantOutcome],
    presets: impl Iterator<Item = &'a Preset> + Clone,
    max_kld: f64,
) -> Vec<FrontierRow> {
    outcomes
        .iter()
        .map(|o| FrontierRow {
            outcome: o.clone(),
            within_gate: within_gate(o, max_kld),
            presets: presets
                .clone()
                .filter(|p| p.config.variant == o.variant)
                .map(|p| p.name)
                .collect(),
        })
        .collect()
}

/// `q8_0/q4_0 fa on` — a variant in few words (threads and offload where set).
pub fn variant_words(v: &Variant) -> String {
    let mut words = v.caches().to_string();
    let _ = write!(words, " fa {}", v.flash_attn.name());
    if let Some(t) = v.threads {
        let _ = write!(words, " t{t}");
    }
    if let Some(n) = v.gpu_layers {
        let _ = write!(words, " ngl {n}");
    }
    words
}

/// One line per variant as it finishes, for the console.
pub fn variant_line(o: &VariantOutcome) -> String {
    let mut line = format!("variant {}: ", variant_words(&o.variant));
    match o.max_context {
        Some(ctx) => {
            let _ = write!(line, "{ctx} tokens");
            if let Some(bound) = o.bound {
                let _ = write!(line, " (bound by {})", bound_words(bound));
            }
        }
        None => line.push_str("no stable context"),
    }
    if let Some(tps) = o.decode_tps {
        let _ = write!(line, ", {tps:.1} tok/s decode");
    }
    if let Some(q) = o.quality {
        let _ = write!(
            line,
            ", KLD {:.4} ± {:.4}, top-1 {:.0} %",
            q.kld_mean,
            q.kld_stddev,
            q.top1_agreement * 100.0
        );
    }
    let _ = write!(line, "; {} trials", o.trials);
    line
}

fn bound_words(b: ozone_sdk::BoundKind) -> &'static str {
    use ozone_sdk::BoundKind::*;
    match b {
        Memory => "memory",
        Time => "time",
        Slo => "slo",
        Instability => "instability",
        TrainedContext => "trained context",
        ServerError => "server error",
    }
}

/// The cells of the frontier table, header first.
pub fn frontier_cells(rows: &[FrontierRow]) -> Vec<Vec<String>> {
    let opt = |v: Option<f64>, digits: usize| v.map_or("—".into(), |v| format!("{v:.digits$}"));
    let mut cells = vec![[
        "variant",
        "max ctx",
        "bound by",
        "decode tok/s",
        "prefill tok/s",
        "TTFT ms",
        "peak MiB",
        "KLD (nats)",
        "top-1",
        "presets",
        "trials",
    ]
    .map(String::from)
    .to_vec()];
    for r in rows {
        let o = &r.outcome;
        let quality = match (o.quality, o.variant.is_quantized()) {
            (Some(q), _) => (
                format!("{:.4} ± {:.4}", q.kld_mean, q.kld_stddev),
                format!("{:.0} %", q.top1_agreement * 100.0),
            ),
            (None, false) => ("0 (reference)".into(), "100 %".into()),
            (None, true) => ("not measured".into(), "—".into()),
        };
        let mut presets: Vec<String> = r.presets.iter().map(|p| p.to_string()).collect();
        if !r.within_gate {
            presets = vec!["— (over the quality gate)".into()];
        }
        cells.push(vec![
            variant_words(&o.variant),
            o.max_context.map_or("none".into(), |c| c.to_string()),
            o.bound.map_or("—", bound_words).into(),
            opt(o.decode_tps, 1),
            opt(o.prefill_tps, 0),
            opt(o.ttft_ms, 0),
            o.peak_process_memory_bytes
                .map_or("—".into(), |b| format!("{}", b >> 20)),
            quality.0,
            quality.1,
            if presets.is_empty() {
                "—".into()
            } else {
                presets.join(", ")
            },
            o.trials.to_string(),
        ]);
    }
    cells
}

/// The frontier as an aligned table for the terminal (nothing for a run of one
/// variant).
pub fn frontier_table(rows: &[FrontierRow], max_kld: f64) -> String {
    if rows.len() < 2 && rows.iter().all(|r| !r.outcome.variant.is_quantized()) {
        return String::new();
    }
    format!(
        "Frontier (quality gate: KLD ≤ {max_kld} nats against f16):\n{}",
        super::text::aligned(&frontier_cells(rows))
    )
}
