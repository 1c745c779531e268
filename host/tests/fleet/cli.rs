//! `ozone fleet` without a cluster: the dry run, the refusals that need no Slurm, the
//! batch script run by a real bash with hostile paths, and the Kubernetes manifest.
//! (The real Slurm run is `slurm.rs`.)

use std::path::PathBuf;
use std::process::{Command, Output};

use crate::common::cli::{self, Outcome};

const OZONE: &str = env!("CARGO_BIN_EXE_ozone");

use k8s_openapi::api::batch::v1::Job;

/// `ozone args` in a folder of its own.
fn ozone(args: &[&str]) -> Outcome {
    let dir = tempfile::tempdir().expect("temp dir");
    cli::ozone(dir.path(), args).run()
}

fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn dry_run_prints_the_script_and_how_to_submit_it_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let results = dir.path().join("results");
    let results_arg = results.display().to_string();
    let out = ozone(&[
        "fleet",
        "submit",
        "--dry-run",
        "--nodes",
        "3",
        "--partition",
        "gpu",
        "--gres",
        "gpu:1",
        "--results",
        &results_arg,
        "/models/m.gguf",
        "--",
        "--skip-concurrency",
    ]);
    let stdout = out.ok();
    assert!(stdout.starts_with("#!/bin/bash\n"), "{stdout}");
    for line in [
        "#SBATCH --array=0-2\n",
        "#SBATCH --exclusive\n",
        "#SBATCH --partition=gpu\n",
        "#SBATCH --gres=gpu:1\n",
    ] {
        assert!(stdout.contains(line), "{line} in\n{stdout}");
    }
    assert!(
        stdout.contains(&format!("{OZONE} tune --skip-concurrency \\\n")),
        "{stdout}"
    );
    assert!(stdout.contains("# Not submitted (--dry-run)"), "{stdout}");
    assert!(
        stdout.contains(&format!("\ncd {results_arg} && sbatch .fleet/submit-")),
        "{stdout}"
    );
    assert!(!results.exists(), "a dry run writes nothing");
}

#[test]
fn without_sbatch_submit_says_what_is_missing_and_exits_3() {
    let dir = tempfile::tempdir().unwrap();
    let empty_path = dir.path().join("bin");
    std::fs::create_dir(&empty_path).unwrap();
    let results = dir.path().join("results").display().to_string();
    let out = cli::ozone(
        dir.path(),
        &[
            "fleet",
            "submit",
            "--nodes",
            "2",
            "--results",
            &results,
            "/models/m.gguf",
        ],
    )
    .env("PATH", &empty_path)
    .run();
    out.code(cli::NO_SERVER);
    let stderr = &out.stderr;
    let errors: Vec<&str> = stderr.lines().filter(|l| !l.contains(" WARN ")).collect();
    assert_eq!(errors.len(), 1, "one clear line: {stderr}");
    assert!(
        errors[0].starts_with(
            "error: sbatch not found on PATH: `ozone fleet submit` needs Slurm's client commands"
        ),
        "{stderr}"
    );
    assert!(errors[0].contains("--dry-run"), "{stderr}");
}

#[test]
fn an_unwritable_results_dir_is_refused_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    // Under a regular file: no one, root included, can create it.
    let file = dir.path().join("plain-file");
    std::fs::write(&file, "").unwrap();
    let results = file.join("results").display().to_string();
    let out = ozone(&[
        "fleet",
        "submit",
        "--nodes",
        "2",
        "--results",
        &results,
        "/models/m.gguf",
    ]);
    let stderr = &out.stderr;
    out.code(cli::BAD_INPUT);
    assert!(
        stderr.contains(&format!("results directory {results}")),
        "{stderr}"
    );
    assert!(
        stderr.contains("on a filesystem every node sees"),
        "{stderr}"
    );
}

