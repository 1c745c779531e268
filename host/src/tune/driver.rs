//! The search loop, independent of where trials come from: a real server (`ozone tune`)
//! or a recorded profile (the lab). The plugins decide what to try; the driver runs each
//! configuration once, feeds the outcome back and enforces the host's limits.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::guard::Thresholds;
use crate::hardware::HardwareSnapshot;
use crate::plugin::{BatchScaler, ContextSearch, Outcome, PluginError};
use crate::report::Limits;
use crate::trial::{KvCacheType, Phase, TrialConfig, TrialRecord, TrialRun, Verdict};

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
        limits.best_batch = self.scale_batch(plan, ctx, batch).await?;
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
        for _ in 0..MAX_TRIALS_PER_PHASE {
            let proposed = plugin.propose()?;
            self.observer
                .decision(Phase::Context, plugin.name(), proposed);
            let Some(ctx) = proposed else {
                return self.checked_best(plugin.best()?, plugin.name(), "context", |c| c.ctx);
            };
            let config = trial_config(ctx, plan.initial_batch, 1, plan.kv_cache_type);
            let record = self.trial(Phase::Context, config).await?;
            plugin.observe(&Outcome::from_record(
                &record,
                self.snapshot,
                self.thresholds,
            ))?;
        }
        Err(TuneError::Runaway {
            plugin: plugin.name().to_string(),
            phase: Phase::Context,
        })
    }

    async fn scale_batch(
        &mut self,
        plan: &Plan,
        ctx: u32,
        plugin: &mut BatchScaler,
    ) -> Result<Option<u32>, TuneError> {
        self.observer
            .phase_started(Phase::Batch, plan.estimated_batch_trials);
        for _ in 0..MAX_TRIALS_PER_PHASE {
            let proposed = plugin.propose()?;
            self.observer
                .decision(Phase::Batch, plugin.name(), proposed);
            let Some(batch) = proposed else {
                let best = plugin.best()?;
                return self.checked_best(best, plugin.name(), "batch", |c| {
                    if c.ctx == ctx {
                        c.batch
                    } else {
                        0
                    }
                });
            };
            let config = trial_config(ctx, batch, 1, plan.kv_cache_type);
            let record = self.trial(Phase::Batch, config).await?;
            plugin.observe(&Outcome::from_record(
                &record,
                self.snapshot,
                self.thresholds,
            ))?;
        }
        Err(TuneError::Runaway {
            plugin: plugin.name().to_string(),
            phase: Phase::Batch,
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
        self.book.insert(run.record.clone());
        Ok(run.record)
    }

    /// A plugin's `best()` must name a value this run measured as stable.
    fn checked_best(
        &self,
        best: Option<u32>,
        plugin: &str,
        what: &'static str,
        value_of: impl Fn(&TrialConfig) -> u32,
    ) -> Result<Option<u32>, TuneError> {
        let Some(value) = best else { return Ok(None) };
        let measured = self
            .book
            .records()
            .iter()
            .any(|r| r.verdict == Verdict::Stable && value_of(&r.config) == value);
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
