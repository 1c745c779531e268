//! The self-contained HTML report: header, presets, limits, inline SVG charts and every
//! trial. No script and no external asset: it reads the same offline and printed.

use std::fmt::Write;

use crate::record::Bound;
use crate::record::{Peaks, Stats, Variant, Verdict};
use crate::tune::presets::{Preset, PresetName, Presets};

use super::charts::charts;
use super::escape::escape;
use super::{LogEvent, ReportError, RunSummary};

const MIB: f64 = 1048576.0;

/// Renders the report of a logged run (see [`RunSummary::from_events`]).
pub fn render_html(events: &[LogEvent]) -> Result<String, ReportError> {
    Ok(render_summary_html(&RunSummary::from_events(events)?))
}

/// Renders the report of a run summary.
pub fn render_summary_html(s: &RunSummary) -> String {
    let mut h = String::with_capacity(64 * 1024);
    let title = format!("Ozone report: {}", s.model.name);
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{}</title><style>{STYLE}</style></head><body>\n",
        escape(&title)
    );
    let _ = writeln!(h, "<h1>{}</h1>", escape(&title));
    header(&mut h, s);
    presets_section(&mut h, s);
    frontier_section(&mut h, s);
    limits_section(&mut h, s);
    offload_section(&mut h, s);
    concurrency_section(&mut h, s);
    h.push_str("<h2>Charts</h2>\n<div class=\"charts\">\n");
    for chart in charts(s) {
        h.push_str(&chart.render());
        h.push('\n');
    }
    h.push_str("</div>\n");
    trials_section(&mut h, s);
    let _ = write!(
        h,
        "<footer>Written by ozone {} from {} trial(s). Every figure is measured; \
         mean ± standard deviation over the successful samples.</footer>\n</body></html>\n",
        escape(&s.ozone_version),
        s.trials.len()
    );
    h
}

/// One row per variant measured: its context and bound, speed, memory, quality cost
/// against f16, and the presets that chose it.
fn frontier_section(h: &mut String, s: &RunSummary) {
    if s.frontier.is_empty() {
        return;
    }
    let _ = writeln!(
        h,
        "<h2>Frontier</h2>\n<p>Each server variant's own context search, verified. Quality: \
         mean KL divergence of the next-token distribution from the f16 cache's (teacher \
         forced on the same text), and how often both rank the same token first; the gate \
         is KLD ≤ {} nats.</p>\n<table>",
        s.config.ozone.max_kld
    );
    for (i, row) in super::frontier_cells(&s.frontier).iter().enumerate() {
        let tag = if i == 0 { "th" } else { "td" };
        h.push_str("<tr>");
        for cell in row {
            let _ = write!(h, "<{tag}>{}</{tag}>", escape(cell));
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</table>\n");
}

/// Per context measured, the offload that fits and its speed, beside llama.cpp's fit.
fn offload_section(h: &mut String, s: &RunSummary) {
    let Some(offload) = &s.offload else {
        return;
    };
    let search = &offload.search;
    let _ = writeln!(
        h,
        "<h2>GPU offload</h2>\n<p>{}: the layers that stay on the GPU searched by {} in {} \
         trial(s), verified. {}.</p>\n<table><tr><th>context</th><th>on the GPU</th>\
         <th>decode tok/s</th><th>prefill tok/s</th><th>trial</th></tr>",
        escape(&search.why),
        escape(&search.plugin),
        search.trials,
        escape(&search.fit_words())
    );
    let tps = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{v:.1}"));
    for row in &offload.contexts {
        let placement = crate::record::placement(
            ozone_sdk::Offload {
                gpu_layers: row.gpu_layers,
                cpu_moe_layers: row.cpu_moe_layers,
            },
            row.layers,
        );
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            row.ctx,
            escape(&placement),
            tps(row.decode_tps),
            tps(row.prefill_tps),
            row.trial_id
        );
    }
    if search.offload.is_none() {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>no offload fits</td><td>–</td><td>–</td><td>–</td></tr>",
            search.ctx
        );
    }
    h.push_str("</table>\n");
    if let Some(next) = &search.next_failed {
        let _ = writeln!(
            h,
            "<p>One step more on the GPU, {} (trial {}): {}</p>",
            escape(&next.offload.to_string()),
            next.trial_id,
            escape(&next.message)
        );
    }
}

