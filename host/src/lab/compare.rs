//! Runs strategies through profiles with the tune driver and tabulates how each did:
//! one replay per (profile, strategy, settings variant, seed), summarised over seeds.

use std::str::FromStr;
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::config::{plugin_name, Config};
use crate::plugin::{PluginError, PluginHost, PluginRef};
use crate::record::Limits;
use crate::record::{FailureKind, Phase, Verdict};
use crate::tune::driver::{Driver, TrialBook, TuneError};
use crate::tune::setup::{load_plugins, plan};

use super::executor::{DecisionRecorder, ReplayExecutor, ReplayedTrial};
use super::profile::{Decision, Profile};

/// A strategy to replay: which plugins, with which settings.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Variant {
    /// Context strategy: a built-in name or a component file.
    pub strategy: String,
    /// Its settings (a JSON object merged over `ozone.plugin_settings.<its name>`).
    pub settings: Option<Value>,
    /// Batch strategy (default: the one the profile's configuration names).
    pub batch_strategy: Option<String>,
    pub batch_settings: Option<Value>,
}

impl Variant {
    pub fn new(strategy: impl Into<String>) -> Self {
        Self {
            strategy: strategy.into(),
            ..Self::default()
        }
    }

    /// The settings the variant sets, as a short label (`-` when none).
    pub fn label(&self) -> String {
        let mut parts = Vec::new();
        if let Some(s) = &self.settings {
            parts.push(s.to_string());
        }
        if let Some(s) = &self.batch_settings {
            parts.push(format!("batch {s}"));
        }
        if parts.is_empty() {
            "-".into()
        } else {
            parts.join(" ")
        }
    }
}

/// What the user's configuration says about plugins, applied over each profile's
/// recorded configuration: the `search_strategy` keys (the batch bounds stay the
/// profile's: they decide what was measured) and `ozone.plugin_settings`.
#[derive(Debug, Clone, Default)]
pub struct PluginConfig {
    pub search_strategy: Option<crate::config::SearchStrategy>,
    pub plugin_settings: std::collections::BTreeMap<String, Value>,
}

impl PluginConfig {
    /// The plugin-facing part of a user's configuration file.
    pub fn from_config(config: &Config) -> Self {
        Self {
            search_strategy: Some(config.search_strategy.clone()),
            plugin_settings: config.ozone.plugin_settings.clone(),
        }
    }

    fn apply(&self, config: &mut Config) {
        if let Some(s) = &self.search_strategy {
            let batch = config.search_strategy.batch_adaptation.clone();
            config.search_strategy = s.clone();
            config.search_strategy.batch_adaptation = batch;
        }
        for (name, value) in &self.plugin_settings {
            config
                .ozone
                .plugin_settings
                .insert(name.clone(), value.clone());
        }
    }
}

/// What one strategy did on one profile with one seed.
#[derive(Debug, Clone, Serialize)]
pub struct Replay {
    pub profile: String,
    /// Context strategy, as given (a built-in name or a file).
    pub strategy: String,
    pub batch_strategy: String,
    /// The settings variant (`-`: the configuration's).
    pub settings: String,
    pub seed: u64,
    /// What the run settled on; absent when the strategy erred.
    pub limits: Option<Limits>,
    /// Why the run stopped early: the plugin's error (sandbox, contract) or its load.
    pub error: Option<String>,
    /// The plugin error behind `error`, when a plugin's was (the CLI's exit code).
    #[serde(skip)]
    pub plugin_error: Option<Arc<PluginError>>,
    pub trials: Vec<ReplayedTrial>,
    pub decisions: Vec<Decision>,
    /// The profile's true limit (largest context verified mostly stable).
    pub true_limit: Option<u32>,
    /// The profile's context step: answer errors are counted in it.
    pub granularity: u32,
}

impl Replay {
    pub fn failed(&self) -> bool {
        self.error.is_some()
    }

    pub fn interpolated(&self) -> usize {
        self.trials
            .iter()
            .filter(|t| t.source.is_interpolated())
            .count()
    }

    pub fn not_recorded(&self) -> usize {
        self.trials
            .iter()
            .filter(|t| t.source.is_not_recorded())
            .count()
    }

