//! `--resume`: one run at a time, the same model, the same settings, the llama-server
//! binary where it is now; a log from a newer Ozone is not guessed at.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common::cli::{ozone, Outcome, BAD_INPUT, INTERRUPTED, NO_SERVER, OK, RUN_ENDS};
use crate::common::{self, log_events, the_log, wait_until};
use crate::one_trial_config;

/// Starts a tune of several trials and stops it with Ctrl-C after its first one, with
/// the resume checks of `during` made while it still runs. Returns the log.
fn interrupted_run(dir: &Path, model: &Path, server: &Path, during: impl FnOnce(&Path)) -> PathBuf {
    let config = one_trial_config(dir);
    let child = ozone(
        dir,
        &[
            "tune",
            model.to_str().unwrap(),
            "--config",
            &config,
            "--llama-server",
            server.to_str().unwrap(),
            "--skip-concurrency",
        ],
    )
    .start();
    let one_trial = || {
        the_log(dir).is_some_and(|log| {
            std::fs::read_to_string(log).is_ok_and(|t| t.contains("\"event\":\"trial\""))
        })
    };
    wait_until("a first trial", RUN_ENDS, one_trial);
    let log = the_log(dir).unwrap();
    during(&log);
    child.signal(libc::SIGINT);
    let out = child.finish();
    out.code(INTERRUPTED);
    log
}

fn refused(out: &Outcome, says: &str) {
    out.code(BAD_INPUT);
    let errors = out.errors();
    assert_eq!(errors.len(), 1, "{}", out.stderr);
    assert!(errors[0].contains(says), "wanted {says:?} in {}", errors[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_takes_one_run_at_a_time_the_same_model_and_settings_and_a_moved_binary() {
    use std::os::unix::fs::PermissionsExt;
    let _serial = common::serial().await;
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let model = cwd.join("m.gguf");
    // Trained for 8192: the search takes several steps from 2048.
    let spec = ozone::backend::gguf::TinyModelSpec {
        trained_context: 8192,
        ..Default::default()
    };
    ozone::backend::gguf::write_tiny_model(&model, &spec).unwrap();
    let server = cwd.join("bin/llama-server");
    std::fs::create_dir_all(server.parent().unwrap()).unwrap();
    std::fs::write(
        &server,
        format!(
            "#!/bin/sh\nexec '{}' \"$@\"\n",
            common::llama_server().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&server, std::fs::Permissions::from_mode(0o755)).unwrap();

    // 7: the log of a live run is taken.
    let log = interrupted_run(cwd, &model, &server, |log| {
        let second = ozone(cwd, &["tune", "--resume", log.to_str().unwrap()])
            .within(Duration::from_secs(30))
            .run();
        refused(&second, "is in use by another ozone");
    });
    let log_arg = log.to_str().unwrap();
    let resume = |extra: &[&str]| {
        let mut args = vec!["tune", "--resume", log_arg];
        args.extend(extra);
        ozone(cwd, &args).within(RUN_ENDS).run()
    };

    // 9: settings that would change what the log measured are refused, by name.
    for flags in [
        &["--samples", "3"][..],
        &["--memory-budget-mb", "64"],
        &["--output-dir", "elsewhere"],
        &["--preset", "max_context"],
    ] {
        refused(
            &resume(flags),
            &format!("{} cannot change on --resume", flags[0]),
        );
    }

    // 15: a log from a newer Ozone is not guessed at.
    let newer = cwd.join("newer.jsonl");
    let text = std::fs::read_to_string(&log).unwrap();
    std::fs::write(
        &newer,
        text.replacen("\"log_version\":1", "\"log_version\":99", 1),
    )
    .unwrap();
    for command in [
        &["report", newer.to_str().unwrap()][..],
        &["tune", "--resume", newer.to_str().unwrap()],
    ] {
        refused(
            &ozone(cwd, command).within(Duration::from_secs(30)).run(),
            "log version 99: written by a newer ozone (this one reads version 1)",
        );
    }

    // 8: a replaced model file is refused with both digests.
    let original = std::fs::read(&model).unwrap();
    let other = ozone::backend::gguf::TinyModelSpec {
        seed: 7,
        ..spec.clone()
    };
    ozone::backend::gguf::write_tiny_model(&model, &other).unwrap();
    let out = resume(&[]);
    refused(&out, "was replaced since the run started");
    assert_eq!(
        out.errors()[0].matches("sha256:").count(),
        2,
        "{}",
        out.stderr
    );
    std::fs::write(&model, &original).unwrap();

    // 9: a moved binary: the old path is named as the log's, never as a flag's...
    let moved = cwd.join("moved/llama-server");
    std::fs::create_dir_all(moved.parent().unwrap()).unwrap();
    std::fs::rename(&server, &moved).unwrap();
    let out = resume(&[]);
    out.code(NO_SERVER);
    let errors = out.errors();
    assert!(
        errors.len() == 1
            && errors[0].contains(&server.display().to_string())
            && errors[0].contains("--llama-server PATH")
            && !errors[0].contains("from --llama-server"),
        "{}",
        out.stderr
    );
    // ...and the new one is used.
    let before: Vec<_> = log_events(&log)
        .into_iter()
        .filter(|e| e["event"] == "trial")
        .map(|t| (t["config"].clone(), t["stage"].clone()))
        .collect();
    let out = resume(&["--llama-server", moved.to_str().unwrap()]);
    out.code(OK);
    let after: Vec<_> = log_events(&log)
        .into_iter()
        .filter(|e| e["event"] == "trial")
        .map(|t| (t["config"].clone(), t["stage"].clone()))
        .collect();
    assert_eq!(after[..before.len()], before[..]);
    for (i, c) in after.iter().enumerate() {
        // A context screened and then verified is two stages of one configuration.
        assert!(!after[..i].contains(c), "trial {c:?} was measured twice");
    }
    common::assert_no_servers_left_for(&model);
}
