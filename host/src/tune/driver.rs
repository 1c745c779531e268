//! The search loop, independent of where trials come from: a real server (`ozone tune`)
//! or a recorded profile (the lab). The plugins decide what to try; the driver runs each
//! configuration once, feeds the outcome back and enforces the host's limits.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::guard::Thresholds;
use crate::hardware::HardwareSnapshot;
use crate::plugin::{
    trial_outcome, BatchScaler, ContextSearch, PluginError, Strategy, TrialOutcome,
};
use crate::record::{KvCacheType, Phase, TrialConfig, TrialRecord, Verdict};
use crate::trial::TrialRun;
use crate::tune::Limits;

/// Most trials one phase may ask for: a plugin that never says "done" is stopped here.
pub const MAX_TRIALS_PER_PHASE: usize = 32;

/// Largest physical micro-batch used (`-ub`); llama.cpp's own default.
const MAX_UBATCH: u32 = 512;

/// Runs one configuration. `ozone tune` runs it on a real server.
pub trait TrialExecutor {
    fn run(
        &mut self,
        id: u32,
        phase: Phase,
        config: &TrialConfig,
        cancel: &CancellationToken,
    ) -> impl Future<Output = TrialRun>;
}

/// Hears about every step of the loop: writes the log, moves the progress bars.
pub trait TuneObserver {
    fn phase_started(&mut self, _phase: Phase, _estimated_trials: usize) {}
    fn trial_started(&mut self, _id: u32, _phase: Phase, _config: &TrialConfig) {}
    /// Called once per trial actually run (not for trials reused from the log).
    fn trial_finished(&mut self, run: &TrialRun) -> Result<(), TuneError>;
    fn trial_reused(&mut self, _record: &TrialRecord) {}
    /// A plugin's proposal (`None`: the plugin is done).
    fn decision(&mut self, _phase: Phase, _plugin: &str, _proposed: Option<u32>) {}
    /// The loop ended, however it ended.
    fn finished(&mut self) {}
}

#[derive(Debug, thiserror::Error)]
pub enum TuneError {
    #[error(transparent)]
    Plugin(#[from] PluginError),
    #[error("plugin {plugin} asked for more than {MAX_TRIALS_PER_PHASE} trials in the {phase:?} phase without finishing")]
    Runaway { plugin: String, phase: Phase },
    #[error(
        "plugin {plugin} named {value} as its best {what}, but no stable trial of it was measured"
    )]
    UnmeasuredBest {
        plugin: String,
        what: &'static str,
        value: u32,
    },
    #[error("interrupted")]
    Interrupted,
    #[error("writing the trial log: {0}")]
    Log(String),
    /// The first trial's server never came up, for a reason that is not memory.
    #[error("{0}")]
    ServerCannotStart(String),
}

/// Every trial of one run, keyed by configuration so none is measured twice (across
/// phases, and across `--resume`).
#[derive(Debug, Default)]
pub struct TrialBook {
    by_config: HashMap<TrialConfig, usize>,
    records: Vec<TrialRecord>,
}

impl TrialBook {
    pub fn from_records(records: impl IntoIterator<Item = TrialRecord>) -> Self {
        let mut book = Self::default();
        for r in records {
            book.insert(r);
        }
        book
    }

    fn insert(&mut self, record: TrialRecord) {
        match self.by_config.get(&record.config) {
            Some(&i) => self.records[i] = record,
            None => {
                self.by_config
                    .insert(record.config.clone(), self.records.len());
                self.records.push(record);
            }
        }
    }

    pub fn get(&self, config: &TrialConfig) -> Option<&TrialRecord> {
        self.by_config.get(config).map(|&i| &self.records[i])
    }

    pub fn records(&self) -> &[TrialRecord] {
        &self.records
    }

    fn next_id(&self) -> u32 {
        self.records.iter().map(|r| r.id).max().unwrap_or(0) + 1
    }
}

