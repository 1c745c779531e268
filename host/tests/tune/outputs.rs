//! Results are written whole or not at all: a run whose outputs cannot be written stays
//! resumable and `ozone report LOG` writes every file again; a full disk never
//! truncates what an earlier run wrote; a run that finds nothing keeps what an earlier
//! one found.

use std::path::{Path, PathBuf};

use std::time::Duration;

use crate::common::cli::{ozone, INTERNAL, OK, RUN_ENDS};
use crate::common::{self, log_events, the_log};
use crate::{one_trial_config, small_model, FullDisk};

/// Every output file under `out`, by path relative to it, with its bytes (the log too).
fn output_files(out: &Path) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
    let mut files = std::collections::BTreeMap::new();
    let mut folders = vec![out.to_path_buf()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                folders.push(path);
            } else {
                let bytes = std::fs::read(&path).unwrap();
                files.insert(path.strip_prefix(out).unwrap().to_path_buf(), bytes);
            }
        }
    }
    files
}

fn kinds(files: &std::collections::BTreeMap<PathBuf, Vec<u8>>) -> Vec<String> {
    let mut kinds: Vec<String> = files
        .keys()
        .map(|p| {
            let folder = p
                .parent()
                .map(|f| f.display().to_string())
                .unwrap_or_default();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let kind = name
                .rsplit_once('.')
                .map_or(name.clone(), |(_, ext)| ext.to_string());
            let kind = if name.ends_with(".llama-server.sh") {
                "llama-server.sh".to_string()
            } else {
                kind
            };
            format!("{folder}/*.{kind}")
        })
        .collect();
    kinds.sort();
    kinds.dedup();
    kinds
}

