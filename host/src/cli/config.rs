//! `ozone config show [--config FILE] [--json]`: the effective configuration and where
//! each value came from.

use std::path::PathBuf;

use serde::Serialize;

use super::{CliError, Exit, ResultExt};
use crate::config::{self, ConfigEntry, LoadedConfig, Usage};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Print the effective configuration and where each value came from.
    Show(ShowArgs),
}

#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    /// Config file (default: ./ozone.yaml, else <user config dir>/ozone/ozone.yaml).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

pub fn run(command: Command) -> Result<(), CliError> {
    match command {
        Command::Show(args) => show(args),
    }
}

#[derive(Serialize)]
struct ShowJson<'a> {
    source: Option<&'a PathBuf>,
    searched: Vec<PathBuf>,
    warnings: &'a [String],
    entries: Vec<ConfigEntry>,
}

fn show(args: ShowArgs) -> Result<(), CliError> {
    let loaded = config::load(args.config.as_deref()).exit(Exit::BadInput)?;
    for warning in &loaded.warnings {
        tracing::warn!("{warning}");
    }
    let searched = if args.config.is_some() {
        Vec::new()
    } else {
        config::search_paths()
    };
    if args.json {
        let out = ShowJson {
            source: loaded.source.as_ref(),
            searched,
            warnings: &loaded.warnings,
            entries: loaded.entries(),
        };
        let text = serde_json::to_string_pretty(&out).map_err(anyhow::Error::from)?;
        println!("{text}");
    } else {
        print!("{}", table(&loaded, &searched));
    }
    Ok(())
}

fn table(loaded: &LoadedConfig, searched: &[PathBuf]) -> String {
    let mut out = String::new();
    match &loaded.source {
        Some(path) => out.push_str(&format!("config file: {}\n\n", path.display())),
        None => {
            let places: Vec<String> = searched.iter().map(|p| p.display().to_string()).collect();
            out.push_str(&format!(
                "config file: none found (looked for {}); built-in defaults\n\n",
                places.join(", ")
            ));
        }
    }
    let rows: Vec<[String; 4]> = loaded
        .entries()
        .into_iter()
        .map(|e| {
            let value = match &e.value {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let note = match e.usage {
                Usage::Used => String::new(),
                Usage::NotUsed => "not used (original layout, accepted as is)".into(),
                Usage::Informational(why) => format!("shown only: {why}"),
            };
            [e.path, value, e.provenance.to_string(), note]
        })
        .collect();
    let headers = ["KEY", "VALUE", "FROM", "NOTE"];
    let width = |i: usize| {
        rows.iter()
            .map(|r| r[i].chars().count())
            .chain([headers[i].len()])
            .max()
            .unwrap_or(0)
    };
    let (w0, w1, w2) = (width(0), width(1).min(48), width(2));
    let line = |cells: [&str; 4]| {
        format!(
            "{:w0$}  {:w1$}  {:w2$}  {}",
            cells[0], cells[1], cells[2], cells[3]
        )
        .trim_end()
        .to_string()
            + "\n"
    };
    out.push_str(&line(headers));
    for r in &rows {
        out.push_str(&line([&r[0], &r[1], &r[2], &r[3]]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_shows_value_provenance_and_usage() {
        let text = "ozone:\n  n_predict: 32\nobjectives:\n  ttft_priority: 0.4\n";
        let mut loaded = config::parse(text, std::path::Path::new("my.yaml")).unwrap();
        loaded
            .set_override("ozone.min_context", 1024, "--min-context")
            .unwrap();
        let out = table(&loaded, &[]);
        assert!(out.starts_with("config file: my.yaml\n"));
        let row = |key: &str| {
            out.lines()
                .find(|l| l.starts_with(&format!("{key} ")))
                .unwrap_or_else(|| panic!("no row {key} in\n{out}"))
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert_eq!(row("ozone.n_predict"), "ozone.n_predict 32 my.yaml");
        assert_eq!(
            row("ozone.min_context"),
            "ozone.min_context 1024 flag --min-context"
        );
        assert_eq!(row("ozone.fill_ratio"), "ozone.fill_ratio 0.9 default");
        assert!(
            row("objectives.ttft_priority").ends_with("not used (original layout, accepted as is)")
        );
    }
}
