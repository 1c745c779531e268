//! `ozone report LOG.jsonl [-o FILE]`: writes every output file of a run again from its
//! trial log alone — summary, environment, HTML report, and for a run that measured to
//! the end its defaults and deploy files — or, with `-o`, only the HTML report there.

use std::path::{Path, PathBuf};

use super::{CliError, Exit, ResultExt};
use crate::report::{self, LogEvent, RunSummary};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Trial log written by `ozone tune` (`<output dir>/logs/<model>_<ts>.jsonl`).
    #[arg(value_name = "LOG.jsonl")]
    pub log: PathBuf,
    /// Write only the HTML report, to FILE. Default: every output file, into the output
    /// directory holding the log (`<dir>` of `<dir>/logs/x.jsonl`, else the log's folder).
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

pub fn run(args: Args) -> Result<(), CliError> {
    let contents = report::read_log_detailed(&args.log).exit(Exit::BadInput)?;
    if let Some(tail) = &contents.torn_tail {
        tracing::warn!(
            "{}: the last line is incomplete ({} bytes, the run was cut off mid-write); skipped",
            args.log.display(),
            tail.len()
        );
    }
    let events = &contents.events;
    let summary = RunSummary::from_events(events)
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.log.display()))
        .exit(Exit::BadInput)?;
    if let Some(out) = args.output {
        report::write_file(&out, &report::render_summary_html(&summary), 0o644)
            .exit(Exit::Internal)?;
        println!("{}", out.display());
        return Ok(());
    }
    let Some(started) = events.iter().find_map(|e| match e {
        LogEvent::RunStarted(s) => Some(s),
        _ => None,
    }) else {
        unreachable!("a summary was built, so the log has its start line");
    };
    // Limits in the last `run_finished`: the measurement got to its end (the outputs may
    // have failed, which is why the files are asked for again).
    let measured = events
        .iter()
        .rev()
        .find_map(|e| match e {
            LogEvent::RunFinished(f) => Some(f.limits.is_some()),
            _ => None,
        })
        .unwrap_or(false);
    let binary = report::server_binary_in(started, events);
    let files = report::write_run_outputs(
        &output_dir(&args.log),
        &args.log,
        started,
        binary.as_deref(),
        &summary,
        measured,
    )
    .exit(Exit::Internal)?;
    for note in &files.notes {
        eprintln!("note: {note}");
    }
    if !measured {
        eprintln!(
            "note: the run did not measure to its end: no defaults or deploy files (`ozone \
             tune --resume {}` finishes it)",
            args.log.display()
        );
    }
    for (_, path) in files.list() {
        println!("{}", path.display());
    }
    Ok(())
}

/// `<dir>/logs/x.jsonl` → `<dir>`; any other log → its own folder.
fn output_dir(log: &Path) -> PathBuf {
    let parent = log.parent().unwrap_or(Path::new(""));
    let dir = if parent.file_name().is_some_and(|n| n == "logs") {
        parent.parent().unwrap_or(Path::new(""))
    } else {
        parent
    };
    if dir.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        dir.to_path_buf()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_go_to_the_output_dir_holding_the_log() {
        assert_eq!(
            output_dir(Path::new("ozone_results/logs/m_20261126_130005.jsonl")),
            PathBuf::from("ozone_results")
        );
        assert_eq!(
            output_dir(Path::new("/tmp/run.jsonl")),
            PathBuf::from("/tmp")
        );
        assert_eq!(output_dir(Path::new("run.jsonl")), PathBuf::from("."));
    }

    #[test]
    fn renders_a_logged_run_and_rejects_a_non_log() {
        use crate::fixtures;
        use crate::report::tests::run_started;
        use crate::report::{LogEvent, RunLog};
        let dir = tempfile::tempdir().unwrap();
        let log_path = dir.path().join("logs").join("run.jsonl");
        let mut log = RunLog::create_at(&log_path).unwrap();
        log.append(&LogEvent::RunStarted(Box::new(run_started())))
            .unwrap();
        for t in fixtures::trials() {
            log.append(&LogEvent::Trial(Box::new(t))).unwrap();
        }
        drop(log);
        run(Args {
            log: log_path.clone(),
            output: None,
        })
        .unwrap();
        let html = std::fs::read_to_string(dir.path().join("report/run.html")).unwrap();
        assert_eq!(html.matches("<svg").count(), 6);
        assert!(html.contains("unfinished"));

        let other = dir.path().join("notes.jsonl");
        std::fs::write(&other, "{\"hello\": 1}\n").unwrap();
        let err = run(Args {
            log: other,
            output: Some(dir.path().join("x.html")),
        })
        .unwrap_err();
        assert_eq!(err.exit, Exit::BadInput);
        assert!(
            err.error.to_string().contains("notes.jsonl:1"),
            "{}",
            err.error
        );
    }
}