#[test]
fn tune_flags_are_checked_before_anything_is_submitted() {
    let dir = tempfile::tempdir().unwrap();
    let results = dir.path().display().to_string();
    for (flags, expected) in [
        (
            vec!["--no-such-flag"],
            "unexpected argument '--no-such-flag'",
        ),
        (vec!["-o", "/tmp/x"], "tune flag -o: the fleet sets it"),
        (vec!["--samples", "many"], "invalid value 'many'"),
    ] {
        let mut args = vec![
            "fleet",
            "submit",
            "--nodes",
            "1",
            "--results",
            &results,
            "m.gguf",
            "--",
        ];
        args.extend(flags);
        let out = ozone(&args);
        let stderr = &out.stderr;
        out.code(cli::BAD_INPUT);
        assert!(stderr.contains(expected), "{expected} in {stderr}");
    }
    let out = ozone(&[
        "fleet",
        "submit",
        "--nodes",
        "1",
        "--partition",
        "a b",
        "--dry-run",
        "--results",
        &results,
        "m.gguf",
    ]);
    out.code(cli::BAD_INPUT).says("--partition \"a b\"");
}

/// Paths with spaces, quotes, `$()`, backticks and a newline, through the script a real
/// bash runs as a Slurm task would: every value arrives intact, nothing is executed.
#[test]
fn hostile_paths_reach_ozone_intact_and_run_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let canary = dir.path().join("INJECTED");
    let nasty = format!(
        "it's a \"dir\" $(touch {c}) `touch {c}`\n;touch {c}",
        c = canary.display()
    );
    let base = dir.path().join(&nasty);
    std::fs::create_dir_all(&base).unwrap();
    let results = base.join("results");
    // The binary, a config and a model at hostile paths too.
    let binary = base.join("oz one");
    std::os::unix::fs::symlink(OZONE, &binary).unwrap();
    let config = base.join("conf $(x).yaml");
    std::fs::write(&config, "ozone:\n  min_context: 512\n").unwrap();
    let model: PathBuf = base.join("no such 'model'.gguf");

    let out = ozone(&[
        "fleet",
        "submit",
        "--dry-run",
        "--nodes",
        "1",
        "--ozone",
        binary.to_str().unwrap(),
        "--results",
        results.to_str().unwrap(),
        model.to_str().unwrap(),
        "--",
        "--config",
        config.to_str().unwrap(),
    ]);
    let stdout = out.ok();
    let script = stdout
        .split("\n# Not submitted (--dry-run)")
        .next()
        .unwrap()
        .to_string();
    std::fs::create_dir_all(&results).unwrap();
    let script_path = dir.path().join("task.sh");
    std::fs::write(&script_path, &script).unwrap();

    // As slurmd would run task 0 of job 7 on node n1, from the submission folder.
    let run = Command::new("bash")
        .arg(&script_path)
        .current_dir(&results)
        .env("SLURMD_NODENAME", "n1")
        .env("SLURM_ARRAY_JOB_ID", "7")
        .env("SLURM_ARRAY_TASK_ID", "0")
        .output()
        .unwrap();
    let (stdout, stderr) = text(&run);
    assert!(
        !canary.exists(),
        "the script executed part of a path:\n{script}"
    );
    // The real ozone read the config at its exact path (else: "config file … not
    // found") and names the exact model path.
    assert_eq!(run.status.code(), Some(2), "{stdout}\n{stderr}");
    assert!(
        stderr.contains(&format!("model file {} does not exist", model.display())),
        "{stderr}"
    );
    let claim = results.join("n1/.fleet/job-7");
    assert_eq!(std::fs::read_to_string(claim.join("task")).unwrap(), "0\n");
    assert_eq!(std::fs::read_to_string(claim.join("exit")).unwrap(), "2\n");
    assert!(
        stdout.contains(&format!(
            "tunes on n1 into {}",
            results.join("n1").display()
        )),
        "{stdout}"
    );
}