    /// The figures of this one replay.
    pub fn figures(&self) -> Figures {
        let count =
            |pred: &dyn Fn(&ReplayedTrial) -> bool| self.trials.iter().filter(|t| pred(t)).count();
        let answer = self.limits.as_ref().and_then(|l| l.max_context);
        Figures {
            trials: self.trials.len(),
            context_trials: count(&|t| t.phase == Phase::Context),
            out_of_memory: count(&|t| t.failure == Some(FailureKind::OutOfMemory)),
            breaches: count(&|t| matches!(t.failure, Some(FailureKind::ThresholdBreach(_)))),
            other_failures: count(&|t| {
                t.verdict != Verdict::Stable
                    && !t.source.is_not_recorded()
                    && !matches!(
                        t.failure,
                        Some(FailureKind::OutOfMemory | FailureKind::ThresholdBreach(_))
                    )
            }),
            not_recorded: self.not_recorded(),
            interpolated: self.interpolated(),
            simulated_s: self.trials.iter().map(|t| t.duration_ms).sum::<u64>() as f64 / 1000.0,
            answer,
            error_tokens: match (answer, self.true_limit) {
                (Some(a), Some(t)) => Some(i64::from(a) - i64::from(t)),
                _ => None,
            },
            best_batch: self.limits.as_ref().and_then(|l| l.best_batch),
            max_concurrency: self.limits.as_ref().and_then(|l| l.max_concurrency),
        }
    }
}

/// The figures of one replay.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Figures {
    pub trials: usize,
    pub context_trials: usize,
    /// Out-of-memory trials: the expensive failures on a real machine.
    pub out_of_memory: usize,
    /// Threshold breaches (the guard killed the server).
    pub breaches: usize,
    /// Unstable runs, timeouts, server errors, bad output (not counting "not recorded").
    pub other_failures: usize,
    /// Trials outside what the profile measured (answered as failed).
    pub not_recorded: usize,
    /// Trials answered between measured neighbours.
    pub interpolated: usize,
    /// Sum of the trials' recorded durations: the wall time on that machine.
    pub simulated_s: f64,
    /// The largest context the strategy settled on.
    pub answer: Option<u32>,
    /// `answer − true limit`, tokens.
    pub error_tokens: Option<i64>,
    pub best_batch: Option<u32>,
    pub max_concurrency: Option<u32>,
}

/// Mean and range of one figure over the seeds of a row.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Spread {
    pub mean: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    /// `None` when no value is present.
    pub fn of(values: impl IntoIterator<Item = f64>) -> Option<Self> {
        let values: Vec<f64> = values.into_iter().collect();
        if values.is_empty() {
            return None;
        }
        let (min, max) = values
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
                (lo.min(v), hi.max(v))
            });
        Some(Self {
            mean: values.iter().sum::<f64>() / values.len() as f64,
            min,
            max,
        })
    }

    /// `9`, or `9.4 [8–11]` when the seeds disagree; `decimals` for the figures.
    fn show(&self, decimals: usize) -> String {
        if self.min == self.max {
            format!("{:.decimals$}", self.mean)
        } else {
            format!(
                "{:.decimals$} [{:.decimals$}–{:.decimals$}]",
                self.mean, self.min, self.max
            )
        }
    }
}

/// One line of the comparison: a (profile, strategy, variant) over its seeds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    pub profile: String,
    pub strategy: String,
    pub batch_strategy: String,
    pub settings: String,
    /// Replays behind the row (one per seed).
    pub replays: usize,
    pub trials: Spread,
    pub context_trials: Spread,
    pub out_of_memory: Spread,
    pub breaches: Spread,
    pub other_failures: Spread,
    pub not_recorded: Spread,
    pub interpolated: Spread,
    pub simulated_s: Spread,
    /// Over the replays that settled on a context.
    pub answer: Option<Spread>,
    pub error_tokens: Option<Spread>,
    /// Replays that settled on no context (and did not err).
    pub no_answer: usize,
    pub true_limit: Option<u32>,
    pub granularity: u32,
    /// The first error, when a replay erred.
    pub error: Option<String>,
}

