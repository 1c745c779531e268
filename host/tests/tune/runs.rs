//! `ozone tune` end to end: the real binary, a real llama-server and the generated model,
//! under a server-memory budget so the context search has a real limit to find.

use std::io::{BufRead, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{self, cli::Outcome};
use crate::quiet_machine_yaml;
use ozone::backend::gguf::{write_tiny_model, TinyModelSpec};
use ozone::backend::llama_server::LlamaServerSpec;
use ozone::backend::BackendSpec;
use ozone::record::{Phase, Stage, TrialConfig, Verdict};
use ozone::trial::{TrialRunner, TrialSettings};
use serde_json::Value;

const GRANULARITY: u32 = 256;
/// Samples per trial: two keep the suite short; the limit is decided by memory.
const SAMPLES: u32 = 2;
const N_PREDICT: u32 = 8;

/// The server-memory budget of these runs: [`common::WIDE_HEADROOM_MB`] over the wide
/// model's footprint, measured once per test binary (every run and sweep shares it).
fn budget_mb() -> u64 {
    static BUDGET: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *BUDGET.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let model = dir.path().join("footprint.gguf");
        write_tiny_model(&model, &common::wide_model_spec(16384)).expect("write the model");
        common::budget_over_footprint(
            &common::cli_spec(&model),
            &common::cli_first_trial(),
            common::WIDE_HEADROOM_MB,
        )
    })
}

/// The effective settings of these runs. Variance tolerance is wide open and machine
/// RAM/CPU thresholds are off: on a shared 2-core CI machine those measure the
/// neighbours; the server's own memory budget is what sets the limit here.
fn config_yaml() -> String {
    format!(
        "testing:
  statistical_validation:
    min_samples_per_config: {SAMPLES}
    variance_tolerance: 10.0
  concurrency_progression:
    levels: [1, 2]
    stabilization_delay: 0
{quiet}ozone:
  n_predict: {N_PREDICT}
  process_memory_budget_mb: {budget}
",
        quiet = quiet_machine_yaml!(),
        budget = budget_mb(),
    )
}

struct Setup {
    dir: tempfile::TempDir,
    model: PathBuf,
    config: PathBuf,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().expect("temp dir");
    let model = dir.path().join("tiny-16k.gguf");
    write_tiny_model(&model, &common::wide_model_spec(16384)).expect("write the model");
    let config = dir.path().join("ozone.yaml");
    std::fs::write(&config, config_yaml()).expect("write the config");
    Setup { dir, model, config }
}

/// `ozone args` in `cwd` (the harness's runner, arguments first as these tests read).
fn ozone(args: &[&str], cwd: &Path) -> common::cli::Ozone {
    common::cli::ozone(cwd, args)
}

fn tune(s: &Setup, out: &str) -> Outcome {
    let model = s.model.display().to_string();
    let config = s.config.display().to_string();
    let output = ozone(
        &["tune", &model, "--config", &config, "-o", out, "--json"],
        s.dir.path(),
    )
    .run();
    assert!(
        output.code == Some(0),
        "ozone tune failed ({:?}):\n{}",
        output.code,
        output.stderr
    );
    output
}

fn events(log: &Path) -> Vec<Value> {
    std::fs::read_to_string(log)
        .expect("read the log")
        .lines()
        .map(|l| serde_json::from_str(l).expect("every log line is JSON"))
        .collect()
}

fn trials(events: &[Value]) -> Vec<&Value> {
    events.iter().filter(|e| e["event"] == "trial").collect()
}

fn only_file(dir: &Path) -> PathBuf {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .collect();
    assert_eq!(files.len(), 1, "expected one file in {}", dir.display());
    files.remove(0)
}

