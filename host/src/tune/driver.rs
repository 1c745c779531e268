//! The search loop, independent of where trials come from: a real server (`ozone tune`)
//! or a recorded profile (the lab). The plugins decide what to try; the driver runs each
//! configuration once, feeds the outcome back and enforces the host's limits. A phase
//! that does not run says why in its limit's bound (`not_run`).

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::guard::Thresholds;
use crate::hardware::HardwareSnapshot;
use crate::plugin::{
    concurrency_outcome, slo_verdict, trial_outcome, BatchScaler, ConcurrencyOutcome,
    ConcurrencySearch, ContextSearch, PluginError, Slo, Strategy, TrialOutcome,
};
use crate::record::{ConcurrencyFigures, KvCacheType, Phase, TrialConfig, TrialRecord, Verdict};
use crate::trial::{figures_of, TrialRun};
use crate::tune::{Bound, Limits};

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
    #[error(
        "plugin {plugin} named {value} streams as its best concurrency, but no level of {value} \
         streams passed (stable, and the objective held)"
    )]
    UnpassedLevel { plugin: String, value: u32 },
    #[error("interrupted")]
    Interrupted,
    #[error("writing the trial log: {0}")]
    Log(String),
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
    /// Whether the concurrency phase runs (`--skip-concurrency` turns it off).
    pub concurrency: bool,
    /// The objective each concurrency level is judged against (empty: none).
    pub slo: Slo,
    pub stabilization_delay: Duration,
    /// Expected trials per phase, for progress only.
    pub estimated_context_trials: usize,
    pub estimated_batch_trials: usize,
    pub estimated_concurrency_trials: usize,
}

