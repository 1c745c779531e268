//! Slurm: the batch script `ozone fleet submit` writes, and its submission.
//!
//! One job array, one task per node, each task `--exclusive` on its node, running
//! `ozone tune` into `DIR/<node>/`. With `--nodelist`, each task is pinned to its node
//! (submitted held, `scontrol update JobId=J_i ReqNodeList=<node>`, released): a job
//! array alone does not say which task runs where. With `--nodes N` Slurm places the
//! tasks; a task that lands on a node another task of the job already took leaves it
//! alone (the script's claim), so no node is tuned twice by one job.

mod script;
mod submit;

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

pub use script::{render, submission_commands};
pub use submit::{check_partition, check_results_dir, check_sbatch, expand_nodelist, submit};

use super::layout;
use super::FleetError;

/// Where the tasks run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// `--nodes N`: N tasks wherever Slurm has a free node.
    Count(u32),
    /// `--nodelist`: one task pinned to each of these nodes, in this order.
    Nodes(Vec<String>),
}

/// Everything the batch script and its submission are made from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlurmPlan {
    /// `DIR`, absolute.
    pub results: PathBuf,
    /// The `ozone` binary every node runs, absolute.
    pub ozone: PathBuf,
    /// As given to `ozone tune` (paths made absolute where they exist here).
    pub models: Vec<String>,
    /// The user's `ozone tune` flags (after `--`).
    pub tune_args: Vec<String>,
    pub placement: Placement,
    pub partition: Option<String>,
    pub gres: Option<String>,
    pub account: Option<String>,
    /// Slurm's `--time` for each task.
    pub time: Option<String>,
    /// At most this many tasks at once (`--array=…%K`).
    pub max_running: Option<u32>,
    /// Pass `--warm-start-from DIR` to every tune.
    pub shared_warm_start: bool,
    /// When the script is written: its name and header.
    pub written_at: DateTime<Utc>,
}

impl SlurmPlan {
    pub fn tasks(&self) -> u32 {
        match &self.placement {
            Placement::Count(n) => *n,
            Placement::Nodes(nodes) => nodes.len() as u32,
        }
    }

    /// `DIR/.fleet/submit-<ts>.sh`.
    pub fn script_path(&self) -> PathBuf {
        self.results.join(self.script_relative())
    }

    /// The script's path relative to `DIR`, where it is submitted from.
    pub fn script_relative(&self) -> PathBuf {
        Path::new(layout::FLEET_DIR).join(format!(
            "submit-{}.sh",
            self.written_at.format("%Y%m%d_%H%M%S")
        ))
    }

    /// Refuses what cannot go into a `#SBATCH` line or a Slurm request as it is.
    pub fn validate(&self) -> Result<(), FleetError> {
        if self.tasks() == 0 {
            return Err(FleetError::BadInput(
                "--nodes must be at least 1 (or give --nodelist)".into(),
            ));
        }
        if self.models.is_empty() {
            return Err(FleetError::BadInput("no MODEL to tune".into()));
        }
        let word = |flag: &str, value: &Option<String>, extra: &str| match value {
            Some(v) if !slurm_word(v, extra) => Err(FleetError::BadInput(format!(
                "{flag} {v:?}: only letters, digits and `_.-+{extra}` are accepted"
            ))),
            _ => Ok(()),
        };
        word("--partition", &self.partition, "")?;
        word("--account", &self.account, "")?;
        word("--gres", &self.gres, ":,=")?;
        word("--time", &self.time, ":")?;
        if let Placement::Nodes(nodes) = &self.placement {
            for node in nodes {
                if !slurm_word(node, "") {
                    return Err(FleetError::BadInput(format!(
                        "--nodelist: node {node:?} is not a host name"
                    )));
                }
            }
        }
        if self.max_running == Some(0) {
            return Err(FleetError::BadInput(
                "--max-running must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// A value Slurm reads without quoting: letters, digits, `_.-+` and `extra`.
fn slurm_word(value: &str, extra: &str) -> bool {
    !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-+".contains(c) || extra.contains(c))
}