/// What the host fixes for every trial of a run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Batch used while searching the context (the batch scaler's starting point).
    pub initial_batch: u32,
    /// `batch_adaptation.enabled`: false keeps the initial batch, no batch phase.
    pub batch_scaling: bool,
    pub kv_cache_type: KvCacheType,
    /// Concurrency ladder; empty skips the phase.
    pub concurrency_levels: Vec<u32>,
    pub stabilization_delay: Duration,
    /// Expected trials per phase, for progress only.
    pub estimated_context_trials: usize,
    pub estimated_batch_trials: usize,
}

pub struct Driver<'a, E, O> {
    pub executor: &'a mut E,
    pub observer: &'a mut O,
    pub book: TrialBook,
    pub snapshot: &'a HardwareSnapshot,
    pub thresholds: &'a Thresholds,
    pub cancel: CancellationToken,
}

impl<E: TrialExecutor, O: TuneObserver> Driver<'_, E, O> {
    /// Context search, then batch scaling at the context found, then the concurrency
    /// ladder at both. Stops early (with what was found) when a phase finds nothing.
    pub async fn run(
        &mut self,
        plan: &Plan,
        context: &mut ContextSearch,
        batch: &mut BatchScaler,
    ) -> Result<Limits, TuneError> {
        let mut limits = Limits {
            max_context: self.search_context(plan, context).await?,
            ..Limits::default()
        };
        let Some(ctx) = limits.max_context else {
            return Ok(limits);
        };
        limits.best_batch = if plan.batch_scaling {
            self.scale_batch(plan, ctx, batch).await?
        } else {
            // The context search already measured the initial batch at `ctx` as stable.
            Some(plan.initial_batch)
        };
        let Some(batch) = limits.best_batch else {
            return Ok(limits);
        };
        limits.max_concurrency = self.climb_concurrency(plan, ctx, batch).await?;
        Ok(limits)
    }

    async fn search_context(
        &mut self,
        plan: &Plan,
        plugin: &mut ContextSearch,
    ) -> Result<Option<u32>, TuneError> {
        self.observer
            .phase_started(Phase::Context, plan.estimated_context_trials);
        let config = |ctx| trial_config(ctx, plan.initial_batch, 1, plan.kv_cache_type);
        let best = self.search(Phase::Context, plugin, config).await?;
        self.checked_best(best, plugin.name(), "context", |c| Some(c.ctx))
    }

    async fn scale_batch(
        &mut self,
        plan: &Plan,
        ctx: u32,
        plugin: &mut BatchScaler,
    ) -> Result<Option<u32>, TuneError> {
        self.observer
            .phase_started(Phase::Batch, plan.estimated_batch_trials);
        let config = |batch| trial_config(ctx, batch, 1, plan.kv_cache_type);
        let best = self.search(Phase::Batch, plugin, config).await?;
        self.checked_best(best, plugin.name(), "batch", |c| {
            (c.ctx == ctx).then_some(c.batch)
        })
    }

    /// Proposal, trial, outcome, until the plugin is done; then its `best()`.
    async fn search(
        &mut self,
        phase: Phase,
        plugin: &mut impl Strategy<Outcome = TrialOutcome>,
        config_for: impl Fn(u32) -> TrialConfig,
    ) -> Result<Option<u32>, TuneError> {
        for trials in 0..=MAX_TRIALS_PER_PHASE {
            let proposed = plugin.propose()?;
            self.observer.decision(phase, plugin.name(), proposed);
            let Some(value) = proposed else {
                return Ok(plugin.best()?);
            };
            if trials == MAX_TRIALS_PER_PHASE {
                break;
            }
            let record = self.trial(phase, config_for(value)).await?;
            plugin.observe(&trial_outcome(&record, self.snapshot, self.thresholds))?;
        }
        Err(TuneError::Runaway {
            plugin: plugin.name().to_string(),
            phase,
        })
    }

    /// Levels in order; the first level that is not stable ends the climb.
    async fn climb_concurrency(
        &mut self,
        plan: &Plan,
        ctx: u32,
        batch: u32,
    ) -> Result<Option<u32>, TuneError> {
        if plan.concurrency_levels.is_empty() {
            return Ok(None);
        }
        self.observer
            .phase_started(Phase::Concurrency, plan.concurrency_levels.len());
        let mut sustained = None;
        for (i, &level) in plan.concurrency_levels.iter().enumerate() {
            let config = trial_config(ctx, batch, level, plan.kv_cache_type);
            if i > 0 && self.book.get(&config).is_none() {
                // Let the machine settle (temperatures, freed memory) between levels.
                tokio::select! {
                    _ = tokio::time::sleep(plan.stabilization_delay) => {}
                    _ = self.cancel.cancelled() => return Err(TuneError::Interrupted),
                }
            }
            let record = self.trial(Phase::Concurrency, config).await?;
            if record.verdict != Verdict::Stable {
                break;
            }
            sustained = Some(level);
        }
        Ok(sustained)
    }

    /// Runs a configuration, or hands back its earlier measurement.
    async fn trial(&mut self, phase: Phase, config: TrialConfig) -> Result<TrialRecord, TuneError> {
        if let Some(record) = self.book.get(&config) {
            self.observer.trial_reused(record);
            return Ok(record.clone());
        }
        if self.cancel.is_cancelled() {
            return Err(TuneError::Interrupted);
        }
        let id = self.book.next_id();
        self.observer.trial_started(id, phase, &config);
        let run = self.executor.run(id, phase, &config, &self.cancel).await;
        if self.cancel.is_cancelled() {
            // A trial cut short by Ctrl-C proves nothing: it is not logged, and
            // `--resume` runs it again.
            return Err(TuneError::Interrupted);
        }
        self.observer.trial_finished(&run)?;
        // No server of this run has come up yet, and this one could not for a reason
        // that is not memory: every other configuration would fail the same way.
        let never_served = self
            .book
            .records()
            .iter()
            .all(|r| r.samples.is_empty() && r.granted_ctx.is_none());
        if run.server_cannot_start && never_served {
            return Err(TuneError::ServerCannotStart(cannot_start(&run.record)));
        }
        self.book.insert(run.record.clone());
        Ok(run.record)
    }

    /// A plugin's `best()` must name a value this run measured as stable.
    fn checked_best(
        &self,
        best: Option<u32>,
        plugin: &str,
        what: &'static str,
        value_of: impl Fn(&TrialConfig) -> Option<u32>,
    ) -> Result<Option<u32>, TuneError> {
        let Some(value) = best else { return Ok(None) };
        let measured = self
            .book
            .records()
            .iter()
            .any(|r| r.verdict == Verdict::Stable && value_of(&r.config) == Some(value));
        if measured {
            Ok(Some(value))
        } else {
            Err(TuneError::UnmeasuredBest {
                plugin: plugin.to_string(),
                what,
                value,
            })
        }
    }
}

