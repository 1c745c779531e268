//! The fleet report as one self-contained HTML page (no script, no external asset), in
//! the style of a run's report and with its escaping and SVG charts.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::text::{limit_text, presets_text};
use super::{duration, FleetReport, NodeRun};
use crate::report::{escape, Chart, Mark, Point, Series, STYLE};

/// Renders `report`.
pub fn render_html(report: &FleetReport) -> String {
    let mut h = String::with_capacity(32 * 1024);
    let title = format!("Ozone fleet report: {}", report.results.display());
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{}</title><style>{STYLE}{EXTRA_STYLE}</style></head><body>\n",
        escape(&title)
    );
    let _ = writeln!(h, "<h1>{}</h1>", escape(&title));
    let _ = writeln!(
        h,
        "<p>{} run(s) on {} node(s) in {} hardware group(s); {} group(s) flagged. \
         Nodes are grouped by hardware fingerprint (CPU model, cores, RAM and GPUs); \
         within a group, {}.</p>",
        report.runs.len(),
        report.groups.iter().map(|g| g.nodes.len()).sum::<usize>(),
        report.groups.len(),
        report.flagged_groups(),
        escape(&report.noise_rule)
    );

    for (i, group) in report.groups.iter().enumerate() {
        let class = if group.flagged() {
            " class=\"flagged\""
        } else {
            ""
        };
        let _ = writeln!(
            h,
            "<section{class}><h2>Group {}: {} — {} node(s){}</h2>\n<p class=\"fp\">fingerprint <code>{}</code></p>",
            i + 1,
            escape(&group.machine),
            group.nodes.len(),
            if group.flagged() { " — flagged" } else { "" },
            escape(&group.fingerprint)
        );
        let messages: Vec<String> = group
            .models
            .iter()
            .flat_map(|m| {
                m.disagreements
                    .iter()
                    .map(move |d| format!("{}: {}", m.model, d.message))
            })
            .collect();
        if !messages.is_empty() {
            h.push_str("<div class=\"warn\"><b>Disagreement beyond noise</b> (a broken node or a different driver?)<ul>");
            for m in &messages {
                let _ = write!(h, "<li>{}</li>", escape(m));
            }
            h.push_str("</ul></div>\n");
        }
        let runs: Vec<&NodeRun> = report
            .runs
            .iter()
            .filter(|r| r.fingerprint == group.fingerprint)
            .collect();
        runs_table(&mut h, &runs);
        h.push_str("</section>\n");
    }

    let charts = charts(report);
    if !charts.is_empty() {
        h.push_str("<h2>Largest stable context by node</h2>\n<div class=\"charts\">\n");
        for chart in charts {
            h.push_str(&chart.render());
            h.push('\n');
        }
        h.push_str("</div>\n");
    }
    if !report.nodes_without_results.is_empty() {
        let _ = writeln!(
            h,
            "<p class=\"warn\">No results yet from: {} (see <code>ozone fleet status</code>).</p>",
            escape(&report.nodes_without_results.join(", "))
        );
    }
    for line in &report.unreadable {
        let _ = writeln!(
            h,
            "<p class=\"warn\">Unreadable summary: {}</p>",
            escape(line)
        );
    }
    let _ = write!(
        h,
        "<footer>Written by ozone {} on {} from the summaries under {}.</footer>\n</body></html>\n",
        escape(env!("CARGO_PKG_VERSION")),
        report.generated_at.format("%Y-%m-%d %H:%M UTC"),
        escape(&report.results.display().to_string())
    );
    h
}

fn runs_table(h: &mut String, runs: &[&NodeRun]) {
    h.push_str(
        "<table><tr><th>node</th><th>model</th><th>status</th><th>max context (bound by)</th>\
         <th>best batch (bound by)</th><th>max concurrency (bound by)</th>\
         <th>presets ctx/batch</th><th>wall time</th><th>ozone</th></tr>\n",
    );
    for r in runs {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td title=\"{}\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&r.node),
            escape(r.model_digest.as_deref().unwrap_or("")),
            escape(&r.model),
            escape(&r.status),
            escape(&limit_text(r, "max_context")),
            escape(&limit_text(r, "best_batch")),
            escape(&limit_text(r, "max_concurrency")),
            escape(&presets_text(&r.presets)),
            r.wall_ms.map(duration).unwrap_or_else(|| "—".into()),
            escape(&r.ozone_version)
        );
    }
    h.push_str("</table>\n");
}

/// One chart per model: each node's largest stable context, in table order; a node of a
/// flagged group is drawn as unstable, a node with nothing stable as failed.
fn charts(report: &FleetReport) -> Vec<Chart> {
    let flagged: Vec<(&str, &str)> = report
        .groups
        .iter()
        .flat_map(|g| {
            g.models
                .iter()
                .filter(|m| !m.disagreements.is_empty())
                .flat_map(|m| m.nodes.iter().map(|n| (g.fingerprint.as_str(), n.as_str())))
        })
        .collect();
    let mut by_model: BTreeMap<&str, Vec<&NodeRun>> = BTreeMap::new();
    for run in &report.runs {
        by_model.entry(&run.model).or_default().push(run);
    }
    by_model
        .into_iter()
        .map(|(model, runs)| Chart {
            title: format!("{model}: largest stable context per node (diamond: flagged group)"),
            x_label: "node (in table order)".into(),
            y_label: "context (tokens)".into(),
            log2_x: false,
            series: vec![Series {
                name: model.to_string(),
                color: "#444",
                connect: false,
                points: runs
                    .iter()
                    .enumerate()
                    .map(|(i, r)| {
                        let ctx = r.limit("max_context");
                        let mark = if ctx.is_none() {
                            Mark::Failed
                        } else if flagged.contains(&(r.fingerprint.as_str(), r.node.as_str())) {
                            Mark::Unstable
                        } else {
                            Mark::Stable
                        };
                        Point {
                            x: (i + 1) as f64,
                            y: ctx.map(|c| c as f64),
                            err: None,
                            mark,
                            label: format!(
                                "{}: {}",
                                r.node,
                                ctx.map_or("nothing stable".into(), |c| format!("ctx {c}"))
                            ),
                        }
                    })
                    .collect(),
            }],
            limits: Vec::new(),
            stable_means: "stable",
        })
        .collect()
}

const EXTRA_STYLE: &str = "section.flagged{border-left:4px solid #d62828;padding-left:.8em}\
p.fp{color:#666;font-size:12px;margin:.2em 0}";
