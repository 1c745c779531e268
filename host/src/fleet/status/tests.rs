//! Status from a results directory laid out as the batch script lays it out, with logs
//! in the real format, and Slurm's view as `scontrol` reports it.

use std::path::Path;

use chrono::{TimeZone, Utc};

use super::*;
use crate::fixtures;
use crate::record::Phase;
use crate::report::{LogEvent, RunFinished, RunLog};

const JOB: &str = "41";

/// `DIR/<node>/.fleet/job-41/task` (and `exit` when given), as the script writes them.
fn claim(results: &Path, node: &str, task: u32, exit: Option<i32>) {
    let dir = layout::claim_dir(&layout::node_dir(results, node), JOB);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("task"), format!("{task}\n")).unwrap();
    if let Some(code) = exit {
        std::fs::write(dir.join("exit"), format!("{code}\n")).unwrap();
    }
}

/// A node's log: the fixture run's first `trials` trials, then how it ended.
fn log(results: &Path, node: &str, trials: usize, end: Option<RunFinished>) {
    let started = crate::report::tests::run_started();
    let mut log = RunLog::create(
        &layout::node_dir(results, node),
        &started.model.name,
        started.started_at,
    )
    .unwrap();
    log.append(&LogEvent::RunStarted(Box::new(started)))
        .unwrap();
    for t in fixtures::trials().into_iter().take(trials) {
        log.append(&LogEvent::Decision {
            phase: t.phase,
            plugin: "binary-search".into(),
            proposed: Some(t.config.ctx),
            stage: Some(crate::record::Stage::Verify),
        })
        .unwrap();
        log.append(&LogEvent::Trial(Box::new(t))).unwrap();
    }
    log.append(&LogEvent::Decision {
        phase: Phase::Context,
        plugin: "binary-search".into(),
        proposed: Some(24576),
        stage: Some(crate::record::Stage::Verify),
    })
    .unwrap();
    if let Some(end) = end {
        log.append(&LogEvent::RunFinished(end)).unwrap();
    }
}

fn finished(status: RunStatus, message: Option<&str>) -> RunFinished {
    RunFinished {
        status,
        finished_at: Utc.with_ymd_and_hms(2026, 11, 26, 13, 9, 0).unwrap(),
        limits: None,
        message: message.map(String::from),
    }
}

fn slurm(task: u32, state: &str, reason: &str, exit: (i32, i32), node: Option<&str>) -> SlurmTask {
    SlurmTask {
        task,
        state: state.into(),
        reason: reason.into(),
        exit: Some(exit),
        node: node.map(String::from),
    }
}

