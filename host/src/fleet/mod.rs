//! Many machines: tune every node of a cluster through the scheduler it already has, and
//! compare the nodes in one place. Ozone grows no agent and no scheduler of its own.
//!
//! - [`slurm`]: `ozone fleet submit` writes a batch script (a job array, one task per node,
//!   each alone on its node, running `ozone tune` into `DIR/<node>/`) and hands it to
//!   `sbatch`.
//! - [`status`]: per task, queued / running (phase and trial from the node's log) / done /
//!   failed, from the scheduler and the results directory.
//! - [`report`]: every node's summaries side by side, grouped by hardware fingerprint,
//!   with groups whose limits disagree beyond noise flagged; a table and an HTML page.
//! - [`k8s`]: the same run as a Kubernetes Indexed Job, built from typed API objects.
//! - [`warm_start`]: `ozone tune --warm-start-from DIR` reads the other nodes' results.
//!
//! [`layout`] is where everything lives under the results directory; [`command`] runs the
//! scheduler's commands, each with a timeout.

pub mod command;
pub mod k8s;
pub mod layout;
pub mod report;
pub mod slurm;
pub mod status;
pub mod warm_start;

use std::path::PathBuf;

/// Why a fleet command could not do its work. [`FleetError::is_bad_input`] and
/// [`FleetError::is_scheduler_missing`] tell the CLI which exit code it is.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// A flag's value or the request itself is wrong.
    #[error("{0}")]
    BadInput(String),
    #[error(
        "results directory {}: {source}. It must be writable, and on a filesystem every \
         node sees (NFS, Lustre, GPFS, a shared home): each node writes its results there",
        path.display()
    )]
    ResultsDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{tool} not found on PATH: {hint}")]
    ToolMissing { tool: String, hint: String },
    #[error("`{command}` did not answer within {seconds} s: is the Slurm controller up (`scontrol ping`)?")]
    ToolTimeout { command: String, seconds: u64 },
    /// The scheduler refused a request it understood (a bad partition, gres, node).
    #[error("`{command}` refused: {message}")]
    Refused { command: String, message: String },
    /// The scheduler could not be reached or failed.
    #[error("`{command}` failed: {message}")]
    Scheduler { command: String, message: String },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {message}", path.display())]
    Unreadable { path: PathBuf, message: String },
}

impl FleetError {
    /// Exit 2: the user can fix the request.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            FleetError::BadInput(_) | FleetError::ResultsDir { .. } | FleetError::Refused { .. }
        )
    }

    /// Exit 3: no scheduler to talk to (not installed, not answering).
    pub fn is_scheduler_missing(&self) -> bool {
        matches!(
            self,
            FleetError::ToolMissing { .. }
                | FleetError::ToolTimeout { .. }
                | FleetError::Scheduler { .. }
        )
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        FleetError::Io {
            path: path.into(),
            source,
        }
    }
}