impl Row {
    /// Summarises the replays of one (profile, strategy, variant); `replays` is not empty.
    pub fn of(replays: &[&Replay]) -> Row {
        let first = replays[0];
        let figures: Vec<Figures> = replays.iter().map(|r| r.figures()).collect();
        let spread = |f: &dyn Fn(&Figures) -> f64| {
            Spread::of(figures.iter().map(f)).unwrap_or(Spread {
                mean: 0.0,
                min: 0.0,
                max: 0.0,
            })
        };
        let ok = || replays.iter().zip(&figures).filter(|(r, _)| !r.failed());
        Row {
            profile: first.profile.clone(),
            strategy: short_name(&first.strategy),
            batch_strategy: short_name(&first.batch_strategy),
            settings: first.settings.clone(),
            replays: replays.len(),
            trials: spread(&|f| f.trials as f64),
            context_trials: spread(&|f| f.context_trials as f64),
            out_of_memory: spread(&|f| f.out_of_memory as f64),
            breaches: spread(&|f| f.breaches as f64),
            other_failures: spread(&|f| f.other_failures as f64),
            not_recorded: spread(&|f| f.not_recorded as f64),
            interpolated: spread(&|f| f.interpolated as f64),
            simulated_s: spread(&|f| f.simulated_s),
            answer: Spread::of(ok().filter_map(|(_, f)| f.answer.map(f64::from))),
            error_tokens: Spread::of(ok().filter_map(|(_, f)| f.error_tokens.map(|e| e as f64))),
            no_answer: ok().filter(|(_, f)| f.answer.is_none()).count(),
            true_limit: first.true_limit,
            granularity: first.granularity,
            error: replays.iter().find_map(|r| r.error.clone()),
        }
    }
}

/// Groups replays into rows (same profile, strategy, batch strategy and settings), in
/// the order they first appear.
pub fn rows(replays: &[Replay]) -> Vec<Row> {
    let mut groups: Vec<Vec<&Replay>> = Vec::new();
    for r in replays {
        let key = |x: &Replay| {
            (
                x.profile.clone(),
                x.strategy.clone(),
                x.batch_strategy.clone(),
                x.settings.clone(),
            )
        };
        match groups.iter_mut().find(|g| key(g[0]) == key(r)) {
            Some(g) => g.push(r),
            None => groups.push(vec![r]),
        }
    }
    groups.iter().map(|g| Row::of(g)).collect()
}

/// Drives `variant` through `profile` exactly as `ozone tune` would, with trials answered
/// from the profile (`seed`: see [`ReplayExecutor::new`]) and the plugin-facing
/// configuration `user` applied over the profile's.
pub async fn replay(
    plugins: &PluginHost,
    profile: &Profile,
    profile_name: &str,
    variant: &Variant,
    user: &PluginConfig,
    seed: u64,
) -> Replay {
    let mut config = profile.config.clone();
    user.apply(&mut config);
    config.ozone.context_strategy = variant.strategy.clone();
    if let Some(batch) = &variant.batch_strategy {
        config.ozone.batch_strategy = batch.clone();
    }
    for (strategy, settings) in [
        (config.ozone.context_strategy.clone(), &variant.settings),
        (config.ozone.batch_strategy.clone(), &variant.batch_settings),
    ] {
        if let Some(settings) = settings {
            merge_settings(&mut config, &plugin_name(&strategy), settings);
        }
    }
    let mut replay = Replay {
        profile: profile_name.to_string(),
        strategy: variant.strategy.clone(),
        batch_strategy: config.ozone.batch_strategy.clone(),
        settings: variant.label(),
        seed,
        limits: None,
        error: None,
        plugin_error: None,
        trials: Vec::new(),
        decisions: Vec::new(),
        true_limit: profile.true_limit(),
        granularity: profile.granularity,
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
            replay.error = Some(format!("could not load: {e}"));
            replay.plugin_error = Some(Arc::new(e));
            return replay;
        }
    };
    let mut plan = plan(&config, &profile.model, &profile.parameters);
    // Simulated time needs no real settling between concurrency levels.
    plan.stabilization_delay = std::time::Duration::ZERO;
    let mut executor = ReplayExecutor::new(profile, seed);
    let mut observer = DecisionRecorder::default();
    let mut driver = Driver::new(
        &mut executor,
        &mut observer,
        TrialBook::default(),
        &profile.hardware,
        &thresholds,
        CancellationToken::new(),
    );
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