const ALL_OUTPUTS: [&str; 7] = [
    "defaults/*.yaml",
    "deploy/*.Modelfile",
    "deploy/*.llama-server.sh",
    "env/*.json",
    "logs/*.jsonl",
    "report/*.html",
    "summaries/*.json",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outputs_that_cannot_be_written_leave_the_run_resumable_and_report_rebuilds_them_all() {
    let _serial = common::serial().await;
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let model = cwd.join("m.gguf");
    small_model(&model);
    let config = one_trial_config(cwd);
    // `report` is a file: the HTML report, written last, cannot be.
    std::fs::create_dir_all(cwd.join("ozone_results")).unwrap();
    std::fs::write(cwd.join("ozone_results/report"), "in the way").unwrap();
    let args = [
        "tune",
        model.to_str().unwrap(),
        "--config",
        &config,
        "--skip-concurrency",
    ];
    let out = ozone(cwd, &args).within(RUN_ENDS).run();
    out.code(INTERNAL);
    let errors = out.errors();
    assert_eq!(errors.len(), 1, "{}", out.stderr);
    let log = the_log(cwd).expect("the log");
    let relative = log.strip_prefix(cwd).unwrap().display().to_string();
    assert!(
        errors[0].contains("ozone_results/report")
            && errors[0].contains(&format!("ozone report {relative}")),
        "{}",
        errors[0]
    );
    let events = log_events(&log);
    assert!(
        !events
            .iter()
            .any(|e| e["event"] == "run_finished" && e["status"] == "completed"),
        "a run whose outputs are missing is not completed"
    );

    // Out of the way, `ozone report` writes every file from the log alone.
    std::fs::remove_file(cwd.join("ozone_results/report")).unwrap();
    let report = ozone(cwd, &["report", &relative])
        .within(Duration::from_secs(60))
        .run();
    report.code(OK);
    let files = output_files(&cwd.join("ozone_results"));
    assert_eq!(kinds(&files), ALL_OUTPUTS, "{:?}", files.keys());

    // And `--resume` finishes the run without measuring anything again.
    let trials_before = events.iter().filter(|e| e["event"] == "trial").count();
    let resumed = ozone(cwd, &["tune", "--resume", &relative])
        .within(RUN_ENDS)
        .run();
    resumed.code(OK);
    let events = log_events(&log);
    assert_eq!(
        events.iter().filter(|e| e["event"] == "trial").count(),
        trials_before
    );
    let last = events.last().unwrap();
    assert_eq!(
        (&last["event"], &last["status"]),
        (&"run_finished".into(), &"completed".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_never_truncates_earlier_outputs() {
    let _serial = common::serial().await;
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let out_dir = cwd.join("ozone_results");
    let disk = FullDisk::mount(&out_dir);
    let model = cwd.join("m.gguf");
    small_model(&model);
    let config = one_trial_config(cwd);
    let out = ozone(
        cwd,
        &[
            "tune",
            model.to_str().unwrap(),
            "--config",
            &config,
            "--skip-concurrency",
        ],
    )
    .within(RUN_ENDS)
    .run();
    out.code(OK);
    let before = output_files(&out_dir);
    assert_eq!(kinds(&before), ALL_OUTPUTS);
    let log = the_log(cwd).unwrap();

    // Every file is written again, into a disk with no room.
    let mut report = ozone(cwd, &["report", log.to_str().unwrap()]).within(Duration::from_secs(60));
    disk.fill(report.command());
    let failed = report.run();
    disk.empty();
    failed.code(INTERNAL);
    assert_eq!(failed.errors().len(), 1, "{}", failed.stderr);
    let mut after = output_files(&out_dir);
    after.remove(Path::new("filler"));
    assert_eq!(
        after.keys().collect::<Vec<_>>(),
        before.keys().collect::<Vec<_>>(),
        "no file lost, no temporary file left"
    );
    for (path, bytes) in &before {
        assert!(after[path] == *bytes, "{} changed", path.display());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_finds_nothing_stable_keeps_what_an_earlier_run_found() {
    let _serial = common::serial().await;
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let model = cwd.join("m.gguf");
    small_model(&model);
    let config = cwd.join("remember.yaml");
    std::fs::write(
        &config,
        std::fs::read_to_string(one_trial_config(cwd))
            .unwrap()
            .replace("store_results: false", "store_results: true")
            .replace(
                "reuse_learned_configs: false",
                "reuse_learned_configs: true",
            ),
    )
    .unwrap();
    let tune = |extra: &[&str]| {
        let mut args = vec![
            "tune",
            model.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
            "--skip-concurrency",
        ];
        args.extend(extra);
        ozone(cwd, &args).within(RUN_ENDS).run()
    };
    // 15: a minimum above the trained context is clamped, and the run says so.
    let first = tune(&["--min-context", "4096"]);
    first.code(OK);
    assert!(
        first.stderr.contains(
            "note: min_context 4096 is above the model's trained context 2048: the search \
             stays at or below 2048"
        ),
        "{}",
        first.stderr
    );
    let kept = |files: &std::collections::BTreeMap<PathBuf, Vec<u8>>| {
        files
            .iter()
            .filter(|(p, _)| p.starts_with("defaults") || p.starts_with("deploy"))
            .map(|(p, b)| (p.clone(), b.clone()))
            .collect::<Vec<_>>()
    };
    let good = kept(&output_files(&cwd.join("ozone_results")));
    assert_eq!(good.len(), 3, "defaults, Modelfile, script");

    // A budget no server fits in: every trial breaches, nothing is stable.
    let second = tune(&["--memory-budget-mb", "1"]);
    second.code(INTERNAL);
    assert!(
        second.stderr.contains(
            "nothing was stable: the earlier defaults, deploy files and warm-start limit are kept"
        ),
        "{}",
        second.stderr
    );
    assert_eq!(kept(&output_files(&cwd.join("ozone_results"))), good);

    // The warm start still knows the earlier limit.
    let third = tune(&[]);
    third.code(OK);
    assert!(
        third
            .stderr
            .contains("warm start: an earlier run on this machine found context 2048"),
        "{}",
        third.stderr
    );
}
