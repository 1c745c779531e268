//! The concurrency phase end to end: the real `ozone` binary, a real llama-server and a
//! generated model with a 512-token context, so every level is a few requests of ~460
//! prompt tokens. The batch covers every stream's prompt (2048), so the server serves
//! the streams' prefills together and latency grows with the streams, as on a real
//! model; the objectives the tests set are taken from a first measurement, never from
//! this machine's speed.

use std::path::{Path, PathBuf};

use crate::common::{self, cli::Outcome};
use crate::quiet_machine_yaml;
use ozone::backend::gguf::{write_tiny_model, TinyModelSpec};
use ozone_test_artifacts::MISBEHAVING;
use serde_json::Value;

const CTX: u32 = 512;

struct Setup {
    dir: tempfile::TempDir,
    model: PathBuf,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().expect("temp dir");
    let model = dir.path().join("tiny-512.gguf");
    let spec = TinyModelSpec {
        trained_context: CTX,
        ..TinyModelSpec::default()
    };
    write_tiny_model(&model, &spec).expect("write the model");
    Setup { dir, model }
}

/// One context trial (the model's whole context), no batch phase, two measured requests
/// per stream, levels up to `max_concurrency`. Stability is the success rate alone: the
/// neighbours' builds on a 2-core CI machine make throughput vary.
fn config(s: &Setup, name: &str, max_concurrency: u32, extra: &str) -> PathBuf {
    let yaml = format!(
        "search_strategy:
  batch_adaptation:
    enabled: false
    initial_batch_small: 2048
    max_batch: 2048
testing:
  statistical_validation:
    min_samples_per_config: 2
    variance_tolerance: 10.0
  concurrency_progression:
    stabilization_delay: 0
    requests_per_stream: 2
    max_concurrency: {max_concurrency}
{quiet}ozone:
  min_context: {CTX}
  n_predict: 8
{extra}",
        quiet = quiet_machine_yaml!(),
    );
    let path = s.dir.path().join(format!("{name}.yaml"));
    std::fs::write(&path, yaml).expect("write the config");
    path
}

fn ozone(cwd: &Path, args: &[&str]) -> Outcome {
    common::cli::ozone(cwd, args).run()
}

/// A tune that must succeed: its summary and its log's events.
fn tune(s: &Setup, name: &str, config: &Path, args: &[&str]) -> (Value, Vec<Value>) {
    let model = s.model.display().to_string();
    let config = config.display().to_string();
    let mut all = vec!["tune", &model, "--config", &config, "-o", name, "--json"];
    all.extend_from_slice(args);
    let out = ozone(s.dir.path(), &all);
    assert!(
        out.code == Some(0),
        "{name}: ozone tune failed ({:?}):\n{}",
        out.code,
        out.stderr.clone()
    );
    let summary: Value = serde_json::from_str(&out.stdout).expect("--json prints JSON");
    let logs = s.dir.path().join(name).join("logs");
    let log = std::fs::read_dir(&logs)
        .expect("a log folder")
        .next()
        .expect("a log")
        .expect("dir entry")
        .path();
    let events = std::fs::read_to_string(log)
        .expect("read the log")
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON lines"))
        .collect();
    (summary, events)
}

/// The concurrency plugin's proposals, in order (`None`: it said it was done).
fn proposals(events: &[Value]) -> Vec<Option<u64>> {
    events
        .iter()
        .filter(|e| e["event"] == "decision" && e["phase"] == "concurrency")
        .map(|e| e["proposed"].as_u64())
        .collect()
}

/// Each level's streams, TTFT p50 and p95 and whether it passed, from the summary.
fn levels(summary: &Value) -> Vec<Level> {
    summary["concurrency"]["levels"]
        .as_array()
        .expect("levels")
        .iter()
        .map(|l| {
            let ttft = |p: &str| {
                l["figures"]["latency"][format!("ttft_{p}_ms")]
                    .as_f64()
                    .expect("a measured TTFT")
            };
            Level {
                streams: l["streams"].as_u64().expect("streams"),
                p50: ttft("p50"),
                p95: ttft("p95"),
                passed: l["passed"].as_bool().expect("passed"),
            }
        })
        .collect()
}

#[derive(Debug)]
struct Level {
    streams: u64,
    p50: f64,
    p95: f64,
    passed: bool,
}

