//! Where everything lives under a fleet's results directory `DIR`, which must be on a
//! filesystem every node sees:
//!
//! ```text
//! DIR/<node>/                      that node's `ozone tune --output-dir` (logs/, summaries/, report/ …)
//! DIR/<node>/.fleet/job-<J>/task   the index of job J's task that took this node
//! DIR/<node>/.fleet/job-<J>/exit   `ozone tune`'s exit status, once it ended
//! DIR/.fleet/submit-<ts>.sh        the batch script, as submitted
//! DIR/.fleet/job-<J>.json          what job J is (tasks, nodes, models, script)
//! DIR/.fleet/slurm-<J>_<task>.out  each task's own output (Slurm's --output)
//! ```
//!
//! Node folders are the ones that do not start with a dot (no host name does).

use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::FleetError;

/// Ozone's own files under `DIR` (and under each node's folder).
pub const FLEET_DIR: &str = ".fleet";

/// What was submitted as one job, kept in `DIR/.fleet/job-<J>.json` for `fleet status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRecord {
    pub job_id: String,
    pub scheduler: String,
    pub submitted_at: DateTime<Utc>,
    /// Number of array tasks: 0..tasks.
    pub tasks: u32,
    /// The node each task was pinned to (`--nodelist`), in task order; empty for `--nodes`.
    #[serde(default)]
    pub nodes: Vec<String>,
    pub models: Vec<String>,
    pub script: PathBuf,
}

/// One node's folder under `DIR`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeDir {
    pub node: String,
    pub path: PathBuf,
}

/// `DIR/.fleet`.
pub fn fleet_dir(results: &Path) -> PathBuf {
    results.join(FLEET_DIR)
}

/// `DIR/<node>`.
pub fn node_dir(results: &Path, node: &str) -> PathBuf {
    results.join(node)
}

/// `DIR/<node>/.fleet/job-<J>`: created (atomically, by `mkdir`) by the task that takes
/// the node.
pub fn claim_dir(node_dir: &Path, job: &str) -> PathBuf {
    node_dir.join(FLEET_DIR).join(format!("job-{job}"))
}

/// `DIR/.fleet/job-<J>.json`.
pub fn job_record_path(results: &Path, job: &str) -> PathBuf {
    fleet_dir(results).join(format!("job-{job}.json"))
}

/// `DIR/.fleet/slurm-<J>_<task>.out`, as the script's `--output=.fleet/slurm-%A_%a.out`.
pub fn task_output_path(results: &Path, job: &str, task: u32) -> PathBuf {
    fleet_dir(results).join(format!("slurm-{job}_{task}.out"))
}

/// Every node folder under `DIR`, by name.
pub fn node_dirs(results: &Path) -> Result<Vec<NodeDir>, FleetError> {
    let entries = std::fs::read_dir(results).map_err(|e| FleetError::io(results, e))?;
    let mut nodes: Vec<NodeDir> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| {
            let node = e.file_name().to_str()?.to_string();
            (!node.starts_with('.')).then(|| NodeDir {
                node,
                path: e.path(),
            })
        })
        .collect();
    nodes.sort_by(|a, b| a.node.cmp(&b.node));
    Ok(nodes)
}

/// Reads `DIR/.fleet/job-<J>.json`.
pub fn read_job_record(results: &Path, job: &str) -> Result<JobRecord, FleetError> {
    let path = job_record_path(results, job);
    let text = std::fs::read_to_string(&path).map_err(|e| FleetError::io(&path, e))?;
    serde_json::from_str(&text).map_err(|e| FleetError::Unreadable {
        path,
        message: e.to_string(),
    })
}

/// The most recently submitted job recorded under `DIR`, if any.
pub fn latest_job_record(results: &Path) -> Result<Option<JobRecord>, FleetError> {
    let dir = fleet_dir(results);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(FleetError::io(&dir, e)),
    };
    let mut latest: Option<JobRecord> = None;
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name();
        let Some(job) = name
            .to_str()
            .and_then(|n| n.strip_prefix("job-"))
            .and_then(|n| n.strip_suffix(".json"))
        else {
            continue;
        };
        let record = read_job_record(results, job)?;
        if latest
            .as_ref()
            .is_none_or(|l| record.submitted_at > l.submitted_at)
        {
            latest = Some(record);
        }
    }
    Ok(latest)
}

/// Writes `contents` to `path` atomically: a temporary file in the same folder, flushed,
/// then renamed over `path`. Readers on other nodes never see half a file.
pub fn write_atomically(path: &Path, contents: &[u8], executable: bool) -> Result<(), FleetError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).map_err(|e| FleetError::io(dir, e))?;
    let mut file = tempfile::Builder::new()
        .prefix(".ozone-")
        .tempfile_in(dir)
        .map_err(|e| FleetError::io(dir, e))?;
    file.write_all(contents)
        .and_then(|()| file.as_file().sync_all())
        .map_err(|e| FleetError::io(path, e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = if executable { 0o755 } else { 0o644 };
        std::fs::set_permissions(file.path(), std::fs::Permissions::from_mode(mode))
            .map_err(|e| FleetError::io(path, e))?;
    }
    #[cfg(not(unix))]
    let _ = executable;
    file.persist(path)
        .map_err(|e| FleetError::io(path, e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_folders_are_the_undotted_ones_in_name_order() {
        let dir = tempfile::tempdir().unwrap();
        for d in ["gpu02", "gpu01", ".fleet"] {
            std::fs::create_dir(dir.path().join(d)).unwrap();
        }
        std::fs::write(dir.path().join("notes.txt"), "").unwrap();
        let nodes: Vec<String> = node_dirs(dir.path())
            .unwrap()
            .into_iter()
            .map(|n| n.node)
            .collect();
        assert_eq!(nodes, ["gpu01", "gpu02"]);
    }

    #[test]
    fn the_latest_job_is_the_last_submitted() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(latest_job_record(dir.path()).unwrap(), None);
        let record = |id: &str, minutes: i64| JobRecord {
            job_id: id.into(),
            scheduler: "slurm".into(),
            submitted_at: DateTime::from_timestamp(1_800_000_000 + minutes * 60, 0).unwrap(),
            tasks: 2,
            nodes: vec![],
            models: vec!["m.gguf".into()],
            script: dir.path().join(".fleet/submit.sh"),
        };
        for (id, minutes) in [("9", 5), ("10", 20), ("11", 1)] {
            let text = serde_json::to_vec(&record(id, minutes)).unwrap();
            write_atomically(&job_record_path(dir.path(), id), &text, false).unwrap();
        }
        let latest = latest_job_record(dir.path()).unwrap().unwrap();
        assert_eq!(latest.job_id, "10");
        assert_eq!(read_job_record(dir.path(), "9").unwrap(), record("9", 5));
    }

    #[test]
    fn an_atomic_write_leaves_only_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a").join("script.sh");
        write_atomically(&path, b"#!/bin/bash\n", true).unwrap();
        write_atomically(&path, b"#!/bin/bash\necho 2\n", true).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "#!/bin/bash\necho 2\n"
        );
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [std::ffi::OsString::from("script.sh")]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o755);
        }
    }
}
