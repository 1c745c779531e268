//! `ozone fleet` on a real single-node Slurm cluster: `.ci/slurm` installs Debian's
//! slurm-wlm and munge and starts munged, slurmctld and slurmd (idempotent); then a real
//! tune of the generated model runs as a Slurm job array task, `fleet status` follows it
//! to done, a second node's results are made by a real warm-started tune, and `fleet
//! report` compares both.
//!
//! Skips, saying why, only where Slurm cannot run: not root, or no apt-get to install
//! it (`.ci/slurm` exits 77). In CI (root, Debian) it runs. Its figures (cluster start,
//! submission to done, report) are printed: `cargo test -p ozone --test fleet slurm -- --nocapture`.

use crate::common::{
    self,
    cli::{self, Outcome},
};
use crate::quiet_machine_yaml;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use ozone::backend::gguf::write_tiny_model;
use serde_json::Value;

/// Bounds the wait for the tune to finish under Slurm (it takes about a minute).
const JOB_DEADLINE: Duration = Duration::from_secs(600);

/// Small and quick: a server budget [`HEADROOM_MB`] over the server's footprint sets the
/// limit (near 7.4k tokens on the wide generated model), the search starts just below it
/// with two bisections, two samples a trial, no batch or concurrency phase; variance and
/// machine-wide thresholds off (on a shared 2-core machine they measure the neighbours).
/// The budget is measured once and written down, so that both nodes' tunes share it (a
/// warm start counts only results of the same memory limits).
const CONFIG: &str = concat!(
    "\
search_strategy:
  initial_context_probe: 4096
  max_binary_iterations: 2
  batch_adaptation:
    enabled: false
testing:
  statistical_validation:
    min_samples_per_config: 2
    variance_tolerance: 10.0
",
    quiet_machine_yaml!(),
    "ozone:
  n_predict: 8
",
);
/// Headroom over the footprint at 2048 tokens: the wide model's limit near 7.4k tokens.
const HEADROOM_MB: u64 = 23;

/// Starts the cluster; `None` (with the reason printed) where Slurm cannot run.
fn cluster() -> Option<Duration> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.ci/slurm");
    let started = Instant::now();
    let out = Command::new("bash")
        .arg(&script)
        .output()
        .expect("run .ci/slurm");
    let stderr = String::from_utf8_lossy(&out.stderr);
    match out.status.code() {
        Some(0) => {
            eprint!("{stderr}");
            Some(started.elapsed())
        }
        Some(77) => {
            eprintln!("SKIPPED fleet_slurm: Slurm cannot run on this machine: {stderr}");
            None
        }
        _ => panic!(".ci/slurm failed ({:?}):\n{stderr}", out.status),
    }
}

/// `ozone args` with `home` as its home (arguments first, as these tests read).
fn ozone(args: &[&str], home: &Path) -> Outcome {
    cli::ozone(home, args).run()
}

/// `out`'s stdout, once it exited 0 (`what` ran).
fn ok(out: &Outcome, what: &str) -> String {
    eprintln!("{what}: exit {:?}", out.code);
    out.ok().to_string()
}

