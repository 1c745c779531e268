//! What Slurm says about a job's array tasks: `scontrol -o show job J`, one record a line.
//!
//! There is no `sacct` without slurmdbd, so finished tasks are read from slurmctld
//! itself, which keeps them for `MinJobAge` seconds (300 by default).

use crate::fleet::command::{self, QUERY_TIMEOUT};
use crate::fleet::FleetError;

/// One array task as Slurm sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlurmTask {
    pub task: u32,
    /// `PENDING`, `RUNNING`, `COMPLETED`, `FAILED`, `CANCELLED`, `TIMEOUT`, …
    pub state: String,
    /// Why it waits or ended (`Resources`, `NonZeroExitCode`, `None`, …).
    pub reason: String,
    /// `ExitCode=status:signal`.
    pub exit: Option<(i32, i32)>,
    pub node: Option<String>,
}

/// How a task's Slurm state reads for a person.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Waiting,
    Running,
    Completed,
    Ended,
}

impl SlurmTask {
    pub fn stage(&self) -> Stage {
        match self.state.as_str() {
            "PENDING" | "REQUEUED" | "REQUEUE_HOLD" | "REQUEUE_FED" | "CONFIGURING"
            | "RESV_DEL_HOLD" => Stage::Waiting,
            "RUNNING" | "COMPLETING" | "SUSPENDED" | "STOPPED" | "SIGNALING" | "STAGE_OUT"
            | "RESIZING" => Stage::Running,
            "COMPLETED" => Stage::Completed,
            _ => Stage::Ended,
        }
    }

    /// `FAILED (NonZeroExitCode), exit 2` and the like.
    pub fn describe(&self) -> String {
        let mut text = self.state.clone();
        if !self.reason.is_empty() && self.reason != "None" {
            text.push_str(&format!(" ({})", self.reason));
        }
        match self.exit {
            Some((0, 0)) | None => {}
            Some((status, 0)) => text.push_str(&format!(", exit {status}")),
            Some((_, signal)) => text.push_str(&format!(", signal {signal}")),
        }
        text
    }
}

/// The tasks of array job `job`; `None` when slurmctld no longer knows it.
pub fn query(job: &str) -> Result<Option<Vec<SlurmTask>>, FleetError> {
    let args = ["-o", "show", "job", job];
    let done = command::run(
        "scontrol",
        &args,
        None,
        QUERY_TIMEOUT,
        "`ozone fleet status` reads job states with Slurm's scontrol",
    )?;
    if done.success {
        return Ok(Some(parse(&done.stdout)));
    }
    let message = done.message();
    if message.contains("Invalid job id") {
        Ok(None)
    } else {
        Err(FleetError::Scheduler {
            command: command::display("scontrol", &args),
            message,
        })
    }
}

/// Parses `scontrol -o show job` output. A pending remainder of an array
/// (`ArrayTaskId=2-5`, `1,3-4%2`) is expanded to one entry per task.
pub fn parse(text: &str) -> Vec<SlurmTask> {
    let mut tasks = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        // Values of the fields read here hold no spaces; later fields (Command=,
        // WorkDir=) may, so each key's first occurrence wins.
        let field = |key: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
                .map(str::to_string)
        };
        let Some(ids) = field("ArrayTaskId") else {
            continue;
        };
        let state = field("JobState").unwrap_or_default();
        let reason = field("Reason").unwrap_or_default();
        let exit = field("ExitCode").and_then(|e| {
            let (status, signal) = e.split_once(':')?;
            Some((status.parse().ok()?, signal.parse().ok()?))
        });
        let node = field("NodeList").filter(|n| n != "(null)" && !n.is_empty());
        for task in expand_ids(&ids) {
            tasks.push(SlurmTask {
                task,
                state: state.clone(),
                reason: reason.clone(),
                exit,
                node: node.clone(),
            });
        }
    }
    tasks.sort_by_key(|t| t.task);
    tasks
}

/// `0-3`, `1,3-4`, `2-5%1` → the task ids.
fn expand_ids(ids: &str) -> Vec<u32> {
    let ids = ids.split('%').next().unwrap_or_default();
    let mut out = Vec::new();
    for part in ids.split(',') {
        let (range, step) = match part.split_once(':') {
            Some((r, s)) => (r, s.parse::<u32>().unwrap_or(1).max(1)),
            None => (part, 1),
        };
        match range.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<u32>(), b.parse::<u32>()) {
                    out.extend((a..=b).step_by(step as usize));
                }
            }
            None => out.extend(range.parse::<u32>().ok()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Captured from the single-node cluster `.ci/slurm` starts (Slurm 22.05): a held
    /// array of four, task 0 pinned and finished, task 1 failed, 2–3 still pending.
    const SHOW_JOB: &str = include_str!("../../../tests/fixtures/slurm/scontrol_show_job.txt");

    #[test]
    fn reads_each_task_and_expands_the_pending_rest() {
        let tasks = parse(SHOW_JOB);
        let summary: Vec<(u32, &str, Stage)> = tasks
            .iter()
            .map(|t| (t.task, t.state.as_str(), t.stage()))
            .collect();
        assert_eq!(
            summary,
            [
                (0, "COMPLETED", Stage::Completed),
                (1, "FAILED", Stage::Ended),
                (2, "PENDING", Stage::Waiting),
                (3, "PENDING", Stage::Waiting),
            ]
        );
        assert_eq!(tasks[0].node.as_deref(), Some("vm"));
        assert_eq!(tasks[1].exit, Some((2, 0)));
        assert_eq!(tasks[1].describe(), "FAILED (NonZeroExitCode), exit 2");
        assert_eq!(tasks[2].node, None);
        assert_eq!(tasks[2].reason, "JobHeldUser");
    }

    #[test]
    fn task_id_lists_expand() {
        assert_eq!(expand_ids("0-3"), [0, 1, 2, 3]);
        assert_eq!(expand_ids("1,3-4%2"), [1, 3, 4]);
        assert_eq!(expand_ids("0-6:3"), [0, 3, 6]);
        assert_eq!(expand_ids("7"), [7]);
    }
}