/// The limit found by measuring every 256-token step around `around`, with the same
/// settings as the tune: the largest stable context below the first failure.
async fn swept_limit(model: &Path, around: u32) -> u32 {
    let spec = BackendSpec::LlamaServer(LlamaServerSpec {
        binary: common::llama_server(),
        model: model.to_path_buf(),
        extra_args: Vec::new(),
    });
    let settings = TrialSettings {
        samples: SAMPLES,
        n_predict: N_PREDICT,
        variance_tolerance: 10.0,
        ..TrialSettings::default()
    };
    let mut runner = TrialRunner::new(spec, settings, common::sampler(Some(budget_mb())));
    let cancel = tokio_util::sync::CancellationToken::new();
    let start = around.saturating_sub(3 * GRANULARITY).max(2048);
    let mut limit = start - GRANULARITY;
    let mut ctx = start;
    let mut id = 1;
    while ctx <= 16384 {
        let config = TrialConfig {
            ctx,
            batch: 64,
            ubatch: 64,
            concurrency: 1,
            variant: Default::default(),
        };
        let run = runner
            .run(id, Phase::Context, Stage::Verify, &config, &cancel)
            .await;
        if run.record.verdict != Verdict::Stable {
            break;
        }
        limit = ctx;
        ctx += GRANULARITY;
        id += 1;
    }
    assert!(
        limit >= start,
        "the sweep's first step {start} already failed"
    );
    limit
}

