//! Writes the output files of a run (all but the log, which is written as the run goes).
//!
//! Every file is written whole or not at all: into a temporary file beside it, synced,
//! then renamed over the old one. A full disk, a kill or a crash mid-write leaves the
//! earlier version as it was.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::backend::llama_server::{command_line, SERVER_ENV};
use crate::backend::BackendKind;
use crate::record::{FlashAttn, KvCacheType, Phase};
use crate::tune::presets::{Preset, PresetName, Presets};

use super::{render_summary_html, ReportError, RunSummary};
use crate::tune::{PluginUse, RunSetup};

/// Where [`write_outputs`] put each file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutputPaths {
    pub summary: PathBuf,
    /// Absent when no configuration was stable: an earlier run's presets are kept.
    pub defaults: Option<PathBuf>,
    pub env: PathBuf,
    /// Absent when no configuration was stable.
    pub modelfile: Option<PathBuf>,
    /// Absent when no command was given or no configuration was stable.
    pub llama_server_script: Option<PathBuf>,
    pub html: PathBuf,
    /// Files not written, and why.
    pub notes: Vec<String>,
}

/// Every output file of a run, from what its log records: `summary`, the start line
/// (the deploy files' preset, how the server ran) and `server_binary`, the llama-server
/// the trials ran. A tune writes them as it ends; `ozone report LOG` writes them again
/// from the log alone. `measured`: the run got to the end of its measurement — an
/// interrupted one writes no defaults or deploy files, which are the model's answer.
pub fn write_run_outputs(
    out_dir: &Path,
    log: &Path,
    started: &RunSetup,
    server_binary: Option<&Path>,
    summary: &RunSummary,
    measured: bool,
) -> Result<OutputPaths, ReportError> {
    let params = started.parameters.as_ref();
    let preset = params.map_or(PresetName::Balanced, |p| p.preset);
    let command = match (started.backend, params, server_binary) {
        (BackendKind::LlamaServer, Some(params), Some(binary)) => summary.preset(preset).map(|p| {
            let spec =
                params.llama_spec(binary.to_path_buf(), PathBuf::from(&started.model_source));
            let mut command = command_line(&spec, &p.config);
            command.extend(["--host", "127.0.0.1", "--port", "8080"].map(String::from));
            command
        }),
        _ => None,
    };
    write_outputs(
        out_dir,
        log,
        summary,
        measured.then_some(preset),
        command.as_deref(),
    )
}

/// Writes, under `out_dir`: `summaries/<run>.json`, `defaults/<model>.yaml`,
/// `env/env_<ts>.json`, `deploy/<model>.Modelfile` (for `preset`),
/// `deploy/<model>.llama-server.sh` (running `llama_command` exactly, when given) and
/// `report/<run>.html`. `<run>` is the name of the run's log without `.jsonl`
/// (`<model>_<ts>`, with `_2`… for a second run in the same second); `<ts>` is the
/// run's start, `%Y%m%d_%H%M%S` UTC. Without a `preset` (a run that did not measure to
/// the end) the defaults and deploy files are not written.
pub fn write_outputs(
    out_dir: &Path,
    log: &Path,
    summary: &RunSummary,
    preset: Option<PresetName>,
    llama_command: Option<&[String]>,
) -> Result<OutputPaths, ReportError> {
    let model = file_stem(&summary.model.name);
    let ts = timestamp(summary.started_at);
    let run = log
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| format!("{model}_{ts}"));
    // `<model>_<ts>_2` → `<ts>_2`: the environment file of each run stays its own.
    let env_name = run
        .strip_prefix(&format!("{model}_"))
        .unwrap_or(&run)
        .to_string();

    let summary_path = out_dir.join("summaries").join(format!("{run}.json"));
    write(&summary_path, &to_json(&summary_path, summary)?)?;

    // The defaults file and the deploy files are this model's current answer: a run
    // that found nothing stable does not replace what an earlier one found.
    let mut defaults = None;
    if preset.is_some() && !matches!(summary.presets, Presets::NoStableConfiguration) {
        let path = out_dir.join("defaults").join(format!("{model}.yaml"));
        let yaml = serde_yaml::to_string(&DefaultsFile::new(summary)).map_err(|e| {
            ReportError::Encode {
                path: path.clone(),
                message: e.to_string(),
            }
        })?;
        write(&path, &yaml)?;
        defaults = Some(path);
    }

    let env_path = out_dir.join("env").join(format!("env_{env_name}.json"));
    let env = EnvFile {
        ozone_version: &summary.ozone_version,
        written_at: Utc::now(),
        backend: summary.backend,
        versions: &summary.versions,
        plugins: &summary.plugins,
        hardware: &summary.hardware,
        hardware_fingerprint: summary.hardware.fingerprint(),
    };
    write(&env_path, &to_json(&env_path, &env)?)?;

    let chosen = preset.and_then(|p| summary.preset(p));
    let mut modelfile = None;
    let mut script = None;
    let mut notes = Vec::new();
    if let Some(p) = chosen {
        let path = out_dir.join("deploy").join(format!("{model}.Modelfile"));
        match modelfile_text(summary, p) {
            Ok(text) => {
                write(&path, &text)?;
                modelfile = Some(path);
            }
            Err(why) => notes.push(format!("{} not written: {why}", path.display())),
        }
        if let Some(command) = llama_command {
            let path = out_dir
                .join("deploy")
                .join(format!("{model}.llama-server.sh"));
            write_file(&path, &launch_script(summary, p, command)?, 0o755)?;
            script = Some(path);
        }
    }

    let html_path = out_dir.join("report").join(format!("{run}.html"));
    write(&html_path, &render_summary_html(summary))?;

    Ok(OutputPaths {
        summary: summary_path,
        defaults,
        env: env_path,
        modelfile,
        llama_server_script: script,
        html: html_path,
        notes,
    })
}

