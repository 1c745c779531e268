//! `ozone fleet status`: per task of a job, queued / running (phase and trial from the
//! node's log) / done / failed (the reason from the log, the task's output or Slurm) /
//! skipped (its node was taken by another task of the job).
//!
//! Two sources, each covering what the other cannot see: Slurm knows the tasks that have
//! not started (and how a task was killed); the results directory knows which task took
//! which node, how far its tune is and how it ended, long after Slurm forgot the job.

mod progress;
mod scheduler;

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::Serialize;

pub use progress::{node_runs, read_progress, RunProgress};
pub use scheduler::{parse as parse_scontrol, query as query_slurm, SlurmTask, Stage};

use super::layout::{self, JobRecord};
use super::FleetError;
use crate::report::RunStatus;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    Queued,
    Running,
    Done,
    Failed,
    /// The task landed on a node another task of the job had taken.
    Skipped,
    /// Neither Slurm nor the results directory knows anything of it.
    Unknown,
}

impl std::fmt::Display for TaskState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TaskState::Queued => "queued",
            TaskState::Running => "running",
            TaskState::Done => "done",
            TaskState::Failed => "failed",
            TaskState::Skipped => "skipped",
            TaskState::Unknown => "unknown",
        })
    }
}

/// One task (or, without a job, one node folder).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskStatus {
    pub task: Option<u32>,
    pub node: Option<String>,
    pub state: TaskState,
    pub detail: String,
    /// The runs of this task's tune on its node, one per model.
    pub runs: Vec<RunProgress>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FleetStatus {
    pub results: PathBuf,
    pub job: Option<String>,
    /// Said once above the table: Slurm not asked, or no longer knowing the job.
    pub note: Option<String>,
    pub tasks: Vec<TaskStatus>,
}

impl FleetStatus {
    /// Every task has ended (done, failed, skipped).
    pub fn finished(&self) -> bool {
        self.tasks.iter().all(|t| {
            matches!(
                t.state,
                TaskState::Done | TaskState::Failed | TaskState::Skipped
            )
        })
    }

    pub fn count(&self, state: TaskState) -> usize {
        self.tasks.iter().filter(|t| t.state == state).count()
    }
}

/// Where the job's tasks are. `job`: the job to show, else the last one submitted into
/// `DIR`. `ask_slurm`: query `scontrol` (else the results directory alone).
pub fn status(
    results: &Path,
    job: Option<&str>,
    ask_slurm: bool,
) -> Result<FleetStatus, FleetError> {
    if !results.is_dir() {
        return Err(FleetError::BadInput(format!(
            "--results {}: no such directory",
            results.display()
        )));
    }
    let record = match job {
        Some(job) => layout::read_job_record(results, job).ok(),
        None => layout::latest_job_record(results)?,
    };
    let Some(job) = job
        .map(str::to_string)
        .or_else(|| record.as_ref().map(|r| r.job_id.clone()))
    else {
        return nodes_without_job(results);
    };
    let (slurm, note) = if ask_slurm {
        match scheduler::query(&job) {
            Ok(Some(tasks)) => (tasks, None),
            // Away from the cluster the results directory still tells most of it.
            Err(FleetError::ToolMissing { .. }) => (
                Vec::new(),
                Some("scontrol not found here: states come from the results directory".into()),
            ),
            Err(e) => return Err(e),
            Ok(None) => (
                Vec::new(),
                Some(format!(
                    "Slurm no longer knows job {job} (finished jobs are kept for MinJobAge); \
                     states come from the results directory"
                )),
            ),
        }
    } else {
        (Vec::new(), Some("Slurm not asked (--no-scheduler)".into()))
    };
    let claims = claims(results, &job)?;
    Ok(FleetStatus {
        results: results.to_path_buf(),
        job: Some(job.clone()),
        note,
        tasks: combine(results, &job, record.as_ref(), &slurm, &claims),
    })
}

/// The mark a task left on the node it took (`DIR/<node>/.fleet/job-J/`).
#[derive(Debug, Clone, PartialEq)]
struct Claim {
    task: u32,
    node: String,
    node_dir: PathBuf,
    /// `ozone tune`'s exit status, once it ended.
    exit: Option<i32>,
    at: Option<SystemTime>,
}

