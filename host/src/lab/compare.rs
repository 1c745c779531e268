//! Runs strategies through profiles with the tune driver and tabulates how each did.

use std::str::FromStr;
use std::sync::Arc;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::plugin::{PluginError, PluginHost, PluginRef};
use crate::record::{FailureKind, Phase, Verdict};
use crate::tune::driver::{Driver, TrialBook, TuneError};
use crate::tune::plan::{load_plugins, plan};
use crate::tune::Limits;

use super::executor::{DecisionRecorder, ReplayExecutor, ReplayedTrial};
use super::profile::{Decision, Profile};

/// What one strategy did on one profile.
#[derive(Debug, Clone, Serialize)]
pub struct Replay {
    pub profile: String,
    /// Context strategy, as given (a built-in name or a file).
    pub strategy: String,
    pub batch_strategy: String,
    /// What the run settled on; absent when the strategy erred.
    pub limits: Option<Limits>,
    /// Why the run stopped early: the plugin's error (sandbox, contract) or its load.
    pub error: Option<String>,
    /// The plugin error behind `error`, when a plugin's was (the CLI's exit code).
    #[serde(skip)]
    pub plugin_error: Option<Arc<PluginError>>,
    pub trials: Vec<ReplayedTrial>,
    pub decisions: Vec<Decision>,
    /// The profile's largest recorded stable context.
    pub true_limit: Option<u32>,
}

impl Replay {
    pub fn failed(&self) -> bool {
        self.error.is_some()
    }

    pub fn interpolated(&self) -> usize {
        self.trials
            .iter()
            .filter(|t| t.interpolated.is_some())
            .count()
    }

    /// The figures of one row of the comparison.
    pub fn row(&self) -> Row {
        let count =
            |pred: &dyn Fn(&ReplayedTrial) -> bool| self.trials.iter().filter(|t| pred(t)).count();
        Row {
            profile: self.profile.clone(),
            strategy: short_name(&self.strategy),
            batch_strategy: short_name(&self.batch_strategy),
            trials: self.trials.len(),
            context_trials: count(&|t| t.phase == Phase::Context),
            out_of_memory: count(&|t| t.failure == Some(FailureKind::OutOfMemory)),
            breaches: count(&|t| matches!(t.failure, Some(FailureKind::ThresholdBreach(_)))),
            other_failures: count(&|t| {
                t.verdict != Verdict::Stable
                    && !matches!(
                        t.failure,
                        Some(FailureKind::OutOfMemory | FailureKind::ThresholdBreach(_))
                    )
            }),
            simulated_s: self.trials.iter().map(|t| t.duration_ms).sum::<u64>() as f64 / 1000.0,
            answer: self.limits.as_ref().and_then(|l| l.max_context),
            true_limit: self.true_limit,
            best_batch: self.limits.as_ref().and_then(|l| l.best_batch),
            interpolated: self.interpolated(),
            error: self.error.clone(),
        }
    }
}

/// One line of the comparison table (also its `--json` form).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    pub profile: String,
    pub strategy: String,
    pub batch_strategy: String,
    pub trials: usize,
    pub context_trials: usize,
    /// Out-of-memory trials: the expensive failures on a real machine.
    pub out_of_memory: usize,
    /// Threshold breaches (the guard killed the server).
    pub breaches: usize,
    /// Unstable runs, timeouts, server errors, bad output.
    pub other_failures: usize,
    /// Sum of the trials' recorded durations (interpolated ones estimated).
    pub simulated_s: f64,
    /// The largest context the strategy settled on.
    pub answer: Option<u32>,
    pub true_limit: Option<u32>,
    pub best_batch: Option<u32>,
    pub interpolated: usize,
    pub error: Option<String>,
}

