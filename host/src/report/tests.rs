use std::io::Write;
use std::path::Path;

use chrono::{TimeZone, Utc};

use super::*;
use crate::backend::BackendKind;
use crate::fixtures;
use crate::record::Limits;
use crate::record::Phase;
use crate::tune::presets::{PresetName, Presets};
use crate::tune::{PluginUse, RunSetup};

fn events() -> Vec<LogEvent> {
    let mut events = vec![LogEvent::RunStarted(Box::new(run_started()))];
    for t in fixtures::trials() {
        events.push(LogEvent::Decision {
            phase: t.phase,
            plugin: "binary-search".into(),
            proposed: Some(t.config.ctx),
            stage: Some(crate::record::Stage::Verify),
        });
        let id = t.id;
        for sample in &t.samples {
            events.push(LogEvent::Sample {
                trial_id: id,
                stage: t.stage,
                config: t.config.clone(),
                sample: sample.clone(),
            });
        }
        events.push(LogEvent::Trial(Box::new(t)));
        events.push(LogEvent::Series {
            trial_id: id,
            series: fixtures::series(),
        });
    }
    events.push(LogEvent::Decision {
        phase: Phase::Context,
        plugin: "binary-search".into(),
        proposed: None,
        stage: None,
    });
    events.push(LogEvent::RunFinished(RunFinished {
        status: RunStatus::Completed,
        finished_at: Utc.with_ymd_and_hms(2026, 11, 26, 13, 9, 0).unwrap(),
        limits: Some(fixtures::limits()),
        message: None,
    }));
    events
}

fn write_log(path: &Path, events: &[LogEvent]) {
    let mut log = RunLog::create_at(path).unwrap();
    for e in events {
        log.append(e).unwrap();
    }
}

#[test]
fn log_round_trips_every_event() {
    let dir = tempfile::tempdir().unwrap();
    let started = run_started();
    let mut log = RunLog::create(dir.path(), &started.model.name, started.started_at).unwrap();
    assert_eq!(
        log.path(),
        dir.path()
            .join("logs/qwen2.5-0.5b-instruct-q4_k_m_20261126_130005.jsonl")
    );
    let all = events();
    for e in &all {
        log.append(e).unwrap();
        // Flushed as it happens: the file already holds the line.
        let text = std::fs::read_to_string(log.path()).unwrap();
        assert!(text.ends_with("}\n"));
    }
    let path = log.path().to_path_buf();
    drop(log);
    assert_eq!(read_log(&path).unwrap(), all);
    // One event a line, tagged.
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().count(), all.len());
    let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(first["event"], "run_started");
    assert_eq!(first["log_version"], 1);
    // Creating it again never overwrites.
    assert!(RunLog::create_at(&path).is_err());
}

#[test]
fn torn_last_line_is_skipped_and_cut_on_resume() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.jsonl");
    let all = events();
    write_log(&path, &all[..5]);
    // A crash in the middle of writing the next line.
    let torn = serde_json::to_string(&all[5]).unwrap();
    std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap()
        .write_all(&torn.as_bytes()[..torn.len() / 2])
        .unwrap();

    let read = read_log_detailed(&path).unwrap();
    assert_eq!(read.events, all[..5].to_vec());
    assert!(read.torn_tail.is_some());

    let (mut log, before) = RunLog::open_append(&path).unwrap();
    assert_eq!(before, all[..5].to_vec());
    let resumed = LogEvent::Resumed {
        server_binary: None,
        at: Utc.with_ymd_and_hms(2026, 11, 26, 14, 0, 0).unwrap(),
    };
    log.append(&resumed).unwrap();
    for e in &all[5..] {
        log.append(e).unwrap();
    }
    drop(log);
    let read = read_log_detailed(&path).unwrap();
    assert_eq!(read.torn_tail, None);
    let mut expected = all[..5].to_vec();
    expected.push(resumed);
    expected.extend_from_slice(&all[5..]);
    assert_eq!(read.events, expected);
}

#[test]
fn a_complete_last_line_without_newline_is_kept_on_resume() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.jsonl");
    let all = events();
    let text = serde_json::to_string(&all[0]).unwrap();
    std::fs::write(&path, &text).unwrap();
    let (mut log, before) = RunLog::open_append(&path).unwrap();
    assert_eq!(before.len(), 1);
    log.append(&all[1]).unwrap();
    assert_eq!(read_log(&path).unwrap(), all[..2].to_vec());
}

