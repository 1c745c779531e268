//! Plain-text renderings for the terminal: the presets table and the files written.

use std::fmt::Write;

use crate::tune::presets::{PresetName, Presets};

use super::{OutputPaths, RunSummary};

/// The presets as an aligned table (or the one line saying why there is no table).
pub fn presets_table(s: &RunSummary) -> String {
    let mut out = String::new();
    match &s.presets {
        Presets::NoStableConfiguration => {
            out.push_str("No configuration was stable: no preset to recommend.\n");
            return out;
        }
        Presets::OnlyOne { .. } => out.push_str(
            "Only one configuration was stable; it serves as max_context, balanced and \
             fast_response alike.\n",
        ),
        Presets::Three { .. } => {}
    }
    // A run over several variants says which each preset uses.
    let variants = !s.frontier.is_empty();
    let mut rows = vec![vec![
        "preset".to_string(),
        "ctx".into(),
        "batch".into(),
        "decode tok/s".into(),
        "TTFT p50 ms".into(),
        "samples ok".into(),
        "trial".into(),
    ]];
    if variants {
        rows[0].push("variant".into());
    }
    for p in s.presets.list().into_iter().chain(&s.serving) {
        rows.push(vec![
            if s.presets.only_one() && p.name != PresetName::Serving {
                "only stable".to_string()
            } else {
                p.name.to_string()
            },
            match p.config.concurrency {
                1 => p.ctx.to_string(),
                n => format!("{} x{n}", p.ctx),
            },
            p.config.batch.to_string(),
            p.decode_tps.mean_pm(1),
            format!("{:.0}", p.ttft_ms.p50),
            format!("{}/{}", p.evidence.successful, p.evidence.samples),
            p.evidence.trial_id.to_string(),
        ]);
        if variants {
            if let Some(row) = rows.last_mut() {
                row.push(super::variant_words(&p.config.variant));
            }
        }
    }
    out.push_str(&aligned(&rows));
    for p in s.presets.list().into_iter().chain(&s.serving) {
        if let Some(note) = &p.note {
            if !s.presets.only_one() || p.name == PresetName::Serving {
                let _ = writeln!(out, "note ({}): {note}", p.name);
            }
        }
    }
    out
}

/// Rows of cells as columns two spaces apart, each as wide as its widest cell.
pub(super) fn aligned(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:w$}"))
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    out
}

impl OutputPaths {
    /// (what, where) for every file written, in a stable order.
    pub fn list(&self) -> Vec<(&'static str, &std::path::Path)> {
        let mut files = vec![
            ("report", self.html.as_path()),
            ("summary", self.summary.as_path()),
            ("environment", self.env.as_path()),
        ];
        if let Some(p) = &self.defaults {
            files.push(("defaults", p));
        }
        if let Some(p) = &self.modelfile {
            files.push(("Ollama Modelfile", p));
        }
        if let Some(p) = &self.llama_server_script {
            files.push(("llama-server command", p));
        }
        files
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;
    use crate::report::tests::run_started;
    use crate::report::RunStatus;

    #[test]
    fn table_lists_each_preset_with_its_evidence() {
        let started = run_started();
        let s = RunSummary::new(
            &started,
            fixtures::trials(),
            RunStatus::Completed,
            None,
            crate::fixtures::limits(),
            None,
        );
        let table = presets_table(&s);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 6, "{table}");
        assert!(lines[0].starts_with("preset"));
        let max: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(max[..3], ["max_context", "20480", "256"]);
        assert!(lines[3].starts_with("fast_response  4096"));
        assert_eq!(max[max.len() - 2..], ["5/5", "8"], "{}", lines[1]);
        let serving: Vec<&str> = lines[4].split_whitespace().collect();
        assert_eq!(
            serving[..4],
            ["serving", "20480", "x2", "256"],
            "{}",
            lines[4]
        );
        assert!(
            lines[5].starts_with("note (serving): 2 streams"),
            "{}",
            lines[5]
        );
    }
}