fn http_health(port: u16) -> Option<u16> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(stream, "GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply).ok()?;
    reply.split_whitespace().nth(1)?.parse().ok()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The deploy script really starts a server that answers `/health`.
fn deploy_script_serves(script: &Path) {
    let port = free_port();
    let mut child = Command::new("sh")
        .arg(script)
        .args(["--port", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the deploy script");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut status = None;
    while Instant::now() < deadline {
        status = http_health(port);
        if status == Some(200) {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(
        status,
        Some(200),
        "{} never answered /health",
        script.display()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tune_finds_the_limit_a_sweep_finds_and_resumes_after_sigint() {
    let _serial = common::serial().await;
    let s = setup();

    // An uninterrupted run.
    let output = tune(&s, "full");
    let summary: Value = serde_json::from_str(&output.stdout).expect("--json prints JSON");
    let limit = summary["limits"]["max_context"]["value"]
        .as_u64()
        .expect("a stable context was found") as u32;
    assert_eq!(limit % GRANULARITY, 0);
    let trial_count = summary["trials"].as_array().map_or(0, Vec::len);
    // Context search, batch ladder (plus a batch that ran out of memory, tried again at
    // half its micro-batch: 0.3.0's batch scaler), two levels.
    assert!(trial_count <= 7 + 5 + 2, "{trial_count} trials");

    // Every output exists and parses.
    let out = s.dir.path().join("full");
    let log = only_file(&out.join("logs"));
    let log_events = events(&log);
    assert_eq!(log_events[0]["event"], "run_started");
    assert_eq!(
        log_events.last().map(|e| &e["event"]),
        Some(&Value::from("run_finished"))
    );
    let _: Value =
        serde_json::from_str(&std::fs::read_to_string(only_file(&out.join("summaries"))).unwrap())
            .unwrap();
    let _: Value =
        serde_json::from_str(&std::fs::read_to_string(only_file(&out.join("env"))).unwrap())
            .unwrap();
    let defaults: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(out.join("defaults/tiny-16k.yaml")).unwrap())
            .unwrap();
    assert!(defaults["presets"]["max_context"]["num_ctx"]
        .as_u64()
        .is_some());
    let html = std::fs::read_to_string(only_file(&out.join("report"))).unwrap();
    assert!(html.contains("<svg"), "the report has charts");
    let modelfile = std::fs::read_to_string(out.join("deploy/tiny-16k.Modelfile")).unwrap();
    let from = modelfile
        .lines()
        .find_map(|l| l.strip_prefix("FROM "))
        .expect("FROM line");
    assert!(
        Path::new(from).is_file(),
        "Modelfile FROM {from} is the model"
    );
    assert!(modelfile
        .lines()
        .any(|l| l.starts_with("PARAMETER num_ctx ")));
    deploy_script_serves(&out.join("deploy/tiny-16k.llama-server.sh"));

    // A plain sweep around the answer agrees within one step.
    let swept = swept_limit(&s.model, limit).await;
    assert!(
        swept.abs_diff(limit) <= GRANULARITY,
        "tune found {limit}, a plain sweep {swept}"
    );

    // Interrupt a second run after two finished trials, then resume it.
    let model = s.model.display().to_string();
    let config = s.config.display().to_string();
    let child = ozone(
        &[
            "tune", &model, "--config", &config, "-o", "resumed", "--json",
        ],
        s.dir.path(),
    )
    .start();
    let logs = s.dir.path().join("resumed/logs");
    let deadline = Instant::now() + Duration::from_secs(300);
    let log = loop {
        assert!(Instant::now() < deadline, "no two trials within 300 s");
        if let Ok(dir) = std::fs::read_dir(&logs) {
            if let Some(path) = dir.filter_map(Result::ok).map(|e| e.path()).next() {
                let finished = std::fs::File::open(&path)
                    .map(|f| {
                        std::io::BufReader::new(f)
                            .lines()
                            .filter(|l| l.as_ref().is_ok_and(|l| l.contains("\"event\":\"trial\"")))
                            .count()
                    })
                    .unwrap_or(0);
                if finished >= 2 {
                    break path;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    child.signal(libc::SIGINT);
    child.finish().code(common::cli::INTERRUPTED);
    common::assert_no_servers_left_for(&s.model);

    let before = events(&log);
    assert_eq!(before.last().unwrap()["event"], "run_finished");
    assert_eq!(before.last().unwrap()["status"], "interrupted");
    let log_arg = log.display().to_string();
    let resumed = ozone(&["tune", "--resume", &log_arg, "--json"], s.dir.path()).run();
    assert!(
        resumed.code == Some(0),
        "resume failed:\n{}",
        resumed.stderr.clone()
    );
    let after = events(&log);
    assert_eq!(
        &after[..before.len()],
        &before[..],
        "no line lost or rewritten"
    );
    // A context screened and then verified is two stages of one configuration.
    let configs: Vec<(&Value, &Value)> = trials(&after)
        .iter()
        .map(|t| (&t["config"], &t["stage"]))
        .collect();
    for (i, c) in configs.iter().enumerate() {
        assert!(!configs[..i].contains(c), "trial {c:?} was repeated");
    }
    let resumed_summary: Value = serde_json::from_str(&resumed.stdout).unwrap();
    let resumed_limit = resumed_summary["limits"]["max_context"]["value"]
        .as_u64()
        .unwrap() as u32;
    // Resume replays every finished trial; only the interrupted one is measured again,
    // and memory near the budget can land a step either way.
    assert!(
        resumed_limit.abs_diff(limit) <= GRANULARITY,
        "resumed run found {resumed_limit}, the uninterrupted one {limit}"
    );
    common::assert_no_servers_left_for(&s.model);
}

fn one_line_error(output: &Outcome) -> String {
    let stderr = output.stderr.clone();
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "one error line expected:\n{stderr}");
    errors[0].to_string()
}

#[test]
fn bad_input_gives_one_line_and_a_distinct_code() {
    let s = setup();
    let model = s.model.display().to_string();
    let cwd = s.dir.path();

    let yaml = cwd.join("broken.yaml");
    std::fs::write(
        &yaml,
        "testing:\n  statistical_validation:\n    min_samples_per_config: [5\n",
    )
    .unwrap();
    let out = ozone(&["tune", &model, "--config", yaml.to_str().unwrap()], cwd).run();
    assert_eq!(out.code, Some(2));
    let line = one_line_error(&out);
    assert!(line.contains("broken.yaml:"), "{line}");

    let out = ozone(&["tune", "/no/such/model.gguf"], cwd).run();
    assert_eq!(out.code, Some(2));
    assert!(one_line_error(&out).contains("/no/such/model.gguf"));

    let out = ozone(
        &[
            "tune",
            "qwen2.5:0.5b",
            "--backend",
            "ollama",
            "--ollama-url",
            "http://127.0.0.1:9",
        ],
        cwd,
    )
    .run();
    assert_eq!(out.code, Some(3), "{}", out.stderr.clone());
    assert!(one_line_error(&out).contains("127.0.0.1:9"));

    let fake = cwd.join("fake.wasm");
    std::fs::write(&fake, b"this is not a component").unwrap();
    let out = ozone(
        &[
            "tune",
            &model,
            "--config",
            s.config.to_str().unwrap(),
            "--context-strategy",
            fake.to_str().unwrap(),
        ],
        cwd,
    )
    .run();
    assert_eq!(out.code, Some(2), "{}", out.stderr.clone());
    assert!(one_line_error(&out).contains("fake.wasm"));

    // A GPU-memory budget this machine cannot hold is refused before any trial: above
    // the GPU's total (a GPU machine; without a GPU reading nothing is refused, the
    // budget is held against llama-server's account at load).
    if let Some((budget, why)) = common::unenforceable_gpu_budget() {
        let out = ozone(
            &[
                "tune",
                &model,
                "--config",
                s.config.to_str().unwrap(),
                "--gpu-memory-budget-mb",
                budget,
                "-o",
                "refused",
            ],
            cwd,
        )
        .run();
        assert_eq!(out.code, Some(2), "{}", out.stderr.clone());
        let line = one_line_error(&out);
        assert!(line.contains("--gpu-memory-budget-mb"), "{line}");
        assert!(line.contains(why), "{line}");
        assert!(!cwd.join("refused/logs").exists(), "no run started");
    }
    // A server Ozone does not start has no processes of Ozone's to watch: refused before
    // Ollama is even asked (nothing listens on port 9).
    let out = ozone(
        &[
            "tune",
            "qwen2.5:0.5b",
            "--backend",
            "ollama",
            "--ollama-url",
            "http://127.0.0.1:9",
            "--gpu-memory-budget-mb",
            "4096",
        ],
        cwd,
    )
    .run();
    assert_eq!(out.code, Some(2));
    let line = one_line_error(&out);
    assert!(
        line.contains("needs a server Ozone starts itself (llama-server)"),
        "{line}"
    );
    // Zero is refused by the flag's own check.
    let out = ozone(&["tune", &model, "--gpu-memory-budget-mb", "0"], cwd).run();
    assert_eq!(out.code, Some(2));
    assert!(one_line_error(&out).contains("at least 1"));
}

/// The hint a run handed its context plugin, and the plugin's first proposal.
fn hint_and_first_proposal(log: &Path) -> (Option<u64>, Option<u64>) {
    let events = events(log);
    let hint = events[0]["parameters"]["hint"].as_u64();
    let first = events
        .iter()
        .find(|e| e["event"] == "decision" && e["phase"] == "context")
        .and_then(|e| e["proposed"].as_u64());
    (hint, first)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_run_starts_from_the_remembered_limit_unless_fresh() {
    let _serial = common::serial().await;
    let s = setup();
    // This test wants the warm-start store on.
    let config = config_yaml().replace(
        "      store_results: false\n      reuse_learned_configs: false\n",
        "      store_results: true\n      reuse_learned_configs: true\n",
    );
    std::fs::write(&s.config, config).unwrap();
    let run = |out: &str, fresh: bool| {
        let model = s.model.display().to_string();
        let config = s.config.display().to_string();
        let mut args = vec![
            "tune",
            &model,
            "--config",
            &config,
            "-o",
            out,
            "--json",
            "--skip-concurrency",
        ];
        if fresh {
            args.push("--fresh");
        }
        let output = ozone(&args, s.dir.path()).run();
        assert!(output.code == Some(0), "{}", output.stderr.clone());
        let summary: Value = serde_json::from_str(&output.stdout).unwrap();
        let limit = summary["limits"]["max_context"]["value"]
            .as_u64()
            .expect("a limit");
        (limit, only_file(&s.dir.path().join(out).join("logs")))
    };

    let (first_limit, first_log) = run("first", false);
    assert_eq!(hint_and_first_proposal(&first_log), (None, Some(16384)));

    let (_, second_log) = run("second", false);
    assert_eq!(
        hint_and_first_proposal(&second_log),
        (Some(first_limit), Some(first_limit)),
        "the remembered limit is the first probe"
    );

    let (_, fresh_log) = run("fresh", true);
    assert_eq!(hint_and_first_proposal(&fresh_log), (None, Some(16384)));
}

/// The settings of the staged-search tests: no batch or concurrency phase, an optional
/// server budget and an optional fixed request timeout (seconds).
fn staged_config(budget: Option<u64>, timeout_s: Option<f64>) -> String {
    let mut yaml = config_yaml().replace(
        "testing:\n",
        "search_strategy:\n  batch_adaptation:\n    enabled: false\ntesting:\n",
    );
    yaml = yaml.replace(
        &format!("  process_memory_budget_mb: {}\n", budget_mb()),
        "",
    );
    if let Some(mb) = budget {
        yaml.push_str(&format!("  process_memory_budget_mb: {mb}\n"));
    }
    if let Some(t) = timeout_s {
        yaml = yaml.replace(
            "testing:\n",
            &format!(
                "testing:\n  adaptive_timeouts:\n    base_timeout: {t}\n    context_multiplier: 0\n    \
                 batch_multiplier: 0\n    min_timeout: {t}\n    max_timeout: {t}\n"
            ),
        );
    }
    yaml
}

/// `ozone tune --skip-concurrency` on `model` with `yaml`: the summary file, and the
/// console's output (stdout then stderr).
fn staged_tune(dir: &Path, model: &Path, yaml: &str, extra: &[&str], out: &str) -> (Value, String) {
    let config = dir.join(format!("{out}.yaml"));
    std::fs::write(&config, yaml).expect("write the config");
    let model = model.display().to_string();
    let config = config.display().to_string();
    let mut args = vec![
        "tune",
        &model,
        "--config",
        &config,
        "-o",
        out,
        "--skip-concurrency",
    ];
    args.extend(extra);
    let output = ozone(&args, dir).run();
    let console = format!("{}{}", output.stdout.clone(), output.stderr.clone());
    assert!(output.code == Some(0), "ozone tune failed:\n{console}");
    assert_samples_logged_before_their_trial(&only_file(&dir.join(out).join("logs")));
    let summary = std::fs::read_to_string(only_file(&dir.join(out).join("summaries")))
        .expect("the summary file");
    let summary = serde_json::from_str(&summary).expect("the summary is JSON");
    (summary, console)
}

/// Every finished request is in the log as a `sample` line before its trial's `trial`
/// line (one line each, so a crash mid-trial loses none of them).
fn assert_samples_logged_before_their_trial(log: &Path) {
    let mut logged: std::collections::HashMap<u64, Vec<u64>> = Default::default();
    let mut trials = 0;
    for event in events(log) {
        match event["event"].as_str() {
            Some("sample") => logged
                .entry(event["trial_id"].as_u64().expect("trial_id"))
                .or_default()
                .push(event["sample"]["index"].as_u64().expect("index")),
            Some("trial") => {
                trials += 1;
                let id = event["id"].as_u64().expect("id");
                let indices: Vec<u64> = event["samples"]
                    .as_array()
                    .expect("samples")
                    .iter()
                    .map(|s| s["index"].as_u64().expect("index"))
                    .collect();
                assert_eq!(
                    logged.remove(&id).unwrap_or_default(),
                    indices,
                    "trial {id}: its sample lines before its trial line, in {}",
                    log.display()
                );
            }
            _ => {}
        }
    }
    assert!(trials > 0, "no trial in {}", log.display());
    assert!(logged.is_empty(), "samples of no trial: {logged:?}");
}

/// Context-phase trials at `ctx`, as (stage, verdict).
fn context_trials_at(summary: &Value, ctx: u64) -> Vec<(String, String)> {
    summary["trials"]
        .as_array()
        .expect("trials")
        .iter()
        .filter(|t| t["phase"] == "context" && t["config"]["ctx"] == ctx)
        .map(|t| {
            let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
            (text(&t["stage"]), text(&t["verdict"]))
        })
        .collect()
}

/// The published maximum context is a verified, stable trial, a context one step above it
/// failed (screen or verify), and memory is what bound it — for both built-in searches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_published_context_is_verified_and_one_step_above_it_failed() {
    let _serial = common::serial().await;
    let s = setup();
    let yaml = staged_config(Some(budget_mb()), None);
    for strategy in ["binary-search", "memory-fit"] {
        let (summary, stderr) = staged_tune(
            s.dir.path(),
            &s.model,
            &yaml,
            &["--context-strategy", strategy],
            strategy,
        );
        let limit = &summary["limits"]["max_context"];
        let value = limit["value"].as_u64().expect("a published context");
        assert!(
            context_trials_at(&summary, value).contains(&("verify".into(), "stable".into())),
            "{strategy}: {value} was verified stable\n{stderr}"
        );
        let above = context_trials_at(&summary, value + u64::from(GRANULARITY));
        assert!(
            above.iter().any(|(_, verdict)| verdict != "stable"),
            "{strategy}: one step above {value} failed: {above:?}\n{stderr}"
        );
        assert_eq!(limit["bound_by"], "memory", "{strategy}: {limit}");
        assert_eq!(limit["evidence"]["threshold"], "process-memory", "{limit}");
        // Every trial says its stage; the search screened, the answer was verified.
        let stages: Vec<&Value> = summary["trials"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| &t["stage"])
            .collect();
        assert!(stages.contains(&&Value::from("screen")), "{stages:?}");
        common::assert_no_servers_left_for(&s.model);
    }
}

/// Without a budget on a model trained for 4096 tokens, the trained context binds; with
/// a request timeout shorter than a long fill takes, time binds, and the console says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trained_context_or_time_binds_without_a_budget() {
    let _serial = common::serial().await;
    let s = setup();
    let short = s.dir.path().join("tiny-4k.gguf");
    let spec = TinyModelSpec {
        trained_context: 4096,
        ..TinyModelSpec::default()
    };
    write_tiny_model(&short, &spec).expect("write the model");
    let (summary, _) = staged_tune(
        s.dir.path(),
        &short,
        &staged_config(None, None),
        &[],
        "trained",
    );
    let limit = &summary["limits"]["max_context"];
    assert_eq!(limit["value"], 4096, "{limit}");
    assert_eq!(limit["bound_by"], "trained_context", "{limit}");
    assert_eq!(limit["evidence"]["trained_context"], 4096, "{limit}");

    // A 4096-token request's time on this machine, measured just now: twice that is
    // the timeout, so 4096 tokens fit in it and the trained 16384 (four times the
    // prompt, more than four times the work) cannot. At least 2 s: below that, the
    // scheduling jitter of a busy 2-core machine is a large share of every request.
    let slowest_ms = summary["trials"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["samples"].as_array().cloned().unwrap_or_default())
        .filter_map(|sample| sample["total_ms"].as_f64())
        .fold(0.0, f64::max);
    assert!(slowest_ms > 0.0, "the samples carry their times");
    let timeout_s = (2.0 * slowest_ms / 1000.0).max(2.0);
    let narrow = s.dir.path().join("narrow-16k.gguf");
    let spec = TinyModelSpec {
        trained_context: 16384,
        ..TinyModelSpec::default()
    };
    write_tiny_model(&narrow, &spec).expect("write the model");
    let (summary, stderr) = staged_tune(
        s.dir.path(),
        &narrow,
        &staged_config(None, Some(timeout_s)),
        &[],
        "time",
    );
    let limit = &summary["limits"]["max_context"];
    assert_eq!(
        limit["bound_by"], "time",
        "timeout {timeout_s:.1} s: {limit}\n{stderr}"
    );
    let value = limit["value"]
        .as_u64()
        .expect("a context within the timeout");
    assert!((4096..16384).contains(&value), "{value}");
    assert!(
        stderr.contains("note: Time bound the context, not memory"),
        "the final output says so plainly:\n{stderr}"
    );
    common::assert_no_servers_left_for(&narrow);
}

/// The frontier on the generated model: f16 and q8_0 caches under one memory budget,
/// each its own context search and verification; q8_0 (about half the bytes a token)
/// holds at least 1.6× f16's context; each row carries its figures and its quality cost
/// against f16, and no preset uses a variant over the quality gate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_q8_0_cache_holds_more_context_than_f16_under_the_same_budget() {
    let _serial = common::serial().await;
    let s = setup();
    let yaml = staged_config(Some(budget_mb()), None);
    let (summary, console) = staged_tune(
        s.dir.path(),
        &s.model,
        &yaml,
        &["--kv-cache-types", "f16,q8_0"],
        "frontier",
    );
    let rows = summary["frontier"].as_array().expect("a frontier");
    assert_eq!(rows.len(), 2, "{rows:#?}");
    let row = |k: &str| {
        rows.iter()
            .find(|r| r["variant"]["cache_type_k"] == k)
            .unwrap_or_else(|| panic!("a {k} row: {rows:#?}"))
    };
    let (f16, q8) = (row("f16"), row("q8_0"));
    assert_eq!(q8["variant"]["cache_type_v"], "q8_0");
    assert_eq!(
        q8["variant"]["flash_attn"], "on",
        "a quantized V cache needs it"
    );
    let ctx = |r: &Value| r["max_context"].as_u64().expect("a verified context");
    assert!(
        ctx(q8) as f64 >= 1.6 * ctx(f16) as f64,
        "q8_0 {} against f16 {}\n{console}",
        ctx(q8),
        ctx(f16)
    );
    for r in [f16, q8] {
        assert_eq!(r["bound"], "memory", "{r}");
        assert!(r["decode_tps"].as_f64().is_some_and(|t| t > 0.0), "{r}");
        assert!(r["peak_process_memory_bytes"].as_u64().is_some(), "{r}");
    }
    assert!(f16["quality"].is_null(), "f16 is the reference");
    let gate = summary["config"]["ozone"]["max_kld"]
        .as_f64()
        .expect("the gate");
    // Measured on the generated model too (its vocabulary has the text's characters).
    let kld = q8["quality"]["kld_mean"]
        .as_f64()
        .unwrap_or_else(|| panic!("q8_0's quality cost measured: {q8}\n{console}"));
    assert!(kld >= 0.0 && q8["quality"]["positions"] == 64, "{q8}");
    assert_eq!(q8["within_gate"], kld <= gate);
    // Both context searches ran, each verified at its own limit.
    for r in [f16, q8] {
        let verified = summary["trials"].as_array().unwrap().iter().any(|t| {
            t["stage"] == "verify"
                && t["verdict"] == "stable"
                && t["config"]["ctx"] == r["max_context"]
                && t["config"]["kv_cache_type"] == r["variant"]["cache_type_k"]
        });
        assert!(verified, "{r}");
    }
    for preset in ["max_context", "balanced", "fast_response"] {
        let p = &summary["presets"][preset];
        if p.is_object() && p["config"]["kv_cache_type"] == "q8_0" {
            assert_eq!(q8["within_gate"], true, "{preset} uses q8_0");
        }
    }
    assert!(console.contains("Frontier"), "{console}");
    common::assert_no_servers_left_for(&s.model);
}