/// Why a run stops after a server that cannot start, with what the server logged.
fn cannot_start(record: &TrialRecord) -> String {
    let why = record
        .failure
        .as_ref()
        .map_or("it did not come up", |f| f.message.as_str());
    let tail = if record.server_log_tail.is_empty() {
        " It logged nothing.".to_string()
    } else {
        format!(
            " Its last lines:\n  {}",
            record.server_log_tail.join("\n  ")
        )
    };
    format!(
        "llama-server cannot start: {why}. That is not a lack of memory, so no other \
         configuration would start either: stopped after the first trial.{tail}"
    )
}

/// The configuration the driver runs for a context, batch and stream count.
pub fn trial_config(ctx: u32, batch: u32, concurrency: u32, kv: KvCacheType) -> TrialConfig {
    TrialConfig {
        ctx,
        batch,
        ubatch: batch.min(MAX_UBATCH),
        concurrency,
        kv_cache_type: kv,
    }
}

#[cfg(test)]
mod tests {
    //! The loop against a synthetic machine: a context is stable up to a hidden limit,
    //! a batch is faster up to 128, two streams are the most it sustains. The plugins are
    //! the real built-in components.

    use super::*;
    use crate::backend::{ModelMetadata, SizeClass};
    use crate::plugin::{self, ContextBounds, HardwareFacts, PluginHost, PluginRef};
    use crate::record::{FailureKind, Peaks, SampleSeries, Stats, TrialFailure};