#[test]
fn the_manifest_is_a_batch_v1_indexed_job() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("job.yaml");
    let out = ozone(&[
        "fleet",
        "manifest",
        "--k8s",
        "--nodelist",
        "gpu-a1,gpu-a2",
        "--image",
        "registry.example/ozone:0.1",
        "--results-claim",
        "ozone-results",
        "--gpus",
        "2",
        "--shared-warm-start",
        "-o",
        path.to_str().unwrap(),
        "/results/models/m.gguf",
        "--",
        "--skip-concurrency",
    ]);
    out.ok();
    let yaml = std::fs::read_to_string(&path).unwrap();
    let job: Job = serde_yaml::from_str(&yaml).expect("parses as a batch/v1 Job");
    let spec = job.spec.unwrap();
    assert_eq!(spec.completion_mode.as_deref(), Some("Indexed"));
    assert_eq!(spec.completions, Some(2));
    let pod = spec.template.spec.unwrap();
    let node_terms = pod
        .affinity
        .unwrap()
        .node_affinity
        .unwrap()
        .required_during_scheduling_ignored_during_execution
        .unwrap()
        .node_selector_terms;
    let requirement = &node_terms[0].match_expressions.as_ref().unwrap()[0];
    assert_eq!(requirement.key, "kubernetes.io/hostname");
    assert_eq!(requirement.values.as_deref().unwrap(), ["gpu-a1", "gpu-a2"]);
    let container = &pod.containers[0];
    assert_eq!(
        container
            .resources
            .as_ref()
            .unwrap()
            .limits
            .as_ref()
            .unwrap()["nvidia.com/gpu"]
            .0,
        "2"
    );
    let args = container.args.as_deref().unwrap();
    assert_eq!(&args[..2], ["tune", "--skip-concurrency"]);
    assert!(args
        .windows(2)
        .any(|w| w == ["--output-dir", "/results/$(NODE_NAME)"]));
    assert!(args
        .windows(2)
        .any(|w| w == ["--warm-start-from", "/results"]));
    assert_eq!(
        pod.volumes.unwrap()[0]
            .persistent_volume_claim
            .as_ref()
            .unwrap()
            .claim_name,
        "ozone-results"
    );

    let bad = ozone(&[
        "fleet",
        "manifest",
        "--k8s",
        "--nodelist",
        "a",
        "--image",
        "i",
        "--results-claim",
        "Bad_Claim",
        "m",
    ]);
    bad.code(cli::BAD_INPUT).says("--results-claim");
}

#[test]
fn status_away_from_the_cluster_reads_the_results_directory() {
    let dir = tempfile::tempdir().unwrap();
    let results = dir.path().join("results");
    let claim = results.join("gpu01/.fleet/job-12");
    std::fs::create_dir_all(&claim).unwrap();
    std::fs::write(claim.join("task"), "0\n").unwrap();
    std::fs::write(claim.join("exit"), "0\n").unwrap();
    std::fs::create_dir_all(results.join(".fleet")).unwrap();
    std::fs::write(
        results.join(".fleet/job-12.json"),
        r#"{"job_id":"12","scheduler":"slurm","submitted_at":"2026-12-01T10:00:00Z","tasks":1,"nodes":[],"models":["m.gguf"],"script":"/r/.fleet/submit.sh"}"#,
    )
    .unwrap();
    let empty_path = dir.path().join("bin");
    std::fs::create_dir(&empty_path).unwrap();
    let out = cli::ozone(
        dir.path(),
        &["fleet", "status", "--results", results.to_str().unwrap()],
    )
    .env("PATH", &empty_path)
    .run();
    let stdout = out.ok();
    assert!(stdout.starts_with("job 12: 1 task(s) — 1 done"), "{stdout}");
    assert!(stdout.contains("note: scontrol not found here"), "{stdout}");
    assert!(stdout.contains("0     gpu01  done"), "{stdout}");
}