fn claims(results: &Path, job: &str) -> Result<Vec<Claim>, FleetError> {
    let mut found = Vec::new();
    for node in layout::node_dirs(results)? {
        let dir = layout::claim_dir(&node.path, job);
        let task_file = dir.join("task");
        let Some(task) = read_number(&task_file) else {
            continue;
        };
        found.push(Claim {
            task: task as u32,
            node: node.node,
            exit: read_number(&dir.join("exit")).map(|e| e as i32),
            at: std::fs::metadata(&task_file)
                .and_then(|m| m.modified())
                .ok(),
            node_dir: node.path,
        });
    }
    Ok(found)
}

fn read_number(path: &Path) -> Option<i64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn combine(
    results: &Path,
    job: &str,
    record: Option<&JobRecord>,
    slurm: &[SlurmTask],
    claims: &[Claim],
) -> Vec<TaskStatus> {
    let tasks = record
        .map(|r| r.tasks)
        .into_iter()
        .chain(slurm.iter().map(|t| t.task + 1))
        .chain(claims.iter().map(|c| c.task + 1))
        .max()
        .unwrap_or(0);
    (0..tasks)
        .map(|task| {
            let pinned = record.and_then(|r| r.nodes.get(task as usize)).cloned();
            let in_slurm = slurm.iter().find(|t| t.task == task);
            let claim = claims.iter().find(|c| c.task == task);
            let mut status = match claim {
                Some(claim) => claimed(results, job, task, claim, in_slurm),
                None => unclaimed(results, job, task, in_slurm, claims),
            };
            if status.node.is_none() {
                status.node = pinned;
            }
            status
        })
        .collect()
}

/// A task that took its node: its tune's log and exit status say the rest.
fn claimed(
    results: &Path,
    job: &str,
    task: u32,
    claim: &Claim,
    slurm: Option<&SlurmTask>,
) -> TaskStatus {
    let runs = node_runs(&claim.node_dir, claim.at);
    let lines = |runs: &[RunProgress]| {
        runs.iter()
            .map(RunProgress::describe)
            .collect::<Vec<_>>()
            .join("; ")
    };
    let (state, detail) = match claim.exit {
        Some(0) => (TaskState::Done, lines(&runs)),
        Some(code) => {
            let why = runs
                .iter()
                .filter(|r| r.status != RunStatus::Completed)
                .map(RunProgress::describe)
                .next()
                .or_else(|| last_error_line(&layout::task_output_path(results, job, task)))
                .unwrap_or_else(|| "no reason logged".into());
            (
                TaskState::Failed,
                format!("ozone tune exited {code}: {why}"),
            )
        }
        None => match slurm.map(SlurmTask::stage) {
            Some(Stage::Ended | Stage::Completed) => {
                let s = slurm.map(SlurmTask::describe).unwrap_or_default();
                (
                    TaskState::Failed,
                    format!("stopped by Slurm: {s}{}", with_runs(&lines(&runs))),
                )
            }
            _ => match runs.last() {
                Some(run) if run.status == RunStatus::Unfinished => {
                    (TaskState::Running, lines(&runs))
                }
                _ => (
                    TaskState::Running,
                    format!("ozone tune started{}", with_runs(&lines(&runs))),
                ),
            },
        },
    };
    TaskStatus {
        task: Some(task),
        node: Some(claim.node.clone()),
        state,
        detail,
        runs,
    }
}