/// A model name made safe for a file name: `llama3.1:8b` → `llama3.1_8b`.
pub fn file_stem(model_name: &str) -> String {
    let stem: String = model_name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let stem = stem.trim_matches(['.', '_']);
    if stem.is_empty() {
        "model".into()
    } else {
        stem.into()
    }
}

/// The timestamp in output file names.
pub fn timestamp(at: DateTime<Utc>) -> String {
    at.format("%Y%m%d_%H%M%S").to_string()
}

/// Quotes a word for a POSIX shell (with `shlex`): plain words stay as they are, anything
/// else is quoted so that the shell reads back exactly the word, newlines, quotes, `$()`
/// and backticks included. Only a NUL byte, which no program argument can hold, is refused.
pub fn shell_quote(word: &str) -> Result<String, ReportError> {
    shlex::try_quote(word)
        .map(std::borrow::Cow::into_owned)
        .map_err(|_| ReportError::Unquotable {
            word: word.escape_debug().to_string(),
        })
}

/// Text made safe for a comment line: control characters (a newline would end the
/// comment and start a command) are written as escapes.
fn comment(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// A Modelfile takes its value to the end of the line, and reads a `"` as the start of
/// a quoted string: a model path holding either cannot be written safely.
fn modelfile_text(summary: &RunSummary, p: &Preset) -> Result<String, String> {
    let from = &summary.model_source;
    if from.chars().any(|c| c.is_control() || c == '"') || from.trim() != from {
        return Err(format!(
            "the model path {} holds a line break, a control character, a double quote or \
             edge spaces, which a Modelfile line cannot carry; rename the file",
            from.escape_debug()
        ));
    }
    Ok(format!(
        "# Written by ozone {ver}: preset {name} for {model}, measured {at}.\n\
         # {figures}\n{parallel}\
         FROM {from}\n\
         PARAMETER num_ctx {ctx}\n\
         PARAMETER num_batch {batch}\n{variant}",
        parallel = ollama_parallel_note(p),
        variant = ollama_variant_lines(p),
        ver = summary.ozone_version,
        name = p.name,
        model = comment(&summary.model.name),
        at = summary.started_at.format("%Y-%m-%d"),
        figures = figures_line(p),
        ctx = p.ctx,
        batch = p.config.batch,
    ))
}

fn launch_script(
    summary: &RunSummary,
    p: &Preset,
    command: &[String],
) -> Result<String, ReportError> {
    let words = command
        .iter()
        .map(|w| shell_quote(w))
        .collect::<Result<Vec<_>, _>>()?;
    // The server's environment as measured (see `SERVER_ENV`).
    let env: String = SERVER_ENV
        .iter()
        .map(|(key, value)| format!("export {key}={value}\n"))
        .collect();
    Ok(format!(
        "#!/bin/sh\n\
         # Written by ozone {ver}: llama-server with preset {name} for {model}.\n\
         # {figures}\n\
         # Extra arguments are passed on to llama-server.\n\
         {env}\
         exec {cmd} \"$@\"\n",
        ver = summary.ozone_version,
        name = p.name,
        model = comment(&summary.model.name),
        figures = figures_line(p),
        cmd = words.join(" "),
    ))
}

/// Several streams need as many parallel requests, which Ollama takes from the
/// environment of its server only.
fn ollama_parallel_note(p: &Preset) -> String {
    let n = p.config.concurrency;
    if n > 1 {
        format!(
            "# {n} streams at once: start the Ollama server with OLLAMA_NUM_PARALLEL={n}; no \
             Modelfile parameter or request option sets it.\n"
        )
    } else {
        String::new()
    }
}

/// The preset's variant in a Modelfile: threads and offload are parameters; the KV cache
/// type and flash attention are the Ollama server's own settings, said in a comment.
fn ollama_variant_lines(p: &Preset) -> String {
    let v = &p.config.variant;
    let mut lines = String::new();
    if let Some(t) = v.threads {
        lines.push_str(&format!("PARAMETER num_thread {t}\n"));
    }
    if let Some(n) = v.gpu_layers {
        lines.push_str(&format!("PARAMETER num_gpu {n}\n"));
    }
    if v.is_quantized() {
        let cache = if v.cache_type_k == v.cache_type_v {
            format!("OLLAMA_KV_CACHE_TYPE={}", v.cache_type_k)
        } else {
            format!(
                "OLLAMA_KV_CACHE_TYPE={} (Ollama sets K and V alike; this preset measured \
                 K {} / V {})",
                v.cache_type_v, v.cache_type_k, v.cache_type_v
            )
        };
        lines.push_str(&format!(
            "# KV cache {}: start the Ollama server with {cache} OLLAMA_FLASH_ATTENTION=1; no \
             Modelfile parameter sets it.\n",
            v.caches()
        ));
    }
    lines
}

fn figures_line(p: &Preset) -> String {
    let slots = match p.config.concurrency {
        1 => String::new(),
        n => format!(" x{n} streams (-np {n})"),
    };
    format!(
        "ctx {}{slots} batch {}: decode {} tok/s per request, TTFT p50 {:.0} ms, {}/{} samples ok (trial {})",
        p.ctx,
        p.config.batch,
        p.decode_tps.mean_pm(1),
        p.ttft_ms.p50,
        p.evidence.successful,
        p.evidence.samples,
        p.evidence.trial_id
    )
}

/// `defaults/<model>.yaml`, in the original layout.
#[derive(Debug, Serialize)]
struct DefaultsFile {
    model: String,
    updated_at: DateTime<Utc>,
    source: String,
    hardware_fingerprint: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<String>,
    presets: DefaultsPresets,
}

#[derive(Debug, Serialize)]
struct DefaultsPresets {
    #[serde(skip_serializing_if = "Option::is_none")]
    max_context: Option<DefaultsPreset>,
    #[serde(skip_serializing_if = "Option::is_none")]
    balanced: Option<DefaultsPreset>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fast_response: Option<DefaultsPreset>,
    #[serde(skip_serializing_if = "Option::is_none")]
    serving: Option<DefaultsPreset>,
}

#[derive(Debug, Serialize)]
struct DefaultsPreset {
    /// Context per slot.
    num_ctx: u32,
    /// Parallel slots (`-np`, `OLLAMA_NUM_PARALLEL`): the streams served at once.
    num_parallel: u32,
    batch: u32,
    ubatch: u32,
    num_predict: u32,
    /// Ollama's default (physical cores); `null` when unknown.
    num_thread: Option<u32>,
    kv_cache_type: KvCacheType,
    kv_cache_type_v: KvCacheType,
    flash_attn: FlashAttn,
    performance: Performance,
}

#[derive(Debug, Serialize)]
struct Performance {
    tokens_per_sec: f64,
    /// Absent for a single sample.
    tokens_per_sec_stddev: Option<f64>,
    tokens_per_sec_p50: f64,
    tokens_per_sec_p95: f64,
    ttft_ms: f64,
    ttft_ms_stddev: Option<f64>,
    ttft_ms_p50: f64,
    ttft_ms_p95: f64,
    prefill_tokens_per_sec: Option<f64>,
    /// The measured success rate (successful samples / samples).
    stability_score: f64,
    cv: Option<f64>,
    samples: u32,
    trial_id: u32,
    phase: Phase,
    /// Absent for `serving`, which is not scored.
    score: Option<f64>,
    peak_process_rss_mb: Option<u64>,
    peak_gpu_mem_mb: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    peak_server_gpu_mem_mb: Option<u64>,
}

impl DefaultsPresets {
    fn none() -> Self {
        Self {
            max_context: None,
            balanced: None,
            fast_response: None,
            serving: None,
        }
    }
}

impl DefaultsFile {
    fn new(s: &RunSummary) -> Self {
        let entry = |p: &Preset| DefaultsPreset {
            num_ctx: p.ctx,
            num_parallel: p.config.concurrency,
            batch: p.config.batch,
            ubatch: p.config.ubatch,
            num_predict: s.config.ozone.n_predict,
            num_thread: s.hardware.cpu.physical_cores.map(|m| m.value),
            kv_cache_type: p.config.variant.cache_type_k,
            kv_cache_type_v: p.config.variant.cache_type_v,
            flash_attn: p.config.variant.flash_attn,
            performance: Performance {
                tokens_per_sec: round(p.decode_tps.mean, 2),
                tokens_per_sec_stddev: p.decode_tps.stddev.map(|v| round(v, 2)),
                tokens_per_sec_p50: round(p.decode_tps.p50, 2),
                tokens_per_sec_p95: round(p.decode_tps.p95, 2),
                ttft_ms: round(p.ttft_ms.mean, 1),
                ttft_ms_stddev: p.ttft_ms.stddev.map(|v| round(v, 1)),
                ttft_ms_p50: round(p.ttft_ms.p50, 1),
                ttft_ms_p95: round(p.ttft_ms.p95, 1),
                prefill_tokens_per_sec: p.prefill_tps.as_ref().map(|s| round(s.mean, 2)),
                stability_score: p.evidence.success_rate,
                cv: p.evidence.cv.map(|c| round(c, 4)),
                samples: p.evidence.samples,
                trial_id: p.evidence.trial_id,
                phase: p.evidence.phase,
                score: p.score.map(|s| round(s.total, 4)),
                peak_process_rss_mb: p.peaks.process_rss_bytes.map(|b| b >> 20),
                peak_gpu_mem_mb: p.peaks.gpu_mem_used_bytes.map(|b| b >> 20),
                peak_server_gpu_mem_mb: p.peaks.server_gpu_mem_bytes.map(|b| b >> 20),
            },
        };
        let (mut presets, note) = match &s.presets {
            Presets::NoStableConfiguration => (
                DefaultsPresets::none(),
                Some("no configuration was stable: no presets".to_string()),
            ),
            Presets::OnlyOne { preset } => (
                DefaultsPresets {
                    max_context: Some(entry(preset)),
                    ..DefaultsPresets::none()
                },
                Some(
                    "only one configuration was stable; it is under max_context and serves \
                     every preset"
                        .to_string(),
                ),
            ),
            Presets::Three {
                max_context,
                balanced,
                fast_response,
            } => (
                DefaultsPresets {
                    max_context: Some(entry(max_context)),
                    balanced: Some(entry(balanced)),
                    fast_response: Some(entry(fast_response)),
                    serving: None,
                },
                None,
            ),
        };
        presets.serving = s.serving.as_ref().map(entry);
        Self {
            model: s.model.name.clone(),
            updated_at: s.finished_at.unwrap_or(s.started_at),
            source: s.model_source.clone(),
            hardware_fingerprint: s.hardware.fingerprint(),
            note,
            presets,
        }
    }
}

#[derive(Serialize)]
struct EnvFile<'a> {
    ozone_version: &'a str,
    written_at: DateTime<Utc>,
    backend: BackendKind,
    versions: &'a std::collections::BTreeMap<String, String>,
    plugins: &'a [PluginUse],
    hardware_fingerprint: String,
    hardware: &'a crate::hardware::HardwareSnapshot,
}

