//! `ozone report LOG.jsonl [-o FILE]`: re-renders the HTML report from a trial log.

use std::path::{Path, PathBuf};

use super::{CliError, Exit, ResultExt};
use crate::report;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Trial log written by `ozone tune` (`<output dir>/logs/<model>_<ts>.jsonl`).
    #[arg(value_name = "LOG.jsonl")]
    pub log: PathBuf,
    /// Where to write the HTML. Default: `<output dir>/report/<log name>.html` for a log
    /// in a `logs/` folder, else beside the log.
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
    let html = report::render_html(&contents.events)
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.log.display()))
        .exit(Exit::BadInput)?;
    let out = args.output.unwrap_or_else(|| default_output(&args.log));
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))
            .exit(Exit::Internal)?;
    }
    std::fs::write(&out, html)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", out.display()))
        .exit(Exit::Internal)?;
    println!("{}", out.display());
    Ok(())
}

/// `<dir>/logs/x.jsonl` → `<dir>/report/x.html`; any other log → `x.html` beside it.
fn default_output(log: &Path) -> PathBuf {
    let stem = log
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "report".into());
    let file = format!("{stem}.html");
    let parent = log.parent().unwrap_or(Path::new(""));
    if parent.file_name().is_some_and(|n| n == "logs") {
        parent
            .parent()
            .unwrap_or(Path::new(""))
            .join("report")
            .join(file)
    } else {
        parent.join(file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_output_goes_to_the_report_folder() {
        assert_eq!(
            default_output(Path::new("ozone_results/logs/m_20261126_130005.jsonl")),
            PathBuf::from("ozone_results/report/m_20261126_130005.html")
        );
        assert_eq!(
            default_output(Path::new("/tmp/run.jsonl")),
            PathBuf::from("/tmp/run.html")
        );
        assert_eq!(
            default_output(Path::new("run.jsonl")),
            PathBuf::from("run.html")
        );
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