/// A task with no node of its own yet (or ever): Slurm's word, or the node it was
/// skipped on.
fn unclaimed(
    results: &Path,
    job: &str,
    task: u32,
    slurm: Option<&SlurmTask>,
    claims: &[Claim],
) -> TaskStatus {
    let node = slurm.and_then(|s| s.node.clone());
    let taken_by = node
        .as_ref()
        .and_then(|n| claims.iter().find(|c| &c.node == n && c.task != task));
    let output = layout::task_output_path(results, job, task);
    let (state, detail) = match (slurm, taken_by) {
        (None, _) => (
            TaskState::Unknown,
            format!("no trace: Slurm does not list task {task} and no node folder has its mark"),
        ),
        (Some(s), _) if s.stage() == Stage::Waiting => (TaskState::Queued, s.reason.clone()),
        (Some(_), Some(other)) => (
            TaskState::Skipped,
            format!(
                "{} was taken by task {} of this job",
                other.node, other.task
            ),
        ),
        (Some(s), None) if s.stage() == Stage::Running => {
            (TaskState::Running, "starting".to_string())
        }
        (Some(s), None) => (
            TaskState::Failed,
            format!(
                "{}{}",
                s.describe(),
                last_error_line(&output)
                    .map(|l| format!(": {l}"))
                    .unwrap_or_else(|| format!(
                        " before taking its node (see {})",
                        output.display()
                    ))
            ),
        ),
    };
    TaskStatus {
        task: Some(task),
        node,
        state,
        detail,
        runs: Vec::new(),
    }
}

/// Without any job: one row per node folder, from its logs.
fn nodes_without_job(results: &Path) -> Result<FleetStatus, FleetError> {
    let tasks = layout::node_dirs(results)?
        .into_iter()
        .map(|node| {
            let runs = node_runs(&node.path, None);
            let state = if runs.is_empty() {
                TaskState::Unknown
            } else if runs.iter().any(|r| r.status == RunStatus::Unfinished) {
                TaskState::Running
            } else if runs.iter().all(|r| r.status == RunStatus::Completed) {
                TaskState::Done
            } else {
                TaskState::Failed
            };
            TaskStatus {
                task: None,
                node: Some(node.node),
                state,
                detail: runs
                    .iter()
                    .map(RunProgress::describe)
                    .collect::<Vec<_>>()
                    .join("; "),
                runs,
            }
        })
        .collect();
    Ok(FleetStatus {
        results: results.to_path_buf(),
        job: None,
        note: Some("no job submitted into this directory: states come from the logs alone".into()),
        tasks,
    })
}

fn with_runs(lines: &str) -> String {
    if lines.is_empty() {
        String::new()
    } else {
        format!("; {lines}")
    }
}

/// The last `error: …` line of a task's output (what `ozone` printed before exiting),
/// else its last line.
fn last_error_line(output: &Path) -> Option<String> {
    let text = std::fs::read_to_string(output).ok()?;
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    lines
        .iter()
        .rev()
        .find(|l| l.starts_with("error:"))
        .or(lines.last())
        .map(|l| l.to_string())
}

/// The table `ozone fleet status` prints.
pub fn table(status: &FleetStatus) -> String {
    let mut out = String::new();
    let counts: Vec<String> = [
        TaskState::Done,
        TaskState::Running,
        TaskState::Queued,
        TaskState::Failed,
        TaskState::Skipped,
        TaskState::Unknown,
    ]
    .into_iter()
    .filter(|s| status.count(*s) > 0)
    .map(|s| format!("{} {s}", status.count(s)))
    .collect();
    let subject = match &status.job {
        Some(job) => format!("job {job}: {} task(s)", status.tasks.len()),
        None => format!("{} node folder(s)", status.tasks.len()),
    };
    out.push_str(&format!(
        "{subject} — {} (results in {})\n",
        if counts.is_empty() {
            "nothing yet".to_string()
        } else {
            counts.join(", ")
        },
        status.results.display()
    ));
    if let Some(note) = &status.note {
        out.push_str(&format!("note: {note}\n"));
    }
    let rows: Vec<[String; 4]> = status
        .tasks
        .iter()
        .map(|t| {
            [
                t.task.map_or("-".into(), |i| i.to_string()),
                t.node.clone().unwrap_or_else(|| "-".into()),
                t.state.to_string(),
                t.detail.clone(),
            ]
        })
        .collect();
    let header = ["task", "node", "state", "detail"].map(String::from);
    let widths: Vec<usize> = (0..3)
        .map(|i| {
            std::iter::once(&header)
                .chain(&rows)
                .map(|r| r[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in std::iter::once(&header).chain(&rows) {
        out.push_str(&format!(
            "{:w0$}  {:w1$}  {:w2$}  {}\n",
            row[0],
            row[1],
            row[2],
            row[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2]
        ));
    }
    out
}

#[cfg(test)]
mod tests;