fn limit(summary: &Value) -> &Value {
    &summary["limits"]["max_concurrency"]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ladder_without_an_objective_and_three_objectives_from_its_figures() {
    let _serial = common::serial().await;
    let s = setup();

    // No objective: the original ladder, to its end, every level stable.
    let plain = config(&s, "plain", 8, "");
    let (summary, events) = tune(&s, "ladder", &plain, &[]);
    assert_eq!(
        proposals(&events),
        vec![Some(1), Some(2), Some(4), Some(8), None]
    );
    assert_eq!(limit(&summary)["value"], 8);
    assert_eq!(limit(&summary)["bound_by"], "cap");
    assert_eq!(summary["concurrency"]["slo"], "");
    let measured = levels(&summary);
    assert_eq!(
        measured.iter().map(|l| l.streams).collect::<Vec<_>>(),
        [1, 2, 4, 8]
    );
    assert!(measured.iter().all(|l| l.passed), "{measured:?}");
    let note = events
        .iter()
        .find(|e| e["event"] == "note")
        .expect("the log says how the server ran the levels");
    assert!(note["message"].as_str().unwrap_or("").contains("-np N"));
    // Every level is a closed loop: N streams × 2 measured requests, stream by stream.
    for t in events
        .iter()
        .filter(|e| e["event"] == "trial" && e["phase"] == "concurrency")
    {
        let n = t["config"]["concurrency"].as_u64().unwrap();
        let samples = t["samples"].as_array().unwrap();
        assert_eq!(samples.len() as u64, 2 * n, "level {n}");
        for stream in 0..n {
            let of = samples.iter().filter(|x| x["stream"] == stream).count();
            assert_eq!(of, 2, "level {n}, stream {stream}");
        }
        assert!(t["concurrency"]["aggregate_decode_tps"].as_f64().unwrap() > 0.0);
    }
    let at = |n: u64| measured.iter().find(|l| l.streams == n).expect("measured");

    // A loose objective reaches the cap, and the serving preset runs that many slots.
    let capped = config(&s, "capped", 4, "");
    let (summary, events) = tune(
        &s,
        "loose",
        &capped,
        &[
            "--slo",
            "ttft-p95=600s,decode-min=0.001",
            "--preset",
            "serving",
        ],
    );
    assert_eq!(proposals(&events), vec![Some(1), Some(2), Some(4), None]);
    assert_eq!(limit(&summary)["value"], 4);
    assert_eq!(limit(&summary)["bound_by"], "cap");
    assert_eq!(
        summary["concurrency"]["slo"],
        "ttft-p95=600000ms,decode-min=0.001tok/s"
    );
    assert_eq!(summary["serving"]["config"]["concurrency"], 4);
    let script =
        std::fs::read_to_string(s.dir.path().join("loose/deploy/tiny-512.llama-server.sh"))
            .expect("the serving preset's script");
    let words: Vec<&str> = script
        .lines()
        .find(|l| l.starts_with("exec "))
        .expect("an exec line")
        .split_whitespace()
        .collect();
    let after = |flag: &str| words.iter().position(|w| *w == flag).map(|i| words[i + 1]);
    assert_eq!(after("-np"), Some("4"), "{script}");
    assert_eq!(after("-c"), Some("2048"), "4 slots of 512: {script}");

    // An objective on TTFT tighter than one stream's: it bounds the context search too,
    // and no context meets it — none is published (exit 1), the limit says the
    // objective bound it with the figure, and no level runs.
    let tight = format!("ttft-p95={:.3}ms", at(1).p95 / 4.0);
    let model = s.model.display().to_string();
    let plain_path = plain.display().to_string();
    let out = ozone(
        s.dir.path(),
        &[
            "tune",
            &model,
            "--config",
            &plain_path,
            "-o",
            "tight",
            "--json",
            "--slo",
            &tight,
        ],
    );
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    let summary: Value = serde_json::from_str(&out.stdout).expect("--json prints JSON");
    let context = &summary["limits"]["max_context"];
    assert_eq!(context["value"], Value::Null, "{context}");
    assert_eq!(context["bound_by"], "slo", "{context}");
    let evidence = &context["evidence"];
    assert_eq!(evidence["metric"], "ttft-p95");
    assert!(evidence["measured"].as_f64().unwrap() > evidence["bound"].as_f64().unwrap());
    assert!(summary["concurrency"]["levels"]
        .as_array()
        .is_none_or(|l| l.is_empty()));
    assert_eq!(summary["serving"], Value::Null);

    // A median TTFT between those of 2 and 8 streams, as first measured (the median:
    // steadier than a tail over a few requests): doubling passes 2 and misses by 8,
    // then bisection ends on adjacent levels.
    let (low, high) = (at(2).p50, at(8).p50);
    assert!(
        high > 2.0 * low,
        "the median TTFT barely grew from 2 to 8 streams: {measured:?}"
    );
    let slo = format!("ttft-p50={:.3}ms", (low * high).sqrt());
    let (summary, events) = tune(&s, "between", &plain, &["--slo", &slo]);
    let asked: Vec<u64> = proposals(&events).into_iter().flatten().collect();
    let best = limit(&summary)["value"].as_u64().expect("a level passed");
    assert!((2..8).contains(&best), "{best} from {asked:?}");
    assert_eq!(limit(&summary)["bound_by"], "slo", "{summary:#}");
    assert_eq!(limit(&summary)["evidence"]["at"], best + 1, "{asked:?}");
    assert!(
        asked.windows(2).any(|w| w[1] < w[0]),
        "no bisection step in {asked:?}"
    );
    let judged = levels(&summary);
    assert!(
        judged.iter().any(|l| l.streams == best && l.passed),
        "{judged:?}"
    );
    assert!(
        judged.iter().any(|l| l.streams == best + 1 && !l.passed),
        "{judged:?}"
    );
    common::assert_no_servers_left_for(&s.model);
}

/// The first line of stderr that starts with `error:`.
fn error_line(out: &Outcome) -> String {
    let stderr = out.stderr.clone();
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "one error line expected:\n{stderr}");
    errors[0].to_string()
}