#[test]
fn a_bad_line_in_the_middle_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.jsonl");
    let all = events();
    let mut text = serde_json::to_string(&all[0]).unwrap();
    text.push_str("\nnot json\n");
    text.push_str(&serde_json::to_string(&all[1]).unwrap());
    text.push('\n');
    std::fs::write(&path, text).unwrap();
    let err = read_log(&path).unwrap_err();
    assert!(err.to_string().contains("run.jsonl:2:"), "{err}");
}

#[test]
fn summary_from_events_matches_the_run() {
    let summary = RunSummary::from_events(&events()).unwrap();
    assert_eq!(summary.status, RunStatus::Completed);
    assert_eq!(summary.trials.len(), 10);
    assert_eq!(
        summary.limits,
        Limits {
            max_context: Some(20480),
            best_batch: Some(256),
            max_concurrency: Some(2),
            ..Limits::default()
        }
    );
    assert!(matches!(summary.presets, Presets::Three { .. }));
    assert_eq!(summary.timings.wall_ms, Some(535_000));
    assert_eq!(summary.timings.phases.len(), 3);
    assert_eq!(summary.timings.phases[0].trials, 6);
    assert_eq!(summary.timings.phases[0].stable, 4);

    // Without run_finished the run is unfinished: its limits are what the driver found
    // by the last phase it finished, never worked out again from the trials.
    let mut cut = events();
    cut.pop();
    let s = RunSummary::from_events(&cut).unwrap();
    assert_eq!(s.status, RunStatus::Unfinished);
    assert_eq!(s.limits, Limits::default());
    let context_only = Limits {
        max_context: Some(20480),
        ..Limits::default()
    };
    cut.push(LogEvent::PhaseFinished {
        phase: Phase::Context,
        limits: context_only.clone(),
    });
    assert_eq!(RunSummary::from_events(&cut).unwrap().limits, context_only);

    assert!(matches!(
        RunSummary::from_events(&cut[1..]),
        Err(ReportError::NoRunStarted)
    ));
}

#[test]
fn every_output_file_is_written_and_parses() {
    let dir = tempfile::tempdir().unwrap();
    let summary = RunSummary::from_events(&events()).unwrap();
    let command: Vec<String> = [
        "/opt/llama server/llama-server",
        "-m",
        "/models/it's here.gguf",
        "-c",
        "8192",
        "-b",
        "64",
        "--host",
        "127.0.0.1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let stem = "qwen2.5-0.5b-instruct-q4_k_m";
    let log = dir
        .path()
        .join(format!("logs/{stem}_20261126_130005.jsonl"));
    let paths = write_outputs(
        dir.path(),
        &log,
        &summary,
        Some(PresetName::Balanced),
        Some(&command),
    )
    .unwrap();
    assert_eq!(
        paths.summary,
        dir.path()
            .join(format!("summaries/{stem}_20261126_130005.json"))
    );
    assert_eq!(paths.env, dir.path().join("env/env_20261126_130005.json"));

    let back: RunSummary =
        serde_json::from_str(&std::fs::read_to_string(&paths.summary).unwrap()).unwrap();
    assert_eq!(back, summary);

    let env: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&paths.env).unwrap()).unwrap();
    assert_eq!(env["versions"]["llama-server"], "b6500");
    assert!(env["hardware"]["cpu"]["model"]["value"].is_string());

    let defaults: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(paths.defaults.as_ref().unwrap()).unwrap())
            .unwrap();
    assert_eq!(defaults["model"].as_str(), Some(stem));
    assert!(defaults["updated_at"].is_string());
    for (name, ctx) in [
        ("max_context", 20480),
        ("balanced", 8192),
        ("fast_response", 4096),
    ] {
        let p = &defaults["presets"][name];
        assert_eq!(p["num_ctx"].as_u64(), Some(ctx), "{name}");
        assert_eq!(p["num_predict"].as_u64(), Some(64));
        assert_eq!(p["num_thread"].as_u64(), Some(1));
        assert!(p["batch"].as_u64().is_some());
        let perf = &p["performance"];
        assert!(perf["tokens_per_sec"].as_f64().unwrap() > 0.0);
        assert!(perf["ttft_ms"].as_f64().unwrap() > 0.0);
        assert!(perf["tokens_per_sec_stddev"].as_f64().is_some());
        assert_eq!(perf["stability_score"].as_f64(), Some(1.0));
    }

    let modelfile = std::fs::read_to_string(paths.modelfile.as_ref().unwrap()).unwrap();
    let directives: Vec<&str> = modelfile
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .collect();
    assert_eq!(
        directives,
        vec![
            "FROM /models/qwen2.5-0.5b-instruct-q4_k_m.gguf",
            "PARAMETER num_ctx 8192",
            "PARAMETER num_batch 64",
        ]
    );

    let script_path = paths.llama_server_script.as_ref().unwrap();
    let script = std::fs::read_to_string(script_path).unwrap();
    assert!(script.starts_with("#!/bin/sh\n"));
    assert!(
        script.contains(" -c 8192 -b 64 --host 127.0.0.1 \"$@\"\n"),
        "{script}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(script_path).unwrap().permissions().mode();
        assert_eq!(mode & 0o111, 0o111);
    }
    // The shell reads the words back exactly.
    let echoed = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "printf '%s\\n' {}",
            command
                .iter()
                .map(|w| shell_quote(w).unwrap())
                .collect::<Vec<_>>()
                .join(" ")
        ))
        .output()
        .unwrap();
    let words: Vec<String> = String::from_utf8(echoed.stdout)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(words, command);

    let html = std::fs::read_to_string(&paths.html).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
}