    const LIMIT: u32 = 100_000;

    struct Machine {
        runs: Vec<TrialConfig>,
    }

    impl TrialExecutor for Machine {
        async fn run(
            &mut self,
            id: u32,
            phase: Phase,
            config: &TrialConfig,
            _cancel: &CancellationToken,
        ) -> TrialRun {
            self.runs.push(config.clone());
            let fits = config.ctx <= LIMIT && config.concurrency <= 2;
            let tps = 100.0 + f64::from(config.batch.min(128));
            let stats = Stats::from_values(&[tps, tps, tps]);
            TrialRun {
                record: TrialRecord {
                    id,
                    phase,
                    config: config.clone(),
                    started_at: chrono::Utc::now(),
                    duration_ms: 1000,
                    granted_ctx: Some(config.ctx),
                    samples: Vec::new(),
                    ttft_ms: stats.clone(),
                    prefill_tps: stats.clone(),
                    decode_tps: if fits { stats } else { None },
                    success_rate: if fits { 1.0 } else { 0.0 },
                    cv: fits.then_some(0.0),
                    peaks: Peaks::default(),
                    breach: None,
                    failure: (!fits).then(|| TrialFailure {
                        kind: FailureKind::OutOfMemory,
                        message: "synthetic".into(),
                    }),
                    verdict: if fits {
                        Verdict::Stable
                    } else {
                        Verdict::Failed
                    },
                    server_log_tail: Vec::new(),
                },
                series: SampleSeries::default(),
                server_cannot_start: false,
            }
        }
    }

    #[derive(Default)]
    struct Quiet {
        reused: usize,
    }

    impl TuneObserver for Quiet {
        fn trial_finished(&mut self, _run: &TrialRun) -> Result<(), TuneError> {
            Ok(())
        }
        fn trial_reused(&mut self, _record: &TrialRecord) {
            self.reused += 1;
        }
    }

    fn plugins() -> (ContextSearch, BatchScaler) {
        // A shared cache: compiling the components once is enough for every test.
        let cache = std::env::temp_dir().join("ozone-driver-tests-components");
        let host = PluginHost::new(Default::default(), Some(cache)).expect("engine");
        let facts = ModelMetadata {
            name: "synthetic".into(),
            architecture: Some("llama".into()),
            parameter_count: Some(1_000_000_000),
            size_class: SizeClass::Small,
            trained_context: Some(131_072),
            block_count: Some(16),
            head_count: Some(16),
            head_count_kv: Some(4),
            embedding_length: Some(2048),
            key_length: Some(128),
            value_length: Some(128),
            weights_bytes: Some(1 << 30),
            digest: None,
        };
        let model = plugin::model_facts(&facts, ContextBounds::new(2048, 131_072, 256), None);
        let hw = HardwareFacts::default();
        let context = host
            .load_context(
                &PluginRef::Builtin("binary-search".into()),
                "{}",
                &hw,
                &model,
            )
            .expect("binary-search loads");
        let batch = host
            .load_batch(
                &PluginRef::Builtin("batch-scaler".into()),
                "{}",
                &hw,
                &model,
                &plugin::batch_bounds(256, plan().initial_batch),
            )
            .expect("batch-scaler loads");
        (context, batch)
    }