/// The run's three plugins, one per kind.
pub struct Plugins {
    pub context: ContextSearch,
    pub batch: BatchScaler,
    pub concurrency: ConcurrencySearch,
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
    /// search at both. Stops early (with what was found) when a phase finds nothing; a
    /// phase that does not run says why in its limit's bound.
    pub async fn run(&mut self, plan: &Plan, plugins: &mut Plugins) -> Result<Limits, TuneError> {
        let mut limits = Limits {
            max_context: self.search_context(plan, &mut plugins.context).await?,
            ..Limits::default()
        };
        let not_run = |reason: String| Some(Bound::NotRun { reason });
        let Some(ctx) = limits.max_context else {
            let reason = "the context search found no stable context".to_string();
            limits.bounds.best_batch = not_run(reason.clone());
            limits.bounds.max_concurrency = not_run(reason);
            return Ok(limits);
        };
        if plan.batch_scaling {
            limits.best_batch = self.scale_batch(plan, ctx, &mut plugins.batch).await?;
        } else {
            // The context search already measured the initial batch at `ctx` as stable.
            limits.best_batch = Some(plan.initial_batch);
            limits.bounds.best_batch = not_run(format!(
                "search_strategy.batch_adaptation.enabled is false: batch {} of the context \
                 search is kept",
                plan.initial_batch
            ));
        }
        let Some(batch) = limits.best_batch else {
            limits.bounds.max_concurrency = not_run(format!(
                "the batch phase found no stable batch at context {ctx}"
            ));
            return Ok(limits);
        };
        if !plan.concurrency {
            limits.bounds.max_concurrency = not_run("--skip-concurrency".into());
            return Ok(limits);
        }
        let (best, bound) = self
            .search_concurrency(plan, ctx, batch, &mut plugins.concurrency)
            .await?;
        limits.max_concurrency = best;
        limits.bounds.max_concurrency = Some(bound);
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
            let record = self.trial(phase, config_for(value), |_| {}).await?;
            plugin.observe(&trial_outcome(&record, self.snapshot, self.thresholds))?;
        }
        Err(TuneError::Runaway {
            plugin: plugin.name().to_string(),
            phase,
        })
    }

    /// The concurrency plugin proposes stream counts at `ctx` and `batch`; each level is
    /// a closed-loop trial judged against the objective. Returns the plugin's `best()`
    /// (it must have passed) and what bound it.
    async fn search_concurrency(
        &mut self,
        plan: &Plan,
        ctx: u32,
        batch: u32,
        plugin: &mut ConcurrencySearch,
    ) -> Result<(Option<u32>, Bound), TuneError> {
        self.observer
            .phase_started(Phase::Concurrency, plan.estimated_concurrency_trials);
        let mut levels: Vec<(TrialRecord, ConcurrencyOutcome)> = Vec::new();
        for trials in 0..=MAX_TRIALS_PER_PHASE {
            let proposed = plugin.propose()?;
            self.observer
                .decision(Phase::Concurrency, plugin.name(), proposed);
            let Some(streams) = proposed else {
                let best = plugin.best()?;
                let passed = |n: u32| {
                    levels
                        .iter()
                        .any(|(t, o)| t.config.concurrency == n && o.passed())
                };
                if let Some(value) = best.filter(|n| !passed(*n)) {
                    return Err(TuneError::UnpassedLevel {
                        plugin: plugin.name().to_string(),
                        value,
                    });
                }
                return Ok((best, Bound::of_concurrency(best, &levels)));
            };
            if trials == MAX_TRIALS_PER_PHASE {
                break;
            }
            let config = trial_config(ctx, batch, streams, plan.kv_cache_type);
            if !levels.is_empty() && self.book.get(&config).is_none() {
                // Let the machine settle (temperatures, freed memory) between levels.
                tokio::select! {
                    _ = tokio::time::sleep(plan.stabilization_delay) => {}
                    _ = self.cancel.cancelled() => return Err(TuneError::Interrupted),
                }
            }
            let (snapshot, thresholds) = (self.snapshot, self.thresholds);
            let judge = |record: &TrialRecord| {
                let figures = figures_of(record);
                let outcome =
                    concurrency_outcome(record, &figures, snapshot, thresholds, &plan.slo);
                (figures, outcome)
            };
            // The judgement goes into the record before it is logged; a level measured
            // by an earlier phase (one stream) is judged from its samples.
            let record = self
                .trial(Phase::Concurrency, config, |record| {
                    let (figures, outcome) = judge(record);
                    record.concurrency = Some(ConcurrencyFigures {
                        slo: slo_verdict(&outcome),
                        ..figures
                    });
                })
                .await?;
            let (_, outcome) = judge(&record);
            plugin.observe(&outcome)?;
            levels.push((record, outcome));
        }
        Err(TuneError::Runaway {
            plugin: plugin.name().to_string(),
            phase: Phase::Concurrency,
        })
    }

    /// Runs a configuration, or hands back its earlier measurement. `finish` completes a
    /// record before it is logged (a reused one is completed in the book).
    async fn trial(
        &mut self,
        phase: Phase,
        config: TrialConfig,
        finish: impl FnOnce(&mut TrialRecord),
    ) -> Result<TrialRecord, TuneError> {
        if let Some(record) = self.book.get(&config) {
            let mut record = record.clone();
            finish(&mut record);
            self.observer.trial_reused(&record);
            self.book.insert(record.clone());
            return Ok(record);
        }
        if self.cancel.is_cancelled() {
            return Err(TuneError::Interrupted);
        }
        let id = self.book.next_id();
        self.observer.trial_started(id, phase, &config);
        let mut run = self.executor.run(id, phase, &config, &self.cancel).await;
        if self.cancel.is_cancelled() {
            // A trial cut short by Ctrl-C proves nothing: it is not logged, and
            // `--resume` runs it again.
            return Err(TuneError::Interrupted);
        }
        finish(&mut run.record);
        self.observer.trial_finished(&run)?;
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

fn trial_config(ctx: u32, batch: u32, concurrency: u32, kv: KvCacheType) -> TrialConfig {
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
    //! a batch is faster up to 128, up to `max_streams` streams run (more run out of
    //! memory), and the time to first token grows by 100 ms per stream. The plugins are
    //! the real built-in components.

    use super::*;
    use crate::backend::{ModelMetadata, SizeClass};
    use crate::plugin::SloMetric;
    use crate::plugin::{self, ContextBounds, HardwareFacts, PluginHost, PluginRef, SloBound};
    use crate::record::{FailureKind, Peaks, SampleRecord, SampleSeries, Stats, TrialFailure};

    const LIMIT: u32 = 100_000;
    const TOKENS: u32 = 16;

    struct Machine {
        runs: Vec<TrialConfig>,
        max_streams: u32,
    }

    impl Machine {
        fn new(max_streams: u32) -> Self {
            Self {
                runs: Vec::new(),
                max_streams,
            }
        }
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
            let fits = config.ctx <= LIMIT && config.concurrency <= self.max_streams;
            let tps = 100.0 + f64::from(config.batch.min(128));
            let ttft = 100.0 * f64::from(config.concurrency);
            // Two requests per stream, every one alike.
            let samples: Vec<SampleRecord> = (0..2 * config.concurrency)
                .filter(|_| fits)
                .map(|index| SampleRecord {
                    index,
                    ok: true,
                    ttft_ms: Some(ttft),
                    decode_tps: Some(tps),
                    completion_tokens: Some(TOKENS),
                    total_ms: Some(ttft + f64::from(TOKENS - 1) / tps * 1000.0),
                    ..SampleRecord::default()
                })
                .collect();
            let stats = Stats::from_values(&[tps, tps, tps]);
            TrialRun {
                record: TrialRecord {
                    id,
                    phase,
                    config: config.clone(),
                    started_at: chrono::Utc::now(),
                    duration_ms: 1000,
                    granted_ctx: Some(config.ctx),
                    samples,
                    ttft_ms: Stats::from_values(&[ttft]),
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
                    concurrency: None,
                },
                series: SampleSeries::default(),
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

    fn plugins(slo: &Slo) -> Plugins {
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
        let builtin = |name: &str| PluginRef::Builtin(name.into());
        Plugins {
            context: host
                .load_context(&builtin("binary-search"), "{}", &hw, &model)
                .expect("binary-search loads"),
            batch: host
                .load_batch(
                    &builtin("batch-scaler"),
                    "{}",
                    &hw,
                    &model,
                    &plugin::batch_bounds(256, plan().initial_batch),
                )
                .expect("batch-scaler loads"),
            concurrency: host
                .load_concurrency(
                    &builtin("concurrency-ladder"),
                    r#"{"levels": [1, 2, 4, 8]}"#,
                    &hw,
                    &model,
                    &plugin::concurrency_bounds(64),
                    slo,
                )
                .expect("concurrency-ladder loads"),
        }
    }

    fn plan() -> Plan {
        Plan {
            initial_batch: 64,
            batch_scaling: true,
            kv_cache_type: KvCacheType::F16,
            concurrency: true,
            slo: Slo::default(),
            stabilization_delay: Duration::ZERO,
            estimated_context_trials: 8,
            estimated_batch_trials: 3,
            estimated_concurrency_trials: 4,
        }
    }

    fn ttft_p95_under(ms: f64) -> Slo {
        Slo {
            bounds: vec![SloBound {
                metric: SloMetric::TtftP95,
                value: ms,
            }],
        }
    }

    /// Runs the whole loop on `machine` with `plan`; returns the limits and the book.
    async fn tune(machine: &mut Machine, plan: &Plan) -> (Limits, TrialBook, usize) {
        let mut strategies = plugins(&plan.slo);
        let mut observer = Quiet::default();
        let snapshot = crate::hardware::probe(&Default::default());
        let thresholds = Thresholds::default();
        let mut driver = Driver {
            executor: machine,
            observer: &mut observer,
            book: TrialBook::default(),
            snapshot: &snapshot,
            thresholds: &thresholds,
            cancel: CancellationToken::new(),
        };
        let limits = driver.run(plan, &mut strategies).await.unwrap();
        let book = std::mem::take(&mut driver.book);
        (limits, book, observer.reused)
    }

    fn levels(machine: &Machine) -> Vec<u32> {
        machine
            .runs
            .iter()
            .filter(|c| c.concurrency > 1)
            .map(|c| c.concurrency)
            .collect()
    }

    #[tokio::test]
    async fn the_loop_finds_every_limit_and_measures_nothing_twice() {
        let mut machine = Machine::new(2);
        let (limits, book, reused) = tune(&mut machine, &plan()).await;

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
        assert!(reused >= 2, "reused {reused}");
        assert_eq!(
            levels(&machine),
            vec![2, 4],
            "the climb stops at the first failing level"
        );
        assert!(
            matches!(
                limits.bounds.max_concurrency,
                Some(Bound::Memory { at: 4, .. })
            ),
            "{:?}",
            limits.bounds.max_concurrency
        );
        // Level 1, measured by the batch phase, now carries its figures too.
        let one = book
            .records()
            .iter()
            .find(|r| r.config.concurrency == 1 && r.config.batch == 128)
            .expect("level 1");
        let figures = one.concurrency.as_ref().expect("judged as a level");
        assert_eq!(figures.latency.ttft_p95_ms, Some(100.0));
        assert_eq!(figures.slo, None, "no objective, no judgement");
    }

    #[tokio::test]
    async fn an_objective_between_two_levels_ends_between_them() {
        let mut machine = Machine::new(64);
        let plan = Plan {
            slo: ttft_p95_under(450.0),
            ..plan()
        };
        let (limits, book, _) = tune(&mut machine, &plan).await;
        // 100 ms per stream: 4 streams meet 450 ms, 5 do not.
        assert_eq!(limits.max_concurrency, Some(4));
        assert_eq!(levels(&machine), vec![2, 4, 8, 6, 5]);
        match &limits.bounds.max_concurrency {
            Some(Bound::Slo {
                at: 5,
                metric: SloMetric::TtftP95,
                measured: Some(m),
                bound,
                ..
            }) => assert_eq!((*m, *bound), (500.0, 450.0)),
            other => panic!("{other:?}"),
        }
        let judged: Vec<(u32, bool)> = book
            .records()
            .iter()
            .filter(|r| r.phase == Phase::Concurrency)
            .map(|r| {
                let verdict = r.concurrency.as_ref().and_then(|f| f.slo.as_ref());
                (r.config.concurrency, verdict.expect("judged").met)
            })
            .collect();
        assert_eq!(
            judged,
            vec![(2, true), (4, true), (8, false), (6, false), (5, false)]
        );
    }

    #[tokio::test]
    async fn an_objective_no_level_meets_is_bound_by_it_at_one_stream() {
        let mut machine = Machine::new(64);
        let plan = Plan {
            slo: ttft_p95_under(50.0),
            ..plan()
        };
        let (limits, _, _) = tune(&mut machine, &plan).await;
        assert_eq!(limits.max_concurrency, None);
        assert!(levels(&machine).is_empty(), "{:?}", levels(&machine));
        assert!(
            matches!(
                limits.bounds.max_concurrency,
                Some(Bound::Slo { at: 1, .. })
            ),
            "{:?}",
            limits.bounds.max_concurrency
        );
    }

    #[tokio::test]
    async fn a_phase_that_does_not_run_says_why() {
        let mut machine = Machine::new(64);
        let plan = Plan {
            concurrency: false,
            batch_scaling: false,
            ..plan()
        };
        let (limits, _, _) = tune(&mut machine, &plan).await;
        assert_eq!(limits.best_batch, Some(64));
        let reason = |b: &Option<Bound>| match b {
            Some(Bound::NotRun { reason }) => reason.clone(),
            other => panic!("{other:?}"),
        };
        assert!(reason(&limits.bounds.best_batch).contains("batch_adaptation.enabled"));
        assert_eq!(reason(&limits.bounds.max_concurrency), "--skip-concurrency");
        assert!(levels(&machine).is_empty());
    }

    #[tokio::test]
    async fn a_resumed_book_replays_without_running_again() {
        let mut first = Machine::new(2);
        let (limits, book, _) = tune(&mut first, &plan()).await;
        let book = TrialBook::from_records(book.records().to_vec());

        let snapshot = crate::hardware::probe(&Default::default());
        let thresholds = Thresholds::default();
        let mut second = Machine::new(2);
        let mut strategies = plugins(&Slo::default());
        let mut observer = Quiet::default();
        let mut driver = Driver {
            executor: &mut second,
            observer: &mut observer,
            book,
            snapshot: &snapshot,
            thresholds: &thresholds,
            cancel: CancellationToken::new(),
        };
        let replayed = driver.run(&plan(), &mut strategies).await.unwrap();
        assert_eq!(replayed, limits);
        assert!(second.runs.is_empty(), "ran again: {:?}", second.runs);
    }

    #[tokio::test]
    async fn a_cancelled_run_stops_before_the_next_trial() {
        let snapshot = crate::hardware::probe(&Default::default());
        let thresholds = Thresholds::default();
        let mut machine = Machine::new(2);
        let mut strategies = plugins(&Slo::default());
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
        let result = driver.run(&plan(), &mut strategies).await;
        assert!(matches!(result, Err(TuneError::Interrupted)));
        assert!(machine.runs.is_empty());
    }
}