fn header(h: &mut String, s: &RunSummary) {
    let hw = &s.hardware;
    let cpu = hw
        .cpu
        .model
        .as_ref()
        .map(|m| m.value.clone())
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = hw
        .cpu
        .logical_cores
        .map(|m| format!(", {} logical cores", m.value))
        .unwrap_or_default();
    let ram = hw
        .memory
        .total_bytes
        .map(|m| format!("{:.1} GiB RAM", m.value as f64 / (1024.0 * MIB)))
        .unwrap_or_else(|| "RAM unknown".into());
    let gpus = if hw.gpus.is_empty() {
        "no GPU".to_string()
    } else {
        hw.gpus
            .iter()
            .map(|g| {
                let name = g.name.as_ref().map_or("GPU", |m| m.value.as_str());
                match g.usable_total_bytes() {
                    Some(b) => format!("{name} ({:.1} GiB)", b as f64 / (1024.0 * MIB)),
                    None => name.to_string(),
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let plugins = s
        .plugins
        .iter()
        .map(|p| {
            format!(
                "{}: {}{}",
                p.role,
                p.name,
                p.version
                    .as_deref()
                    .map(|v| format!(" {v}"))
                    .unwrap_or_default()
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    let wall = s
        .timings
        .wall_ms
        .map(|ms| format!(" ({})", duration(ms)))
        .unwrap_or_default();
    let rows = [
        ("Model", format!("{} — {}", s.model.name, s.model_source)),
        (
            "Status",
            format!(
                "{}{}",
                s.status,
                s.message
                    .as_deref()
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default()
            ),
        ),
        (
            "Run",
            format!(
                "{} → {}{wall}",
                s.started_at.format("%Y-%m-%d %H:%M:%S UTC"),
                s.finished_at
                    .map(|f| f.format("%H:%M:%S").to_string())
                    .unwrap_or_else(|| "…".into())
            ),
        ),
        ("Machine", format!("{cpu}{cores}, {ram}, {gpus}")),
        ("Backend", s.backend.to_string()),
        ("Plugins", plugins),
        ("Limits", thresholds_line(s)),
    ];
    h.push_str("<table class=\"facts\">\n");
    for (k, v) in rows {
        let _ = writeln!(h, "<tr><th>{k}</th><td>{}</td></tr>", escape(&v));
    }
    h.push_str("</table>\n");
}

fn thresholds_line(s: &RunSummary) -> String {
    let t = s.config.thresholds();
    let mut line = format!(
        "VRAM ≤ {}%, RAM ≤ {}%, CPU ≤ {}%, GPU ≤ {} °C, reserves {} MiB VRAM / {} MiB RAM",
        t.max_vram_percent,
        t.max_ram_percent,
        t.max_cpu_percent,
        t.max_temperature_c,
        t.vram_reserve_mb,
        t.ram_reserve_mb
    );
    if let Some(b) = t.process_memory_budget_mb {
        let _ = write!(line, ", server memory budget {b} MiB");
    }
    if let Some(b) = t.gpu_memory_budget_mb {
        let _ = write!(line, ", server GPU memory budget {b} MiB");
    }
    line
}

fn presets_section(h: &mut String, s: &RunSummary) {
    h.push_str("<h2>Presets</h2>\n");
    match &s.presets {
        Presets::NoStableConfiguration => {
            h.push_str(
                "<p class=\"warn\">No configuration was stable: no preset to recommend.</p>\n",
            );
            return;
        }
        Presets::OnlyOne { .. } => h.push_str(
            "<p class=\"warn\">Only one configuration was stable: it serves as max_context, \
             balanced and fast_response alike.</p>\n",
        ),
        Presets::Three { .. } => {}
    }
    h.push_str(
        "<table><tr><th>preset</th><th>ctx</th><th>batch / ubatch</th><th>kv</th>\
         <th>decode tok/s</th><th>TTFT ms</th><th>prefill tok/s</th><th>score</th>\
         <th>evidence</th><th>note</th></tr>\n",
    );
    for p in s.presets.list().into_iter().chain(&s.serving) {
        preset_row(h, s, p);
    }
    h.push_str("</table>\n");
}

fn preset_row(h: &mut String, s: &RunSummary, p: &Preset) {
    let name = if s.presets.only_one() && p.name != PresetName::Serving {
        "the only stable configuration".to_string()
    } else {
        p.name.to_string()
    };
    let ctx = match p.config.concurrency {
        1 => p.ctx.to_string(),
        n => format!("{} × {n} slots", p.ctx),
    };
    let score = p.score.map_or_else(
        || "– (the concurrency search's answer)".to_string(),
        |sc| {
            format!(
                "{:.3} (T {:.2}, L {:.2}, C {:.2})",
                sc.total, sc.throughput, sc.ttft, sc.context
            )
        },
    );
    let _ = writeln!(
        h,
        "<tr><td>{}</td><td>{}</td><td>{} / {}</td><td>{}</td><td>{}</td><td>{}</td>\
         <td>{}</td><td>{}</td>\
         <td>trial {}, {}/{} ok ({:.0} %), CV {}</td><td>{}</td></tr>",
        escape(&name),
        escape(&ctx),
        p.config.batch,
        p.config.ubatch,
        cache_types(&p.config.variant),
        stats(Some(&p.decode_tps), 1),
        stats(Some(&p.ttft_ms), 0),
        stats(p.prefill_tps.as_ref(), 0),
        escape(&score),
        p.evidence.trial_id,
        p.evidence.successful,
        p.evidence.samples,
        p.evidence.success_rate * 100.0,
        p.evidence
            .cv
            .map(|c| format!("{:.1} %", c * 100.0))
            .unwrap_or_else(|| "–".into()),
        escape(p.note.as_deref().unwrap_or(""))
    );
}

fn limits_section(h: &mut String, s: &RunSummary) {
    let show = |v: Option<u32>| v.map_or("not found".to_string(), |v| v.to_string());
    let fit = s
        .fit_baseline
        .as_ref()
        .map(|f| {
            format!(
                "<tr><th>llama.cpp's own fit</th><td colspan=\"2\">{}</td></tr>",
                escape(&f.versus(s.limits.max_context))
            )
        })
        .unwrap_or_default();
    let bound = |b: &Option<Bound>| {
        b.as_ref()
            .map(|b| escape(&super::describe(b)))
            .unwrap_or_else(|| "–".into())
    };
    let b = &s.limits.bounds;
    let _ = writeln!(
        h,
        "<h2>Limits found</h2>\n<table class=\"facts\"><tr><th></th><th>value</th>\
         <th>bound by</th></tr><tr><th>largest stable context</th><td>{}</td><td>{}</td></tr>\
         {fit}<tr><th>best batch</th><td>{}</td><td>{}</td></tr><tr><th>most concurrent \
         streams</th><td>{}</td><td>{}</td></tr></table>",
        show(s.limits.max_context),
        bound(&b.max_context),
        show(s.limits.best_batch),
        bound(&b.best_batch),
        show(s.limits.max_concurrency),
        bound(&b.max_concurrency),
    );
    if let Some(note) = time_bound_note(s) {
        let _ = writeln!(h, "<p class=\"warn\">{}</p>", escape(&note));
    }
    let _ = writeln!(
        h,
        "<table class=\"facts\"><tr><th>trials</th><td>{}</td></tr></table>",
        escape(
            &s.timings
                .phases
                .iter()
                .map(|p| format!(
                    "{:?}: {} ({} stable, {})",
                    p.phase,
                    p.trials,
                    p.stable,
                    duration(p.total_ms)
                ))
                .collect::<Vec<_>>()
                .join("; ")
        )
    );
}

/// The objective, how the server ran the levels, and every level's figures.
fn concurrency_section(h: &mut String, s: &RunSummary) {
    let c = &s.concurrency;
    if c.levels.is_empty() {
        return;
    }
    h.push_str("<h2>Concurrency</h2>\n");
    let objective = if c.slo.is_empty() {
        "none: a level passes when its trial is stable".to_string()
    } else {
        c.slo.clone()
    };
    let _ = writeln!(
        h,
        "<table class=\"facts\"><tr><th>objective</th><td>{}</td></tr>\
         <tr><th>server</th><td>{}</td></tr></table>",
        escape(&objective),
        escape(c.server.as_deref().unwrap_or(""))
    );
    h.push_str(
        "<table><tr><th>streams</th><th>trial</th><th>verdict</th><th>objective</th>\
         <th>TTFT p50 / p95 / p99 ms</th><th>TPOT p50 / p95 ms</th><th>e2e p95 ms</th>\
         <th>per stream tok/s (mean, slowest)</th><th>all streams tok/s</th>\
         <th>requests ok</th></tr>\n",
    );
    let ms = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{v:.0}"));
    let ms1 = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{v:.1}"));
    for l in &c.levels {
        let f = &l.figures;
        let judged = match &f.slo {
            None if l.passed => "passed".to_string(),
            None => "–".to_string(),
            Some(v) if v.met => "met".to_string(),
            Some(v) => format!(
                "missed: {}",
                v.missed
                    .iter()
                    .map(|m| format!(
                        "{} {} (bound {})",
                        m.metric,
                        m.measured
                            .map_or("not measured".to_string(), |x| format!("{x:.1}")),
                        m.bound
                    ))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        let trial = s.trials.iter().find(|t| t.id == l.trial_id);
        let ok = trial.map_or(0, |t| t.samples.iter().filter(|x| x.ok).count());
        let all = trial.map_or(0, |t| t.samples.len());
        let streams = f.stream_decode_tps.as_ref();
        let _ = writeln!(
            h,
            "<tr class=\"{}\"><td>{}</td><td>{}</td><td>{:?}</td><td>{}</td><td>{} / {} / {}</td>\
             <td>{} / {}</td><td>{}</td><td>{}, {}</td><td>{}</td><td>{ok}/{all}</td></tr>",
            if l.passed { "stable" } else { "failed" },
            l.streams,
            l.trial_id,
            l.verdict,
            escape(&judged),
            ms(f.latency.ttft_p50_ms),
            ms(f.latency.ttft_p95_ms),
            ms(f.latency.ttft_p99_ms),
            ms1(f.latency.tpot_p50_ms),
            ms1(f.latency.tpot_p95_ms),
            ms(f.latency.e2e_p95_ms),
            ms1(streams.map(|x| x.mean)),
            ms1(streams.map(|x| x.min)),
            ms1(f.aggregate_decode_tps),
        );
    }
    h.push_str("</table>\n");
}

fn trials_section(h: &mut String, s: &RunSummary) {
    h.push_str(
        "<h2>Trials</h2>\n<p>A <b>screen</b> is one request that fills the context: does it \
         load and fit, at what peak. A <b>verify</b> trial is the full statistical trial; every \
         published limit is a stable verification.</p>\n<table><tr><th>#</th><th>phase</th>\
         <th>stage</th><th>configuration</th><th>verdict</th><th>decode tok/s</th><th>TTFT ms</th>\
         <th>prefill tok/s</th><th>samples ok</th><th>peak memory</th><th>time</th>\
         <th>why</th></tr>\n",
    );
    for t in &s.trials {
        let ok = t.samples.iter().filter(|x| x.ok).count();
        // The verdict's reason, but for a failure (its message says it) and a screen
        // served whole (nothing to say).
        let reason = t.reason.as_ref().filter(|r| {
            !matches!(
                r,
                crate::record::Reason::Failure | crate::record::Reason::Served { of: 1 }
            )
        });
        let failure = [
            t.failure.as_ref().map(|f| f.message.clone()),
            reason.map(super::reason_words),
            t.stopped_early.clone(),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join("; ");
        let _ = writeln!(
            h,
            "<tr class=\"{}\"><td>{}</td><td>{:?}</td><td>{}</td><td>{}</td><td>{:?}</td>\
             <td>{}</td><td>{}</td><td>{}</td><td>{}/{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            verdict_class(t.verdict),
            t.id,
            t.phase,
            t.stage,
            escape(&t.config.to_string()),
            t.verdict,
            stats(t.decode_tps.as_ref(), 1),
            stats(t.ttft_ms.as_ref(), 0),
            stats(t.prefill_tps.as_ref(), 0),
            ok,
            t.samples.len(),
            escape(&peaks_text(&t.peaks)),
            duration(t.duration_ms),
            escape(&failure)
        );
    }
    h.push_str("</table>\n");
    if let Some(p) = &s.in_progress {
        let ok = p.samples.iter().filter(|x| x.ok).count();
        let _ = writeln!(
            h,
            "<p class=\"warn\">In progress: trial {} ({}) {} — {} sample(s) so far, {} ok{}</p>",
            p.trial_id,
            p.stage,
            escape(&p.config.to_string()),
            p.samples.len(),
            ok,
            p.samples
                .iter()
                .filter_map(|x| x.error.as_deref())
                .map(|e| format!("; {}", escape(e)))
                .collect::<String>()
        );
    }
}

/// On a CPU-only run whose context is bound by time, the plain reason (the console says
/// the same).
pub fn time_bound_note(s: &RunSummary) -> Option<String> {
    let Some(Bound::Time { at, timeout_s, .. }) = &s.limits.bounds.max_context else {
        return None;
    };
    let cpu_only = s.hardware.gpus.is_empty();
    let timeout = timeout_s
        .map(|t| format!(" within the {t:.0} s request timeout"))
        .unwrap_or_default();
    Some(if cpu_only {
        format!(
            "Time bound the context, not memory: this CPU-only machine cannot fill a \
             {at}-token context{timeout}. A GPU, or longer timeouts \
             (testing.adaptive_timeouts), would let a larger context run."
        )
    } else {
        format!(
            "Time bound the context, not memory: a {at}-token context could not be filled{timeout}."
        )
    })
}

fn verdict_class(v: Verdict) -> &'static str {
    match v {
        Verdict::Stable => "stable",
        Verdict::Unstable => "unstable",
        Verdict::Failed => "failed",
    }
}

fn stats(s: Option<&Stats>, decimals: usize) -> String {
    match s {
        Some(s) => format!(
            "{} (p50 {:.d$}, p95 {:.d$})",
            s.mean_pm(decimals),
            s.p50,
            s.p95,
            d = decimals
        ),
        None => "–".into(),
    }
}

fn peaks_text(p: &Peaks) -> String {
    let mut parts = Vec::new();
    if let Some(b) = p.process_rss_bytes {
        parts.push(format!("server {:.0} MiB", b as f64 / MIB));
    }
    if let Some(b) = p.server_gpu_mem_bytes {
        parts.push(format!("server GPU {:.0} MiB", b as f64 / MIB));
    }
    if let Some(b) = p.gpu_mem_used_bytes {
        parts.push(format!("GPU {:.0} MiB", b as f64 / MIB));
    }
    if let Some(b) = p.ram_used_bytes {
        parts.push(format!("RAM {:.0} MiB", b as f64 / MIB));
    }
    if parts.is_empty() {
        "–".into()
    } else {
        parts.join(", ")
    }
}

fn duration(ms: u64) -> String {
    let s = ms / 1000;
    if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{:.1}s", ms as f64 / 1000.0)
    }
}

/// The stylesheet of Ozone's HTML pages (also the fleet report's).
pub const STYLE: &str =
    "body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1400px;\
padding:0 1em;color:#222}h1{font-size:1.5em}h2{margin-top:1.6em;border-bottom:1px solid #ddd}\
table{border-collapse:collapse;margin:.5em 0}th,td{border:1px solid #ddd;padding:3px 7px;\
text-align:left;vertical-align:top}th{background:#f5f5f5}table.facts th{width:13em}\
tr.failed td:nth-child(5){color:#d62828;font-weight:600}tr.unstable td:nth-child(5){color:#b07800}\
tr.stable td:nth-child(5){color:#2a9d3f}.warn{background:#fff4d6;border:1px solid #e0b400;\
padding:.5em}.charts{display:flex;flex-wrap:wrap;gap:12px}svg.chart{background:#fff;\
border:1px solid #ddd;max-width:100%;height:auto}svg .title{font-weight:600;font-size:14px}\
svg .tick,svg .legend{font-size:11px;fill:#444}svg .axis{font-size:12px;fill:#222}\
svg .limit-label{font-size:11px;fill:#d62828}footer{margin-top:2em;color:#666;font-size:12px}";

/// `f16`, or `q8_0/q4_0` when K and V differ.
fn cache_types(v: &Variant) -> String {
    if v.cache_type_k == v.cache_type_v {
        v.cache_type_k.to_string()
    } else {
        format!("{}/{}", v.cache_type_k, v.cache_type_v)
    }
}