    fn plan() -> Plan {
        Plan {
            initial_batch: 64,
            batch_scaling: true,
            kv_cache_type: KvCacheType::F16,
            concurrency_levels: vec![1, 2, 4, 8],
            stabilization_delay: Duration::ZERO,
            estimated_context_trials: 8,
            estimated_batch_trials: 3,
        }
    }

    #[tokio::test]
    async fn the_loop_finds_every_limit_and_measures_nothing_twice() {
        let (mut context, mut batch) = plugins();
        let mut machine = Machine { runs: Vec::new() };
        let mut observer = Quiet::default();
        let snapshot = crate::hardware::probe(&Default::default());
        let thresholds = Thresholds::default();
        let mut driver = Driver {
            executor: &mut machine,
            observer: &mut observer,
            book: TrialBook::default(),
            snapshot: &snapshot,
            thresholds: &thresholds,
            cancel: CancellationToken::new(),
        };
        let limits = driver.run(&plan(), &mut context, &mut batch).await.unwrap();

        let ctx = limits.max_context.expect("a stable context");
        assert!(ctx <= LIMIT && LIMIT - ctx < 1024, "found {ctx}");
        assert_eq!(ctx % 256, 0);
        assert_eq!(
            limits.best_batch,
            Some(128),
            "throughput stops improving past 128"
        );
        assert_eq!(limits.max_concurrency, Some(2), "4 streams fail");
        for (i, c) in machine.runs.iter().enumerate() {
            assert!(!machine.runs[..i].contains(c), "{c} measured twice");
        }
        // The batch scaler's first proposal (64) and concurrency 1 were measured before.
        assert!(observer.reused >= 2, "reused {}", observer.reused);
        let ladder: Vec<u32> = machine
            .runs
            .iter()
            .filter(|c| c.concurrency > 1)
            .map(|c| c.concurrency)
            .collect();
        assert_eq!(
            ladder,
            vec![2, 4],
            "the climb stops at the first failing level"
        );
    }

    #[tokio::test]
    async fn a_resumed_book_replays_without_running_again() {
        let snapshot = crate::hardware::probe(&Default::default());
        let thresholds = Thresholds::default();
        let mut first = Machine { runs: Vec::new() };
        let (mut context, mut batch) = plugins();
        let mut observer = Quiet::default();
        let mut driver = Driver {
            executor: &mut first,
            observer: &mut observer,
            book: TrialBook::default(),
            snapshot: &snapshot,
            thresholds: &thresholds,
            cancel: CancellationToken::new(),
        };
        let limits = driver.run(&plan(), &mut context, &mut batch).await.unwrap();
        let book = TrialBook::from_records(driver.book.records().to_vec());

        let mut second = Machine { runs: Vec::new() };
        let (mut context, mut batch) = plugins();
        let mut driver = Driver {
            executor: &mut second,
            observer: &mut observer,
            book,
            snapshot: &snapshot,
            thresholds: &thresholds,
            cancel: CancellationToken::new(),
        };
        let replayed = driver.run(&plan(), &mut context, &mut batch).await.unwrap();
        assert_eq!(replayed, limits);
        assert!(second.runs.is_empty(), "ran again: {:?}", second.runs);
    }

    #[tokio::test]
    async fn a_cancelled_run_stops_before_the_next_trial() {
        let snapshot = crate::hardware::probe(&Default::default());
        let thresholds = Thresholds::default();
        let mut machine = Machine { runs: Vec::new() };
        let (mut context, mut batch) = plugins();
        let mut observer = Quiet::default();
        let cancel = CancellationToken::new();
        cancel.cancel();
        let mut driver = Driver {
            executor: &mut machine,
            observer: &mut observer,
            book: TrialBook::default(),
            snapshot: &snapshot,
            thresholds: &thresholds,
            cancel,
        };
        let result = driver.run(&plan(), &mut context, &mut batch).await;
        assert!(matches!(result, Err(TuneError::Interrupted)));
        assert!(machine.runs.is_empty());
    }
}