#[test]
fn html_report_has_the_charts_and_the_presets_without_script() {
    let html = render_html(&events()).unwrap();
    assert_eq!(html.matches("<svg").count(), 6);
    assert_eq!(html.matches("</svg>").count(), 6);
    for title in [
        "Context vs peak server process memory",
        "Throughput vs batch (ctx 20480)",
        "Goodput vs concurrency",
        "Time to first token vs concurrency",
        "Time per output token vs concurrency",
        "Request latency vs concurrency",
    ] {
        assert!(html.contains(title), "missing chart {title}");
    }
    // The budget line and every trial on the memory chart, marked by verdict.
    assert!(html.contains("budget 1536 MiB"));
    assert!(
        html.contains("<title>trial 5 (verify): ctx 24576 batch 64 ubatch 64 x1 kv f16 — Failed")
    );
    assert!(html.contains("<title>trial 10: 4 streams — Unstable"));
    for preset in ["max_context", "balanced", "fast_response", "serving"] {
        assert!(html.contains(&format!("<td>{preset}</td>")), "{preset}");
    }
    assert!(
        html.contains("20480 × 2 slots"),
        "the serving preset's slots"
    );
    assert!(!html.contains("<script"));
    assert!(!html.contains("http://") || html.matches("http://").count() == 6); // SVG xmlns only
}