/// The misbehaving guest as the concurrency plugin (and, for comparison, as the
/// context plugin, which fails before any trial) in `mode`.
fn misbehave(s: &Setup, mode: &str, flag: &str) -> Outcome {
    let settings = format!("  plugin_settings:\n    misbehaving: {{mode: {mode}, value: 0}}\n");
    let config = config(s, mode, 8, &settings).display().to_string();
    let model = s.model.display().to_string();
    let out = format!("bad-{mode}{flag}");
    ozone(
        s.dir.path(),
        &[
            "tune",
            &model,
            "--config",
            &config,
            flag,
            MISBEHAVING,
            "-o",
            &out,
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_misbehaving_concurrency_plugin_is_stopped_like_the_other_kinds() {
    let _serial = common::serial().await;
    let s = setup();
    for (mode, says) in [
        ("loop", "exceeded its per-call budget"),
        ("panic", "trapped in propose"),
        (
            "propose",
            "proposed concurrency 0 (its concurrency bounds are 1..=8 streams",
        ),
    ] {
        let out = misbehave(&s, mode, "--concurrency-strategy");
        assert_eq!(out.code, Some(4), "{mode}: {}", error_line(&out));
        let line = error_line(&out);
        assert!(line.contains(&format!("plugin {MISBEHAVING}")), "{line}");
        assert!(line.contains(says), "{mode}: {line}");
        // The same words as when the context plugin breaks the same way.
        let as_context = error_line(&misbehave(&s, mode, "--context-strategy"));
        if mode == "propose" {
            assert!(as_context.contains("proposed context 0"), "{as_context}");
        } else {
            assert_eq!(line, as_context, "{mode}");
        }
    }
    common::assert_no_servers_left_for(&s.model);
}

#[test]
fn bad_objectives_are_one_line_errors_naming_the_part() {
    let s = setup();
    let model = s.model.display().to_string();
    for (slo, names) in [
        ("ttft-p90=2s", "unknown metric `ttft-p90`"),
        ("ttft-p95=2000", "needs a unit"),
        ("tpot-p95=100us", "bad unit `us`"),
        ("decode-min=10ms", "bad unit `ms`"),
        ("e2e-p95=0s", "must be above 0"),
        ("decode-min=-3", "must be above 0"),
        ("ttft-p95=1s,ttft-p95=2s", "`ttft-p95` is given twice"),
        ("ttft-p95", "not METRIC=VALUE"),
        ("ttft-p95=1s,,decode-min=2", "empty part"),
    ] {
        let out = ozone(s.dir.path(), &["tune", &model, "--slo", slo]);
        assert_eq!(out.code, Some(2), "{slo}");
        let line = error_line(&out);
        assert!(line.starts_with("error: --slo: "), "{slo}: {line}");
        assert!(line.contains(names), "{slo}: {line}");
    }
}
