//! Checks before submitting, and the submission itself (`sbatch`, the pinning of tasks
//! to nodes, the job record).

use std::path::Path;

use chrono::Utc;

use super::{render, FleetError, Placement, SlurmPlan};
use crate::fleet::command::{self, QUERY_TIMEOUT, SUBMIT_TIMEOUT};
use crate::fleet::layout::{self, JobRecord};

const CLIENT_HINT: &str = "`ozone fleet submit` needs Slurm's client commands on this machine \
    (Debian: apt install slurm-client; or run it on the cluster's login node). \
    `--dry-run` prints the script without them";

/// Creates `DIR` (and `DIR/.fleet`) and proves a file can be written there.
pub fn check_results_dir(results: &Path) -> Result<(), FleetError> {
    let fleet = layout::fleet_dir(results);
    let unwritable = |source| FleetError::ResultsDir {
        path: results.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(&fleet).map_err(unwritable)?;
    tempfile::tempfile_in(&fleet).map_err(unwritable)?;
    Ok(())
}

/// `sbatch` is on PATH and runs.
pub fn check_sbatch() -> Result<(), FleetError> {
    let done = command::run("sbatch", &["--version"], None, QUERY_TIMEOUT, CLIENT_HINT)?;
    if done.success {
        Ok(())
    } else {
        Err(FleetError::Scheduler {
            command: "sbatch --version".into(),
            message: done.message(),
        })
    }
}

/// The partition exists (`scontrol show partition`); when it does not, the error lists
/// those that do (`sinfo`).
pub fn check_partition(name: &str) -> Result<(), FleetError> {
    let args = ["show", "partition", name];
    let done = command::run("scontrol", &args, None, QUERY_TIMEOUT, CLIENT_HINT)?;
    if done.success {
        return Ok(());
    }
    let message = done.message();
    if unreachable(&message) {
        return Err(FleetError::Scheduler {
            command: command::display("scontrol", &args),
            message,
        });
    }
    let known = command::run(
        "sinfo",
        &["-h", "-o", "%R"],
        None,
        QUERY_TIMEOUT,
        CLIENT_HINT,
    )
    .ok()
    .filter(|d| d.success)
    .map(|d| {
        let mut names: Vec<&str> = d.stdout.split_whitespace().collect();
        names.sort_unstable();
        names.dedup();
        names.join(", ")
    })
    .unwrap_or_default();
    Err(FleetError::BadInput(if known.is_empty() {
        format!("--partition {name}: no such partition ({message})")
    } else {
        format!("--partition {name}: no such partition; this cluster has: {known}")
    }))
}

/// The nodes of a Slurm host list: `a,b` directly, `gpu[01-04]` through
/// `scontrol show hostnames` (Slurm's own expansion).
pub fn expand_nodelist(list: &str) -> Result<Vec<String>, FleetError> {
    let nodes: Vec<String> = if list.contains('[') {
        let args = ["show", "hostnames", list];
        let hint =
            format!("expanding {list} needs Slurm's scontrol; list the nodes with commas instead");
        let done = command::run("scontrol", &args, None, QUERY_TIMEOUT, &hint)?;
        if !done.success {
            return Err(FleetError::BadInput(format!(
                "--nodelist {list}: {}",
                done.message()
            )));
        }
        done.stdout.split_whitespace().map(str::to_string).collect()
    } else {
        list.split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_string)
            .collect()
    };
    let mut seen = std::collections::BTreeSet::new();
    if let Some(dup) = nodes.iter().find(|n| !seen.insert(n.as_str())) {
        return Err(FleetError::BadInput(format!(
            "--nodelist {list}: {dup} is listed twice"
        )));
    }
    if nodes.is_empty() {
        return Err(FleetError::BadInput(format!(
            "--nodelist {list:?}: no node"
        )));
    }
    Ok(nodes)
}