#[test]
fn each_task_reads_as_a_person_would_say_it() {
    let dir = tempfile::tempdir().unwrap();
    let results = dir.path();
    // 0: done on gpu01. 1: running on gpu02 (3 trials logged, a fourth proposed).
    claim(results, "gpu01", 0, Some(0));
    log(
        results,
        "gpu01",
        12,
        Some(finished(RunStatus::Completed, None)),
    );
    claim(results, "gpu02", 1, None);
    log(results, "gpu02", 3, None);
    // 4: the tune failed on gpu03, and said why in its log.
    claim(results, "gpu03", 4, Some(1));
    log(
        results,
        "gpu03",
        1,
        Some(finished(
            RunStatus::Failed,
            Some("context plugin proposed 0"),
        )),
    );
    // 5: killed by Slurm before `ozone tune` wrote its exit status.
    claim(results, "gpu04", 5, None);
    // 6: failed before taking a node; its output says why.
    std::fs::create_dir_all(layout::fleet_dir(results)).unwrap();
    std::fs::write(
        layout::task_output_path(results, JOB, 6),
        "error: /shared is not visible on gpu09: the results directory must be on a filesystem every node sees\n",
    )
    .unwrap();

    let slurm = vec![
        slurm(0, "COMPLETED", "None", (0, 0), Some("gpu01")),
        slurm(1, "RUNNING", "None", (0, 0), Some("gpu02")),
        slurm(2, "PENDING", "Resources", (0, 0), None),
        // 3 landed on gpu01 after task 0 had taken it.
        slurm(3, "COMPLETED", "None", (0, 0), Some("gpu01")),
        slurm(4, "FAILED", "NonZeroExitCode", (1, 0), Some("gpu03")),
        slurm(5, "TIMEOUT", "TimeLimit", (0, 15), Some("gpu04")),
        slurm(6, "FAILED", "NonZeroExitCode", (2, 0), Some("gpu09")),
    ];
    let record = JobRecord {
        job_id: JOB.into(),
        scheduler: "slurm".into(),
        submitted_at: Utc::now(),
        tasks: 8,
        nodes: Vec::new(),
        models: vec!["m.gguf".into()],
        script: results.join(".fleet/submit.sh"),
    };
    let claims = claims(results, JOB).unwrap();
    let tasks = combine(results, JOB, Some(&record), &slurm, &claims);
    let rows: Vec<(Option<&str>, TaskState, &str)> = tasks
        .iter()
        .map(|t| (t.node.as_deref(), t.state, t.detail.as_str()))
        .collect();

    assert_eq!(rows[0].0, Some("gpu01"));
    assert_eq!(rows[0].1, TaskState::Done);
    assert!(
        rows[0]
            .2
            .starts_with("qwen2.5-0.5b-instruct-q4_k_m: max context 20480"),
        "{}",
        rows[0].2
    );
    assert_eq!(
        rows[1],
        (
            Some("gpu02"),
            TaskState::Running,
            "qwen2.5-0.5b-instruct-q4_k_m: context phase, trial 4 (ctx 24576), 3 finished"
        )
    );
    assert_eq!(rows[2], (None, TaskState::Queued, "Resources"));
    assert_eq!(
        rows[3],
        (
            Some("gpu01"),
            TaskState::Skipped,
            "gpu01 was taken by task 0 of this job"
        )
    );
    assert_eq!(rows[4].1, TaskState::Failed);
    assert_eq!(
        rows[4].2,
        "ozone tune exited 1: qwen2.5-0.5b-instruct-q4_k_m: failed in the context phase: \
         context plugin proposed 0"
    );
    assert_eq!(
        rows[5],
        (
            Some("gpu04"),
            TaskState::Failed,
            "stopped by Slurm: TIMEOUT (TimeLimit), signal 15"
        )
    );
    assert_eq!(rows[6].1, TaskState::Failed);
    assert!(
        rows[6].2.starts_with(
            "FAILED (NonZeroExitCode), exit 2: error: /shared is not visible on gpu09"
        ),
        "{}",
        rows[6].2
    );
    // 7: the record says 8 tasks, Slurm lists 7 and no node has its mark.
    assert_eq!(rows[7].1, TaskState::Unknown);

    let status = FleetStatus {
        results: results.to_path_buf(),
        job: Some(JOB.into()),
        note: None,
        tasks,
    };
    assert!(!status.finished());
    let text = table(&status);
    assert!(
        text.starts_with(
            "job 41: 8 task(s) — 1 done, 1 running, 1 queued, 3 failed, 1 skipped, 1 unknown"
        ),
        "{text}"
    );
}

#[test]
fn without_slurm_the_marks_and_logs_still_tell() {
    let dir = tempfile::tempdir().unwrap();
    let results = dir.path();
    claim(results, "gpu01", 0, Some(0));
    log(
        results,
        "gpu01",
        12,
        Some(finished(RunStatus::Completed, None)),
    );
    claim(results, "gpu02", 1, None);
    log(results, "gpu02", 2, None);
    let record = JobRecord {
        job_id: JOB.into(),
        scheduler: "slurm".into(),
        submitted_at: Utc::now(),
        tasks: 2,
        nodes: vec!["gpu01".into(), "gpu02".into()],
        models: vec!["m.gguf".into()],
        script: results.join(".fleet/submit.sh"),
    };
    layout::write_atomically(
        &layout::job_record_path(results, JOB),
        &serde_json::to_vec(&record).unwrap(),
        false,
    )
    .unwrap();
    let status = status(results, None, false).unwrap();
    assert_eq!(status.job.as_deref(), Some(JOB));
    assert_eq!(
        status.note.as_deref(),
        Some("Slurm not asked (--no-scheduler)")
    );
    let states: Vec<TaskState> = status.tasks.iter().map(|t| t.state).collect();
    assert_eq!(states, [TaskState::Done, TaskState::Running]);
    assert_eq!(status.tasks[1].runs[0].trials, 2);
}

#[test]
fn a_directory_without_jobs_lists_its_nodes_from_their_logs() {
    let dir = tempfile::tempdir().unwrap();
    log(
        dir.path(),
        "gpu01",
        12,
        Some(finished(RunStatus::Completed, None)),
    );
    log(
        dir.path(),
        "gpu02",
        1,
        Some(finished(RunStatus::Interrupted, Some("interrupted"))),
    );
    let status = status(dir.path(), None, true).unwrap();
    assert_eq!(status.job, None);
    let rows: Vec<(Option<&str>, TaskState)> = status
        .tasks
        .iter()
        .map(|t| (t.node.as_deref(), t.state))
        .collect();
    assert_eq!(
        rows,
        [
            (Some("gpu01"), TaskState::Done),
            (Some("gpu02"), TaskState::Failed)
        ]
    );
    assert!(super::status(&dir.path().join("nope"), None, false)
        .unwrap_err()
        .is_bad_input());
}