/// Figures in the defaults file are rounded for reading; the summary keeps them exact.
fn round(v: f64, decimals: i32) -> f64 {
    let m = 10f64.powi(decimals);
    (v * m).round() / m
}

fn to_json(path: &Path, value: &impl Serialize) -> Result<String, ReportError> {
    let mut text = serde_json::to_string_pretty(value).map_err(|e| ReportError::Encode {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    text.push('\n');
    Ok(text)
}

fn write(path: &Path, contents: &str) -> Result<(), ReportError> {
    write_file(path, contents, 0o644)
}

/// Writes `contents` to `path` whole or not at all (see the module comment). `mode`
/// is the new file's permission bits, less the umask as for any new file.
pub fn write_file(path: &Path, contents: &str, mode: u32) -> Result<(), ReportError> {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| ReportError::io(dir, e))?;
    let mut file = tempfile::Builder::new()
        .prefix(".ozone-")
        .permissions(std::fs::Permissions::from_mode(mode))
        .tempfile_in(dir)
        .map_err(|e| ReportError::io(path, e))?;
    // A failure drops the temporary file, which deletes it.
    file.write_all(contents.as_bytes())
        .and_then(|()| file.as_file().sync_all())
        .map_err(|e| ReportError::io(path, e))?;
    file.persist(path)
        .map_err(|e| ReportError::io(path, e.error))?;
    Ok(())
}