/// Writes the script, submits it from `DIR`, pins tasks to nodes (`--nodelist`) and
/// records the job in `DIR/.fleet/job-<J>.json`. The checks above come first.
pub fn submit(plan: &SlurmPlan) -> Result<JobRecord, FleetError> {
    let script = render(plan)?;
    let script_path = plan.script_path();
    layout::write_atomically(&script_path, script.as_bytes(), true)?;

    let relative = plan.script_relative();
    let relative = relative.to_string_lossy();
    let pinned = matches!(plan.placement, Placement::Nodes(_));
    let mut args = vec!["--parsable"];
    if pinned {
        args.push("--hold");
    }
    args.push(&relative);
    let done = command::run(
        "sbatch",
        &args,
        Some(&plan.results),
        SUBMIT_TIMEOUT,
        CLIENT_HINT,
    )?;
    let shown = command::display("sbatch", &args);
    if !done.success {
        let message = done.message();
        return Err(if unreachable(&message) {
            FleetError::Scheduler {
                command: shown,
                message,
            }
        } else {
            FleetError::Refused {
                command: shown,
                message,
            }
        });
    }
    // `--parsable` prints `JOB` or `JOB;CLUSTER`.
    let job = done
        .stdout
        .trim()
        .split(';')
        .next()
        .filter(|j| !j.is_empty() && j.chars().all(|c| c.is_ascii_digit()))
        .ok_or_else(|| FleetError::Scheduler {
            command: shown.clone(),
            message: format!("unexpected answer {:?}", done.stdout.trim()),
        })?
        .to_string();

    if let Placement::Nodes(nodes) = &plan.placement {
        pin(&job, nodes)?;
    }
    let record = JobRecord {
        job_id: job.clone(),
        scheduler: "slurm".into(),
        submitted_at: Utc::now(),
        tasks: plan.tasks(),
        nodes: match &plan.placement {
            Placement::Nodes(nodes) => nodes.clone(),
            Placement::Count(_) => Vec::new(),
        },
        models: plan.models.clone(),
        script: script_path,
    };
    let text = serde_json::to_vec_pretty(&record).map_err(|e| FleetError::Unreadable {
        path: layout::job_record_path(&plan.results, &job),
        message: e.to_string(),
    })?;
    layout::write_atomically(&layout::job_record_path(&plan.results, &job), &text, false)?;
    Ok(record)
}

/// Pins task i of the held job to `nodes[i]`, then releases it. On a refusal the job is
/// cancelled: half-pinned tasks would run anywhere.
fn pin(job: &str, nodes: &[String]) -> Result<(), FleetError> {
    for (task, node) in nodes.iter().enumerate() {
        let id = format!("JobId={job}_{task}");
        let required = format!("ReqNodeList={node}");
        let args = ["update", id.as_str(), required.as_str()];
        let done = command::run("scontrol", &args, None, QUERY_TIMEOUT, CLIENT_HINT);
        let failure = match done {
            Ok(d) if d.success => continue,
            Ok(d) => FleetError::Refused {
                command: command::display("scontrol", &args),
                message: format!("{}; job {job} was cancelled", d.message()),
            },
            Err(e) => e,
        };
        let _ = command::run("scancel", &[job], None, QUERY_TIMEOUT, CLIENT_HINT);
        return Err(failure);
    }
    let args = ["release", job];
    let done = command::run("scontrol", &args, None, QUERY_TIMEOUT, CLIENT_HINT)?;
    if done.success {
        Ok(())
    } else {
        Err(FleetError::Scheduler {
            command: command::display("scontrol", &args),
            message: format!(
                "{} (the job is held: `scontrol release {job}`)",
                done.message()
            ),
        })
    }
}

/// Slurm's words for "the controller did not answer".
fn unreachable(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("unable to contact") || m.contains("timed out") || m.contains("connection refused")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_node_lists_need_no_slurm() {
        assert_eq!(
            expand_nodelist("gpu01, gpu02,gpu03").unwrap(),
            ["gpu01", "gpu02", "gpu03"]
        );
        let err = expand_nodelist("gpu01,gpu01").unwrap_err();
        assert!(err.to_string().contains("gpu01 is listed twice"), "{err}");
        assert!(expand_nodelist(" , ").unwrap_err().is_bad_input());
    }

    #[test]
    fn an_unwritable_results_dir_says_it_must_be_shared() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a-file");
        std::fs::write(&file, "").unwrap();
        let err = check_results_dir(&file.join("results")).unwrap_err();
        assert!(err.is_bad_input());
        let text = err.to_string();
        assert!(text.contains("a-file/results"), "{text}");
        assert!(text.contains("every node sees"), "{text}");
        check_results_dir(&dir.path().join("ok")).unwrap();
        assert!(dir.path().join("ok/.fleet").is_dir());
    }
}