/// Drives `strategy` (and `batch_strategy`, else the profile's recorded one) through
/// `profile` exactly as `ozone tune` would, with trials answered from the profile.
pub async fn replay(
    plugins: &PluginHost,
    profile: &Profile,
    profile_name: &str,
    strategy: &str,
    batch_strategy: Option<&str>,
) -> Replay {
    let mut config = profile.config.clone();
    config.ozone.context_strategy = strategy.to_string();
    if let Some(batch) = batch_strategy {
        config.ozone.batch_strategy = batch.to_string();
    }
    let mut replay = Replay {
        profile: profile_name.to_string(),
        strategy: strategy.to_string(),
        batch_strategy: config.ozone.batch_strategy.clone(),
        limits: None,
        error: None,
        plugin_error: None,
        trials: Vec::new(),
        decisions: Vec::new(),
        true_limit: profile.true_limit(),
    };
    let thresholds = profile.thresholds();
    let loaded = load_plugins(
        plugins,
        &config,
        &profile.hardware,
        &thresholds,
        &profile.model,
        &profile.parameters,
    );
    let mut strategies = match loaded {
        Ok(strategies) => strategies,
        Err(e) => {
            replay.error = Some(load_error(&e));
            replay.plugin_error = Some(Arc::new(e));
            return replay;
        }
    };
    let mut plan = plan(&config, &profile.model, &profile.parameters);
    // Simulated time needs no real settling between concurrency levels.
    plan.stabilization_delay = std::time::Duration::ZERO;
    let mut executor = ReplayExecutor::new(profile);
    let mut observer = DecisionRecorder::default();
    let mut driver = Driver {
        executor: &mut executor,
        observer: &mut observer,
        book: TrialBook::default(),
        snapshot: &profile.hardware,
        thresholds: &thresholds,
        cancel: CancellationToken::new(),
    };
    let outcome = driver.run(&plan, &mut strategies).await;
    match outcome {
        Ok(limits) => replay.limits = Some(limits),
        Err(TuneError::Plugin(e)) => {
            replay.error = Some(e.to_string());
            replay.plugin_error = Some(Arc::new(e));
        }
        Err(e) => replay.error = Some(e.to_string()),
    }
    replay.trials = executor.trials;
    replay.decisions = observer.decisions;
    replay
}

/// [`replay`] on a single-threaded runtime of its own.
pub fn replay_blocking(
    plugins: &PluginHost,
    profile: &Profile,
    profile_name: &str,
    strategy: &str,
    batch_strategy: Option<&str>,
) -> std::io::Result<Replay> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()?;
    Ok(runtime.block_on(replay(
        plugins,
        profile,
        profile_name,
        strategy,
        batch_strategy,
    )))
}

fn load_error(e: &PluginError) -> String {
    format!("could not load: {e}")
}

/// A built-in's name, or a component file's stem (`…/memory_model.wasm` → `memory_model`).
fn short_name(strategy: &str) -> String {
    match PluginRef::from_str(strategy) {
        Ok(PluginRef::File(path)) => path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| strategy.to_string()),
        _ => strategy.to_string(),
    }
}

/// The comparison as a text table, one row per (profile, strategy), errors below it.
pub fn render_table(rows: &[Row]) -> String {
    let header = [
        "profile",
        "strategy",
        "trials",
        "ctx",
        "OOM",
        "breach",
        "other",
        "sim time",
        "answer",
        "true limit",
        "interp",
    ];
    let mut lines: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
    let opt = |v: Option<u32>| v.map_or("-".to_string(), |v| v.to_string());
    for r in rows {
        let answer = match (&r.error, r.answer, r.true_limit) {
            (Some(_), _, _) => "ERROR".to_string(),
            (None, Some(a), Some(t)) if t > 0 => {
                format!("{a} ({:+.0}%)", (f64::from(a) / f64::from(t) - 1.0) * 100.0)
            }
            (None, a, _) => opt(a),
        };
        lines.push(vec![
            r.profile.clone(),
            r.strategy.clone(),
            r.trials.to_string(),
            r.context_trials.to_string(),
            r.out_of_memory.to_string(),
            r.breaches.to_string(),
            r.other_failures.to_string(),
            format!("{:.1} s", r.simulated_s),
            answer,
            opt(r.true_limit),
            r.interpolated.to_string(),
        ]);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            lines
                .iter()
                .map(|l| l[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for line in &lines {
        let cells: Vec<String> = line
            .iter()
            .enumerate()
            .map(|(i, cell)| {
                // Names left, figures right.
                if i < 2 {
                    format!("{cell:<w$}", w = widths[i])
                } else {
                    format!("{cell:>w$}", w = widths[i])
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    if rows.iter().any(|r| r.interpolated > 0) {
        out.push_str(
            "interp: trials the profile never measured, answered from its measured neighbours \
             (--json says how each was derived)\n",
        );
    }
    for r in rows.iter().filter(|r| r.error.is_some()) {
        out.push_str(&format!(
            "error: {} on {}: {}\n",
            r.strategy,
            r.profile,
            r.error.as_deref().unwrap_or_default()
        ));
    }
    out
}