/// Level 1 is the batch phase's best trial (8), then the ladder's 2 and 4.
#[test]
fn the_concurrency_levels_are_judged_and_bounded() {
    let summary = RunSummary::from_events(&events()).unwrap();
    let c = &summary.concurrency;
    assert_eq!(c.slo, "");
    let levels: Vec<(u32, u32, bool)> = c
        .levels
        .iter()
        .map(|l| (l.streams, l.trial_id, l.passed))
        .collect();
    assert_eq!(levels, [(1, 8, true), (2, 9, true), (4, 10, false)]);
    assert!(c.server.as_deref().unwrap_or("").contains("-np N"));
    // One stream's closed loop: its five requests, sequential.
    let one = &c.levels[0].figures;
    assert_eq!((one.streams, one.requests_per_stream), (1, 5));
    let ttft: Vec<f64> = fixtures::trials()[7]
        .samples
        .iter()
        .filter_map(|s| s.ttft_ms)
        .collect();
    let max = ttft.iter().copied().fold(0.0, f64::max);
    assert_eq!(one.latency.ttft_p99_ms, Some(max), "nearest rank of 5");
    let serving = summary.serving.as_ref().expect("a serving preset");
    assert_eq!(
        (
            serving.ctx,
            serving.config.batch,
            serving.config.concurrency
        ),
        (20480, 256, 2)
    );
    assert_eq!(serving.evidence.trial_id, 9);
    assert!(serving.score.is_none());

    // The same run under an objective that two streams miss.
    let mut all = events();
    if let LogEvent::RunStarted(started) = &mut all[0] {
        started.config.ozone.slo = crate::config::parse_slo("ttft-p95=30s").unwrap();
    }
    let s = RunSummary::from_events(&all).unwrap();
    assert_eq!(s.concurrency.slo, "ttft-p95=30000ms");
    let passed: Vec<bool> = s.concurrency.levels.iter().map(|l| l.passed).collect();
    assert_eq!(passed, [true, false, false]);
    let missed = &s.concurrency.levels[1].figures.slo.as_ref().unwrap().missed;
    assert_eq!(missed.len(), 1);
    assert!(missed[0].measured.is_some_and(|m| m > 30_000.0));
    let html = render_summary_html(&s);
    assert!(
        html.contains("SLO ttft-p95 30000ms"),
        "the objective's line"
    );
    assert!(html.contains(r#"class="missed""#), "a level marked missed");
    assert!(html.contains("missed SLO"), "in the legend");
}

#[test]
fn only_one_stable_configuration_is_said_in_every_output() {
    let mut all = events();
    all.retain(|e| match e {
        LogEvent::Trial(t) => t.verdict != crate::record::Verdict::Stable || t.id == 3,
        _ => true,
    });
    let summary = RunSummary::from_events(&all).unwrap();
    assert!(summary.presets.only_one());
    let html = render_summary_html(&summary);
    assert!(html.contains("Only one configuration was stable"));
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("logs/run.jsonl");
    let paths = write_outputs(
        dir.path(),
        &log,
        &summary,
        Some(PresetName::FastResponse),
        None,
    )
    .unwrap();
    let defaults: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(paths.defaults.as_ref().unwrap()).unwrap())
            .unwrap();
    assert_eq!(
        defaults["presets"]["max_context"]["num_ctx"].as_u64(),
        Some(8192)
    );
    assert!(defaults["presets"]["balanced"].is_null());
    assert!(defaults["note"].as_str().unwrap().contains("only one"));
    // The Modelfile is still written for the asked preset; no command, no script.
    assert!(paths.modelfile.is_some());
    assert!(paths.llama_server_script.is_none());
}

#[test]
fn nothing_stable_writes_no_deploy_files() {
    let mut all = events();
    all.retain(|e| match e {
        LogEvent::Trial(t) => t.verdict != crate::record::Verdict::Stable,
        _ => true,
    });
    let summary = RunSummary::from_events(&all).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cmd = vec!["llama-server".to_string()];
    let log = dir.path().join("logs/run.jsonl");
    let paths = write_outputs(
        dir.path(),
        &log,
        &summary,
        Some(PresetName::Balanced),
        Some(&cmd),
    )
    .unwrap();
    // Nothing found: an earlier run's presets and deploy files are left alone.
    assert!(paths.modelfile.is_none() && paths.llama_server_script.is_none());
    assert!(paths.defaults.is_none());
    assert!(!dir.path().join("defaults").exists());
    let html = std::fs::read_to_string(&paths.html).unwrap();
    assert!(html.contains("No configuration was stable"));
}

#[test]
fn file_stems_are_safe() {
    assert_eq!(file_stem("llama3.1:8b-instruct"), "llama3.1_8b-instruct");
    assert_eq!(file_stem("hf.co/org/model:Q4"), "hf.co_org_model_Q4");
    assert_eq!(file_stem("::"), "model");
    assert_eq!(
        shell_quote("plain-word_1.gguf").unwrap(),
        "plain-word_1.gguf"
    );
    assert_eq!(shell_quote("").unwrap(), "''");
    assert!(shell_quote("a\0b").is_err());
}

#[test]
fn without_a_budget_the_memory_chart_shows_ram_against_the_tighter_limit() {
    let mut all = events();
    if let LogEvent::RunStarted(s) = &mut all[0] {
        s.config.ozone.process_memory_budget_mb = None;
    }
    let html = render_html(&all).unwrap();
    assert!(html.contains("Context vs peak RAM in use"));
    // 8 GiB: 85 % is 6963 MiB, minus the 4096 MiB reserve is 4096 MiB: the reserve wins.
    assert!(html.contains("RAM minus 4096 MiB reserve"));
}

/// The fixture run's start line (see [`crate::fixtures`]).
pub(crate) fn run_started() -> RunSetup {
    RunSetup {
        log_version: super::LOG_VERSION,
        // This ozone ran it: warm-start keys made now match it.
        ozone_version: env!("CARGO_PKG_VERSION").into(),
        model_source: "/models/qwen2.5-0.5b-instruct-q4_k_m.gguf".into(),
        model: fixtures::model(),
        hardware: fixtures::hardware(),
        config: fixtures::config(),
        plugins: vec![
            PluginUse {
                role: "context".into(),
                name: "binary-search".into(),
                version: Some("0.1.0".into()),
                builtin: true,
            },
            PluginUse {
                role: "batch".into(),
                name: "batch-scaler".into(),
                version: Some("0.1.0".into()),
                builtin: true,
            },
        ],
        backend: BackendKind::LlamaServer,
        versions: [("llama-server".to_string(), "b6500".to_string())]
            .into_iter()
            .collect(),
        parameters: None,
        server_binary: None,
        started_at: Utc.with_ymd_and_hms(2026, 11, 26, 13, 0, 5).unwrap(),
    }
}

#[test]
fn the_fit_baseline_is_read_from_the_log_and_shown_beside_the_limit() {
    let mut all = events();
    let fit = crate::record::FitBaseline::Fitted {
        ctx: 16_384,
        margin_mib: 1024,
        reduced_from: Some(32_768),
        source: crate::record::FitSource::Props,
        peaks: Default::default(),
        breach: None,
        command: vec!["llama-server".into(), "-fit".into(), "on".into()],
    };
    all.insert(1, LogEvent::FitBaseline { fit: fit.clone() });
    let summary = RunSummary::from_events(&all).unwrap();
    assert_eq!(summary.fit_baseline, Some(fit));
    let json = serde_json::to_value(&summary).unwrap();
    assert_eq!(json["fit_baseline"]["status"], "fitted");
    assert_eq!(json["fit_baseline"]["ctx"], 16_384);
    let html = render_html(&all).unwrap();
    assert!(html.contains("llama.cpp&#39;s fit: 16384; measured stable: 20480, +25 %"));
    // A log without the event (older, or another backend): no line, no field.
    let plain = RunSummary::from_events(&events()).unwrap();
    assert_eq!(plain.fit_baseline, None);
    assert!(serde_json::to_value(&plain)
        .unwrap()
        .get("fit_baseline")
        .is_none());
}

#[test]
fn with_a_gpu_budget_the_memory_chart_shows_the_server_s_gpu_memory() {
    let mut all = events();
    if let LogEvent::RunStarted(s) = &mut all[0] {
        s.config.ozone.gpu_memory_budget_mb = Some(6144);
    }
    for e in &mut all {
        if let LogEvent::Trial(t) = e {
            t.peaks.server_gpu_mem_bytes = Some(u64::from(t.config.ctx) * 200_000);
        }
    }
    let html = render_html(&all).unwrap();
    assert!(
        html.contains("Context vs peak server GPU memory"),
        "chart title"
    );
    assert!(html.contains("GPU budget 6144 MiB"));
    assert!(html.contains("server GPU memory budget 6144 MiB"));
    assert!(
        html.contains("server GPU "),
        "trial peaks name the server's GPU memory"
    );
}

#[test]
fn a_running_log_shows_the_trial_in_progress() {
    let mut events: Vec<LogEvent> = events()
        .into_iter()
        .filter(|e| !matches!(e, LogEvent::RunFinished(_)))
        .collect();
    let config = crate::fixtures::trials()[0].config.clone();
    let sample = crate::record::SampleRecord {
        index: 0,
        ok: false,
        error: Some("the request ran past the 89 s timeout".into()),
        ..Default::default()
    };
    events.push(LogEvent::Sample {
        trial_id: 11,
        stage: crate::record::Stage::Screen,
        config: config.clone(),
        sample,
    });
    let s = RunSummary::from_events(&events).unwrap();
    assert_eq!(s.status, RunStatus::Unfinished);
    let p = s.in_progress.as_ref().expect("trial 11 in progress");
    assert_eq!(
        (p.trial_id, p.stage, p.samples.len()),
        (11, crate::record::Stage::Screen, 1)
    );
    let html = render_summary_html(&s);
    assert!(html.contains("In progress: trial 11 (screen)"), "{html}");
    assert!(html.contains("ran past the 89 s timeout"));
    // Finished trials' samples are not "in progress".
    let done = RunSummary::from_events(&events[..events.len() - 1]).unwrap();
    assert_eq!(done.in_progress, None);
}