/// `settings` merged over `ozone.plugin_settings.<name>` (its keys win).
fn merge_settings(config: &mut Config, name: &str, settings: &Value) {
    let entry = config
        .ozone
        .plugin_settings
        .entry(name.to_string())
        .or_insert_with(|| Value::Object(Default::default()));
    match (entry.as_object_mut(), settings.as_object()) {
        (Some(own), Some(new)) => own.extend(new.clone()),
        _ => *entry = settings.clone(),
    }
}

/// [`replay`] on a single-threaded runtime of its own.
pub fn replay_blocking(
    plugins: &PluginHost,
    profile: &Profile,
    profile_name: &str,
    variant: &Variant,
    user: &PluginConfig,
    seed: u64,
) -> std::io::Result<Replay> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()?;
    Ok(runtime.block_on(replay(plugins, profile, profile_name, variant, user, seed)))
}

/// A built-in's name, or a component file's stem (`…/memory_model.wasm` → `memory_model`).
fn short_name(strategy: &str) -> String {
    match PluginRef::from_str(strategy) {
        Ok(PluginRef::File(_)) => plugin_name(strategy),
        _ => strategy.to_string(),
    }
}

/// The comparison as a text table, one row per (profile, strategy, variant), notes and
/// errors below it.
pub fn render_table(rows: &[Row]) -> String {
    let mut header = vec![
        "profile",
        "strategy",
        "settings",
        "trials",
        "ctx",
        "OOM",
        "breach",
        "other",
        "not rec",
        "interp",
        "sim time",
        "answer",
        "error",
        "true limit",
    ];
    let show_settings = rows.iter().any(|r| r.settings != "-");
    if !show_settings {
        header.remove(2);
    }
    let mut lines: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
    for r in rows {
        let answer = match (&r.error, &r.answer) {
            (Some(_), _) => "ERROR".to_string(),
            (None, Some(a)) if r.no_answer == 0 => a.show(0),
            (None, Some(a)) => format!("{} ({} none)", a.show(0), r.no_answer),
            (None, None) => "none".into(),
        };
        let error = match (&r.error, &r.error_tokens) {
            (None, Some(e)) => {
                let steps = |v: f64| v / f64::from(r.granularity.max(1));
                let in_steps = Spread {
                    mean: steps(e.mean),
                    min: steps(e.min),
                    max: steps(e.max),
                };
                format!("{} steps", signed(&in_steps))
            }
            _ => "-".into(),
        };
        let mut line = vec![
            r.profile.clone(),
            r.strategy.clone(),
            r.settings.clone(),
            r.trials.show(1),
            r.context_trials.show(1),
            r.out_of_memory.show(1),
            r.breaches.show(1),
            r.other_failures.show(1),
            r.not_recorded.show(1),
            r.interpolated.show(1),
            format!("{} s", r.simulated_s.show(1)),
            answer,
            error,
            r.true_limit.map_or("-".into(), |t| t.to_string()),
        ];
        if !show_settings {
            line.remove(2);
        }
        lines.push(line.into_iter().map(|c| c.replace(".0 ", " ")).collect());
    }
    let names = if show_settings { 3 } else { 2 };
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
                if i < names {
                    format!("{cell:<w$}", w = widths[i])
                } else {
                    format!("{cell:>w$}", w = widths[i])
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    if rows.iter().any(|r| r.replays > 1) {
        out.push_str("figures: mean [min–max] over the seeds of each row\n");
    }
    if rows.iter().any(|r| r.not_recorded.max > 0.0) {
        out.push_str(
            "not rec: trials outside what the profile measured, answered as failed (nothing is extrapolated)\n",
        );
    }
    if rows.iter().any(|r| r.interpolated.max > 0.0) {
        out.push_str(
            "interp: trials answered between measured neighbours (--json says how each was derived)\n",
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

/// A spread with signs: `+0`, `-1 [-2–+0]`.
fn signed(s: &Spread) -> String {
    let f = |v: f64| {
        let r = (v * 10.0).round() / 10.0;
        if r == r.trunc() {
            format!("{r:+.0}")
        } else {
            format!("{r:+.1}")
        }
    };
    if s.min == s.max {
        f(s.mean)
    } else {
        format!("{} [{}–{}]", f(s.mean), f(s.min), f(s.max))
    }
}
