//! A tune stops at once, whatever it waits on: Ctrl-C and SIGTERM while it waits for
//! the model's facts or a stream that never ends a line, a server that drips its
//! answers, an endless stream (bounded memory and time). Against the hostile fake
//! server (`common::hostile`); every run is bounded by the harness's deadline.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::cli::{ozone, Outcome, INTERNAL, INTERRUPTED, NO_SERVER, RUN_ENDS, TERMINATED};
use crate::common::hostile::{Behaviour, HostileServer};
use crate::common::{log_events, quick_config, the_log};
use crate::models_json;

#[test]
fn a_tune_against_a_server_that_drips_ends_at_the_deadline_with_exit_3() {
    let dir = tempfile::tempdir().unwrap();
    let server = HostileServer::always(Behaviour::Drip);
    let out = ozone(
        dir.path(),
        &[
            "tune",
            "m",
            "--backend",
            "openai",
            "--base-url",
            &server.url,
        ],
    )
    .within(Duration::from_secs(90))
    .run();
    out.code(NO_SERVER)
        .error("/v1/models did not answer within 30 s");
    eprintln!("a dripping /v1/models ended the tune in {:?}", out.took);
}

/// Starts a tune against `server`, sends `sig` once `ready` says so, and returns how
/// the run ended and how long after the signal.
fn interrupt_tune(
    dir: &Path,
    server: &HostileServer,
    sig: i32,
    ready: impl Fn(&Path) -> bool,
) -> (Outcome, Duration) {
    let config = quick_config(dir);
    let child = ozone(
        dir,
        &[
            "tune",
            "m",
            "--backend",
            "openai",
            "--base-url",
            &server.url,
            "--config",
            &config,
        ],
    )
    .start();
    crate::common::wait_until("the tune got ready", RUN_ENDS, || ready(dir));
    child.signal(sig);
    let signalled = Instant::now();
    let out = child.finish();
    (out, signalled.elapsed())
}

#[test]
fn ctrl_c_and_sigterm_stop_a_tune_waiting_for_model_facts() {
    for (sig, code) in [(libc::SIGINT, INTERRUPTED), (libc::SIGTERM, TERMINATED)] {
        let dir = tempfile::tempdir().unwrap();
        let server = HostileServer::always(Behaviour::Silent);
        // Past start-up: the probe and the request take well under 2 s to begin.
        let begun = Instant::now();
        let (out, after) = interrupt_tune(dir.path(), &server, sig, |_| {
            begun.elapsed() > Duration::from_secs(2)
        });
        out.code(code);
        assert!(
            after < Duration::from_secs(3),
            "exit {after:?} after signal {sig}"
        );
        assert!(
            out.stderr.contains("interrupted before the first trial"),
            "{}",
            out.stderr
        );
        eprintln!("signal {sig} while waiting for /v1/models: exit {code} after {after:?}");
    }
}

#[test]
fn ctrl_c_and_sigterm_stop_a_trial_whose_stream_never_ends_a_line() {
    for (sig, code) in [(libc::SIGINT, INTERRUPTED), (libc::SIGTERM, TERMINATED)] {
        let dir = tempfile::tempdir().unwrap();
        let server = HostileServer::start(|_, path| match path {
            "/v1/models" => models_json(),
            _ => Behaviour::DrippingLine,
        });
        // Signalled once the run has its log (the trial has begun).
        let (out, after) = interrupt_tune(dir.path(), &server, sig, |d| the_log(d).is_some());
        out.code(code);
        assert!(
            after < Duration::from_secs(3),
            "exit {after:?} after signal {sig}"
        );
        let log = the_log(dir.path()).expect("the log");
        let relative = log
            .strip_prefix(dir.path())
            .expect("under the run's folder");
        assert!(
            out.stderr
                .contains(&format!("ozone tune --resume {}", relative.display())),
            "a resume hint: {}",
            out.stderr
        );
        let last = log_events(&log).pop().expect("a line");
        assert_eq!(
            (&last["event"], &last["status"]),
            (
                &serde_json::json!("run_finished"),
                &serde_json::json!("interrupted")
            )
        );
        eprintln!("signal {sig} during a dripping stream: exit {code} after {after:?}");
    }
}

#[test]
fn a_tune_against_an_endless_stream_stays_bounded_in_memory_and_time() {
    let dir = tempfile::tempdir().unwrap();
    let server = HostileServer::start(|_, path| match path {
        "/v1/models" => models_json(),
        _ => Behaviour::EndlessLine,
    });
    let config = quick_config(dir.path());
    let child = ozone(
        dir.path(),
        &[
            "tune",
            "m",
            "--backend",
            "openai",
            "--base-url",
            &server.url,
            "--config",
            &config,
        ],
    )
    .start();
    // Sample the peak while it runs (the figure is gone once it exits).
    let pid = child.pid();
    let watcher = std::thread::spawn(move || {
        let mut peak = 0;
        while let Some(rss) = peak_rss(pid) {
            peak = peak.max(rss);
            std::thread::sleep(Duration::from_millis(20));
        }
        peak
    });
    let out = child.finish();
    let peak = watcher.join().unwrap_or(0);
    out.code(INTERNAL).error("no configuration was stable");
    let log = the_log(dir.path()).expect("the log");
    let trials: Vec<_> = log_events(&log)
        .into_iter()
        .filter(|e| e["event"] == "trial")
        .collect();
    assert!(!trials.is_empty());
    for t in &trials {
        let message = t["failure"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("16 MiB"), "{message}");
    }
    assert!(
        peak < 256 << 20,
        "ozone peaked at {} MiB reading endless lines",
        peak >> 20
    );
    eprintln!(
        "endless stream: {} trials, ended in {:?}, peak RSS {} MiB",
        trials.len(),
        out.took,
        peak >> 20
    );
}

/// Peak resident memory of a live process, from `/proc/<pid>/status`, in bytes.
fn peak_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb << 10)
}