fn hostname() -> String {
    let out = Command::new("hostname")
        .arg("-s")
        .output()
        .expect("hostname");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Polls `fleet status --json` until every task has ended; returns the last status and
/// the states seen on the way.
fn follow(results: &str, home: &Path) -> (Value, Vec<String>) {
    let deadline = Instant::now() + JOB_DEADLINE;
    let mut seen = Vec::new();
    loop {
        let out = ozone(&["fleet", "status", "--results", results, "--json"], home);
        let status: Value = serde_json::from_str(&ok(&out, "fleet status")).expect("JSON");
        let states: Vec<String> = status["tasks"]
            .as_array()
            .expect("tasks")
            .iter()
            .map(|t| {
                format!(
                    "{}: {}",
                    t["state"].as_str().unwrap_or("?"),
                    t["detail"].as_str().unwrap_or("")
                )
            })
            .collect();
        if seen.last() != Some(&states.join(" | ")) {
            seen.push(states.join(" | "));
        }
        let ended = status["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| matches!(t["state"].as_str(), Some("done" | "failed" | "skipped")));
        if ended {
            return (status, seen);
        }
        assert!(
            Instant::now() < deadline,
            "the job did not end within {JOB_DEADLINE:?}; states seen: {seen:#?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn log_of(node_dir: &Path) -> Vec<Value> {
    let logs = node_dir.join("logs");
    let log = std::fs::read_dir(&logs)
        .unwrap_or_else(|e| panic!("{}: {e}", logs.display()))
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .expect("a log");
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn a_real_slurm_job_tunes_the_node_and_the_report_compares_two() {
    let Some(cluster_up) = cluster() else {
        return;
    };
    let host = hostname();
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let model = home.join("tiny-16k.gguf");
    write_tiny_model(&model, &common::wide_model_spec(16384)).unwrap();
    let config = home.join("ozone.yaml");
    let budget = common::budget_over_footprint(
        &common::cli_spec(&model),
        &common::cli_first_trial(),
        HEADROOM_MB,
    );
    std::fs::write(
        &config,
        format!("{CONFIG}  process_memory_budget_mb: {budget}\n"),
    )
    .unwrap();
    let llama_server = common::llama_server();
    let (model, config, llama_server) = (
        model.to_str().unwrap().to_string(),
        config.to_str().unwrap().to_string(),
        llama_server.to_str().unwrap().to_string(),
    );

    // Refused on the real cluster: a partition it does not have.
    let results_dir: PathBuf = home.join("results");
    let results = results_dir.to_str().unwrap().to_string();
    let out = ozone(
        &[
            "fleet",
            "submit",
            "--partition",
            "nosuch",
            "--nodes",
            "1",
            "--results",
            &results,
            &model,
        ],
        home,
    );
    out.code(cli::BAD_INPUT)
        .says("--partition nosuch: no such partition; this cluster has: debug");

    // Two tasks, one node: the second finds the node taken and leaves it alone.
    let guard_dir = home.join("guard");
    let guard = guard_dir.to_str().unwrap();
    ok(
        &ozone(
            &[
                "fleet",
                "submit",
                "--nodes",
                "2",
                "--ozone",
                "/bin/true",
                "--results",
                guard,
                &model,
            ],
            home,
        ),
        "fleet submit --nodes 2",
    );
    let (status, _) = follow(guard, home);
    let states: Vec<&str> = status["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["done", "skipped"], "{status:#}");
    assert_eq!(
        status["tasks"][1]["detail"],
        format!("{host} was taken by task 0 of this job")
    );

    // The real tune, pinned to this node.
    let submitted = Instant::now();
    let out = ozone(
        &[
            "fleet",
            "submit",
            "--nodelist",
            &host,
            "--partition",
            "debug",
            "--results",
            &results,
            &model,
            "--",
            "--config",
            &config,
            "--llama-server",
            &llama_server,
            "--skip-concurrency",
        ],
        home,
    );
    let stdout = ok(&out, "fleet submit");
    assert!(stdout.starts_with("submitted job "), "{stdout}");
    let (status, seen) = follow(&results, home);
    let done = submitted.elapsed();
    let task = &status["tasks"][0];
    assert_eq!(task["state"], "done", "{status:#}\nseen: {seen:#?}");
    assert_eq!(task["node"], host.as_str());
    let limit = task["runs"][0]["max_context"].as_u64().expect("a limit");
    assert!(task["detail"]
        .as_str()
        .unwrap()
        .starts_with(&format!("tiny-16k: max context {limit}")));
    assert!(
        seen.iter()
            .any(|s| s.contains("running: tiny-16k: context phase, trial")),
        "status showed the tune's phase and trial while it ran: {seen:#?}"
    );

    // A second node with the same hardware: a real tune warm-started from the first.
    let twin_started = Instant::now();
    let twin = results_dir.join(format!("{host}-twin"));
    ok(
        &ozone(
            &[
                "tune",
                &model,
                "--config",
                &config,
                "--llama-server",
                &llama_server,
                "--skip-concurrency",
                "--warm-start-from",
                &results,
                "-o",
                twin.to_str().unwrap(),
            ],
            home,
        ),
        "warm-started tune",
    );
    let twin_time = twin_started.elapsed();
    let events = log_of(&twin);
    assert_eq!(events[0]["parameters"]["hint"].as_u64(), Some(limit));
    let context_trials: Vec<u64> = events
        .iter()
        .filter(|e| e["event"] == "trial" && e["phase"] == "context")
        .map(|e| e["config"]["ctx"].as_u64().unwrap())
        .collect();
    assert_eq!(
        context_trials[0], limit,
        "the first probe is the other node's limit"
    );

    // The report over both.
    let report_started = Instant::now();
    let out = ozone(&["fleet", "report", "--results", &results, "--json"], home);
    let report: Value = serde_json::from_str(&ok(&out, "fleet report --json")).unwrap();
    let report_time = report_started.elapsed();
    let nodes: Vec<&str> = report["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["node"].as_str().unwrap())
        .collect();
    assert_eq!(nodes, [host.clone(), format!("{host}-twin")]);
    assert_eq!(report["groups"].as_array().unwrap().len(), 1, "{report:#}");
    assert_eq!(report["groups"][0]["nodes"].as_array().unwrap().len(), 2);
    assert_eq!(report["runs"][0]["limits"]["max_context"]["value"], limit);
    let table = ok(
        &ozone(&["fleet", "report", "--results", &results], home),
        "fleet report",
    );
    assert!(table.contains(&format!("{host}-twin")), "{table}");
    let html = std::fs::read_to_string(results_dir.join("fleet-report.html")).unwrap();
    assert!(html.contains("<svg") && !html.contains("<script"));

    eprintln!(
        "fleet_slurm figures: cluster up {:.1} s; submit → done {:.1} s (limit {limit}); \
         warm-started twin tune {:.1} s, context trials {context_trials:?}; report {:.2} s; \
         flagged groups: {}",
        cluster_up.as_secs_f64(),
        done.as_secs_f64(),
        twin_time.as_secs_f64(),
        report_time.as_secs_f64(),
        report["groups"][0]["models"][0]["disagreements"]
            .as_array()
            .map_or(0, Vec::len)
    );
}
