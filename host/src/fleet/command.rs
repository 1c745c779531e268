//! Runs the scheduler's commands (`sbatch`, `squeue`, `scontrol`, `sinfo`), each with a
//! timeout: a hung or unreachable controller must not hang `ozone`.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::FleetError;

/// How long a query (`scontrol`, `squeue`, `sinfo`) may take.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long `sbatch` may take (it waits for the controller to accept the job).
pub const SUBMIT_TIMEOUT: Duration = Duration::from_secs(60);

/// What a finished command printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Finished {
    /// stderr, else stdout, trimmed: what to show when the command failed.
    pub fn message(&self) -> String {
        let text = if self.stderr.trim().is_empty() {
            &self.stdout
        } else {
            &self.stderr
        };
        text.trim().to_string()
    }
}

/// Runs `program args` (in `cwd` when given), killing it after `timeout`. A program
/// that is not on PATH is [`FleetError::ToolMissing`] with `hint`.
pub fn run(
    program: &str,
    args: &[&str],
    cwd: Option<&Path>,
    timeout: Duration,
    hint: &str,
) -> Result<Finished, FleetError> {
    let shown = display(program, args);
    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(dir) = cwd {
        command.current_dir(dir);
    }
    let mut child = command.spawn().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => FleetError::ToolMissing {
            tool: program.to_string(),
            hint: hint.to_string(),
        },
        _ => FleetError::Scheduler {
            command: shown.clone(),
            message: e.to_string(),
        },
    })?;
    // Both pipes are drained while waiting, so a chatty command cannot block on a full one.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut text);
            }
            String::from_utf8_lossy(&text).into_owned()
        })
    };
    let stdout = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(FleetError::ToolTimeout {
                    command: shown,
                    seconds: timeout.as_secs(),
                });
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => {
                return Err(FleetError::Scheduler {
                    command: shown,
                    message: e.to_string(),
                })
            }
        }
    };
    Ok(Finished {
        success: status.success(),
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    })
}

/// `program arg…` as a user would type it, for messages.
pub fn display(program: &str, args: &[&str]) -> String {
    std::iter::once(program)
        .chain(args.iter().copied())
        .map(|w| shlex::try_quote(w).map_or_else(|_| w.to_string(), |q| q.into_owned()))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_and_status_come_back() {
        let done = run(
            "sh",
            &["-c", "echo out; echo err >&2; exit 3"],
            None,
            QUERY_TIMEOUT,
            "",
        )
        .unwrap();
        assert!(!done.success);
        assert_eq!(done.stdout, "out\n");
        assert_eq!(done.message(), "err");
    }

    #[test]
    fn a_hung_command_is_killed_at_its_timeout() {
        let started = Instant::now();
        let err = run("sleep", &["30"], None, Duration::from_millis(300), "").unwrap_err();
        assert!(matches!(err, FleetError::ToolTimeout { .. }), "{err}");
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(err.to_string().contains("`sleep 30`"), "{err}");
    }

    #[test]
    fn a_missing_program_says_what_to_do() {
        let err = run("ozone-no-such-tool", &[], None, QUERY_TIMEOUT, "install it").unwrap_err();
        assert!(err.is_scheduler_missing());
        assert_eq!(
            err.to_string(),
            "ozone-no-such-tool not found on PATH: install it"
        );
    }
}
