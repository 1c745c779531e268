//! The fleet report as a terminal table.

use std::fmt::Write;

use super::{duration, FleetReport, NodeRun, PresetCell, LIMITS};

/// Groups of identical hardware, one table each, flagged groups with what disagrees.
pub fn table(report: &FleetReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} run(s) on {} node(s), {} hardware group(s), {} flagged — {}",
        report.runs.len(),
        report.groups.iter().map(|g| g.nodes.len()).sum::<usize>(),
        report.groups.len(),
        report.flagged_groups(),
        report.results.display()
    );
    for (i, group) in report.groups.iter().enumerate() {
        let _ = writeln!(
            out,
            "\ngroup {}: {} ({} node{}){}",
            i + 1,
            group.machine,
            group.nodes.len(),
            if group.nodes.len() == 1 { "" } else { "s" },
            if group.flagged() {
                "  ** FLAGGED **"
            } else {
                ""
            }
        );
        let _ = writeln!(out, "fingerprint {}", group.fingerprint);
        let runs: Vec<&NodeRun> = report
            .runs
            .iter()
            .filter(|r| r.fingerprint == group.fingerprint)
            .collect();
        out.push_str(&rows(&runs));
        for model in &group.models {
            for d in &model.disagreements {
                let _ = writeln!(out, "  ! {}: {}", model.model, d.message);
            }
        }
    }
    if !report.nodes_without_results.is_empty() {
        let _ = writeln!(
            out,
            "\nno results yet: {} (see `ozone fleet status`)",
            report.nodes_without_results.join(", ")
        );
    }
    for line in &report.unreadable {
        let _ = writeln!(out, "unreadable summary: {line}");
    }
    let _ = writeln!(out, "\nnoise: {}", report.noise_rule);
    out
}

fn rows(runs: &[&NodeRun]) -> String {
    let header = [
        "node",
        "model",
        "status",
        "max context",
        "best batch",
        "max concurrency",
        "presets ctx/batch",
        "wall",
    ]
    .map(String::from);
    let body: Vec<[String; 8]> = runs
        .iter()
        .map(|r| {
            let limits = LIMITS.map(|name| limit_text(r, name));
            [
                r.node.clone(),
                r.model.clone(),
                r.status.clone(),
                limits[0].clone(),
                limits[1].clone(),
                limits[2].clone(),
                presets_text(&r.presets),
                r.wall_ms.map(duration).unwrap_or_else(|| "—".into()),
            ]
        })
        .collect();
    let widths: Vec<usize> = (0..8)
        .map(|i| {
            std::iter::once(&header)
                .chain(&body)
                .map(|row| row[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&body) {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:w$}"))
            .collect();
        let _ = writeln!(out, "  {}", cells.join("  ").trim_end());
    }
    out
}

/// `8960 (memory)`, `64 (—)`, `—`.
pub(super) fn limit_text(run: &NodeRun, name: &str) -> String {
    let cell = run.limits.get(name);
    match cell.and_then(|c| c.value) {
        Some(v) => format!(
            "{v} ({})",
            cell.and_then(|c| c.bound_by.as_deref()).unwrap_or("—")
        ),
        None => "—".into(),
    }
}

/// `8960/64 · 8192/128 · 4096/64` (max_context · balanced · fast_response).
pub(super) fn presets_text(presets: &[PresetCell]) -> String {
    if presets.is_empty() {
        return "none stable".into();
    }
    let show = |v: Option<u64>| v.map_or("?".to_string(), |v| v.to_string());
    let cells: Vec<String> = presets
        .iter()
        .map(|p| format!("{}/{}", show(p.ctx), show(p.batch)))
        .collect();
    if presets.len() == 1 {
        format!("{} (the only stable)", cells[0])
    } else {
        cells.join(" · ")
    }
}
