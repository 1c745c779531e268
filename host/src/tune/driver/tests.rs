//! The loop against a synthetic machine: a context runs up to a hidden limit (out of
//! memory above it), a batch is faster up to 128, two streams are the most it
//! sustains (by default) and the time to first token grows by 100 ms per stream;
//! chosen verifications can be made unstable. The plugins are the real built-in
//! components (and the misbehaving test guest).

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::*;
use crate::backend::{ModelMetadata, SizeClass};
use crate::guard::Thresholds;
use crate::plugin::{
    self, ContextBounds, HardwareFacts, PluginHost, PluginRef, SloBound, SloMetric,
};
use crate::record::{
    Bound, FailureKind, Peaks, Phase, Reason, SampleRecord, SampleSeries, Stage, Stats,
    TrialConfig, TrialFailure, TrialRecord, Verdict,
};
use crate::trial::{AdaptiveTimeouts, OnSample, TrialRun};

const LIMIT: u32 = 100_000;
const TRAINED: u32 = 131_072;
const TOKENS: u32 = 16;

struct Machine {
    runs: Vec<(TrialConfig, Stage)>,
    /// Contexts whose verification is unstable (1 of 3 samples fails).
    flaky_verify: Vec<u32>,
    /// Every verification is unstable.
    all_verifications_flaky: bool,
    /// The most streams that run; more run out of memory.
    max_streams: u32,
    /// The largest context an f16 cache holds (a smaller cache, proportionally more).
    limit: u32,
    /// Decode throughput of successive verifications of a context, one list of samples
    /// each (the last repeats); else every sample decodes alike.
    decode: Vec<(u32, Vec<Vec<f64>>)>,
    /// A GPU with a memory budget; `None`: a CPU-only machine.
    gpu: Option<Gpu>,
}

/// A GPU's memory, in units: each layer on it holds its dense weights, its KV cache (a
/// unit a token) and, unless `--n-cpu-moe` keeps them on the CPU, its experts. The
/// layers on the GPU are the last ones; `--n-cpu-moe N` keeps the first N layers'
/// experts on the CPU.
#[derive(Clone, Copy)]
struct Gpu {
    layers: u32,
    dense: u64,
    experts: u64,
    budget: u64,
}

impl Gpu {
    fn fits(&self, config: &TrialConfig) -> bool {
        let n = self.layers;
        let g = config.variant.gpu_layers.unwrap_or(n).min(n);
        let cpu_moe = config.variant.cpu_moe_layers.min(n);
        let experts_on_gpu = n - (n - g).max(cpu_moe);
        let used = u64::from(g) * (self.dense + u64::from(config.ctx))
            + u64::from(experts_on_gpu) * self.experts;
        used <= self.budget
    }
}

impl Default for Machine {
    fn default() -> Self {
        Self {
            runs: Vec::new(),
            flaky_verify: Vec::new(),
            all_verifications_flaky: false,
            max_streams: 2,
            limit: LIMIT,
            decode: Vec::new(),
            gpu: None,
        }
    }
}

/// Five samples around 100 tok/s whose robust spread is `spread`.
fn varying(spread: f64) -> Vec<f64> {
    let a = spread / crate::record::MAD_TO_SIGMA;
    [1.0, 1.0 - a, 1.0 + a, 1.0 - a, 1.0 + a]
        .map(|f| 100.0 * f)
        .to_vec()
}

impl TrialExecutor for Machine {
    async fn run(
        &mut self,
        id: u32,
        phase: Phase,
        stage: Stage,
        config: &TrialConfig,
        _cancel: &CancellationToken,
        on_sample: OnSample<'_>,
    ) -> TrialRun {
        let measured_before = self
            .runs
            .iter()
            .filter(|(c, s)| c == config && *s == stage)
            .count();
        self.runs.push((config.clone(), stage));
        // Memory binds: a smaller cache holds proportionally more context.
        let limit = (f64::from(self.limit) / config.variant.cache_ratio()) as u32;
        let gpu_fits = self.gpu.is_none_or(|g| g.fits(config));
        let fits = config.ctx <= limit && config.concurrency <= self.max_streams && gpu_fits;
        let flaky = stage == Stage::Verify
            && (self.all_verifications_flaky || self.flaky_verify.contains(&config.ctx));
        let tps = 100.0 + f64::from(config.batch.min(128));
        let ttft = 100.0 * f64::from(config.concurrency);
        let listed = self
            .decode
            .iter()
            .find(|(ctx, _)| *ctx == config.ctx && stage == Stage::Verify)
            .and_then(|(_, runs)| runs.get(measured_before).or(runs.last()));
        let decode: Vec<f64> = match listed {
            Some(values) => values.clone(),
            None => vec![tps; if stage == Stage::Screen { 1 } else { 3 }],
        };
        let samples: Vec<SampleRecord> = decode
            .iter()
            .enumerate()
            .map(|(index, &tps)| SampleRecord {
                index: index as u32,
                ok: fits && !(flaky && index == 1),
                decode_tps: Some(tps),
                ttft_ms: Some(ttft),
                completion_tokens: Some(TOKENS),
                total_ms: Some(ttft + f64::from(TOKENS - 1) / tps * 1000.0),
                ..SampleRecord::default()
            })
            .collect();
        for sample in &samples {
            on_sample(sample);
        }
        let ok: Vec<f64> = samples
            .iter()
            .filter(|s| s.ok)
            .filter_map(|s| s.decode_tps)
            .collect();
        let stats = Stats::from_values(&ok);
        let failure = (!fits).then(|| match gpu_fits {
            true => TrialFailure::new(FailureKind::OutOfMemory, "synthetic"),
            false => TrialFailure::new(
                FailureKind::ThresholdBreach(crate::record::Metric::GpuMemoryBudget),
                "synthetic GPU budget",
            ),
        });
        let breach = (!gpu_fits).then_some(crate::record::Breach {
            metric: crate::record::Metric::GpuMemoryBudget,
            value: 2.0,
            limit: 1.0,
            at_ms: 0,
            device: None,
        });
        // The real rules judge the synthetic samples.
        let reason = crate::trial::verdict::judge(
            crate::trial::verdict::Kind::of(phase, stage),
            &samples,
            failure.as_ref(),
            &crate::trial::TrialSettings::default(),
        );
        TrialRun {
            record: TrialRecord {
                id,
                phase,
                stage,
                config: config.clone(),
                started_at: chrono::Utc::now(),
                duration_ms: 1000,
                granted_ctx: Some(config.ctx),
                success_rate: ok.len() as f64 / samples.len() as f64,
                samples,
                ttft_ms: stats.clone(),
                prefill_tps: stats.clone(),
                cv: stats.as_ref().and_then(Stats::cv),
                decode_tps: stats,
                peaks: Peaks::default(),
                breach,
                failure,
                verdict: reason.verdict(),
                reason: Some(reason),
                stopped_early: None,
                server_log_tail: Vec::new(),
                concurrency: None,
                memory_breakdown: None,
            },
            series: SampleSeries::default(),
            server_cannot_start: false,
        }
    }
}

impl Machine {
    fn count(&self, ctx: u32, stage: Stage) -> usize {
        self.runs
            .iter()
            .filter(|(c, s)| c.ctx == ctx && *s == stage && c.concurrency == 1)
            .count()
    }
}

#[derive(Default)]
struct Quiet {
    reused: usize,
    samples: usize,
    verify_decisions: Vec<u32>,
    notes: Vec<String>,
    phases: Vec<(Phase, Limits)>,
}

impl TuneObserver for Quiet {
    fn sample(&mut self, _: u32, _: Stage, _: &TrialConfig, _: &SampleRecord) {
        self.samples += 1;
    }
    fn trial_finished(&mut self, _run: &TrialRun) -> Result<(), LogError> {
        Ok(())
    }
    fn note(&mut self, _phase: Phase, message: &str) {
        self.notes.push(message.to_string());
    }
    fn phase_finished(&mut self, phase: Phase, limits: &Limits) {
        self.phases.push((phase, limits.clone()));
    }
    fn trial_reused(&mut self, _record: &TrialRecord) {
        self.reused += 1;
    }
    fn decision(&mut self, phase: Phase, _: &str, proposed: Option<u32>, stage: Stage) {
        if phase == Phase::Context && stage == Stage::Verify {
            self.verify_decisions.extend(proposed);
        }
    }
}

fn host() -> PluginHost {
    // A shared cache: compiling the components once is enough for every test.
    let cache = std::env::temp_dir().join("ozone-driver-tests-components");
    PluginHost::new(Default::default(), Some(cache)).expect("engine")
}

fn model() -> plugin::ModelFacts {
    let metadata = ModelMetadata {
        name: "synthetic".into(),
        architecture: Some("llama".into()),
        parameter_count: Some(1_000_000_000),
        size_class: SizeClass::Small,
        trained_context: Some(TRAINED),
        block_count: Some(16),
        head_count: Some(16),
        head_count_kv: Some(4),
        embedding_length: Some(2048),
        key_length: Some(128),
        value_length: Some(128),
        layers: Vec::new(),
        experts: None,
        weights_bytes: Some(1 << 30),
        digest: None,
    };
    plugin::model_facts(
        &metadata,
        ContextBounds::new(2048, TRAINED, 256),
        None,
        &Default::default(),
    )
}

fn plugins() -> Plugins {
    plugins_judging(&Slo::default())
}

/// The built-in plugins, the concurrency ladder judging `slo`.
fn plugins_judging(slo: &Slo) -> Plugins {
    let (host, hw, model) = (host(), HardwareFacts::default(), model());
    let context = host
        .load_context(
            &PluginRef::Builtin("binary-search".into()),
            "{}",
            &hw,
            &model,
            &Default::default(),
        )
        .expect("binary-search loads");
    Plugins {
        context,
        batch: batch_scaler(&host),
        concurrency: ladder(&host, slo),
    }
}

fn ladder(host: &PluginHost, slo: &Slo) -> ConcurrencySearch {
    host.load_concurrency(
        &PluginRef::Builtin("concurrency-ladder".into()),
        r#"{"levels": [1, 2, 4, 8]}"#,
        &HardwareFacts::default(),
        &model(),
        &plugin::concurrency_bounds(64),
        slo,
    )
    .expect("concurrency-ladder loads")
}

fn batch_scaler(host: &PluginHost) -> BatchScaler {
    host.load_batch(
        &PluginRef::Builtin("batch-scaler".into()),
        "{}",
        &HardwareFacts::default(),
        &model(),
        &plugin::batch_bounds(256, 512, plan().initial_batch),
    )
    .expect("batch-scaler loads")
}

/// The misbehaving test guest as the context search, with `settings`.
fn misbehaving(settings: &str) -> Plugins {
    let host = host();
    let path = std::path::PathBuf::from(ozone_test_artifacts::MISBEHAVING);
    let context = host
        .load_context(
            &PluginRef::File(path),
            settings,
            &HardwareFacts::default(),
            &model(),
            &Default::default(),
        )
        .expect("the misbehaving guest loads");
    Plugins {
        context,
        batch: batch_scaler(&host),
        concurrency: ladder(&host, &Slo::default()),
    }
}

fn plan() -> Plan {
    Plan {
        initial_batch: 64,
        batch_scaling: true,
        max_batch: 256,
        min_context: 2048,
        max_context: TRAINED,
        variant: Variant::default(),
        screen_trials: true,
        concurrency: true,
        slo: Slo::default(),
        stabilization_delay: Duration::ZERO,
        timeouts: AdaptiveTimeouts::default(),
        estimated_context_trials: 8,
        estimated_batch_trials: 3,
        estimated_concurrency_trials: 4,
    }
}

/// What a tune on the test machine gave: its limits, every trial, what was observed.
struct Tuned {
    limits: Result<Limits, TuneError>,
    trials: Vec<TrialRecord>,
    observer: Quiet,
}

/// A tune on `machine` that starts from `book`'s trials (a resume) or none.
async fn tune_on(
    machine: &mut Machine,
    book: TrialBook,
    plan: &Plan,
    mut plugins: Plugins,
) -> Tuned {
    let snapshot = crate::hardware::probe(&Default::default());
    let thresholds = Thresholds::default();
    let mut observer = Quiet::default();
    let mut driver = Driver::new(
        machine,
        &mut observer,
        book,
        &snapshot,
        &thresholds,
        CancellationToken::new(),
    );
    let limits = driver.run(plan, &mut plugins).await;
    let trials = driver.book.records().to_vec();
    Tuned {
        limits,
        trials,
        observer,
    }
}

#[tokio::test]
async fn screens_search_the_context_and_one_verification_publishes_it() {
    let mut machine = Machine::default();
    let Tuned {
        limits,
        trials,
        observer,
    } = tune_on(&mut machine, TrialBook::default(), &plan(), plugins()).await;
    let limits = limits.unwrap();

    let ctx = limits.max_context.expect("a stable context");
    assert!(ctx <= LIMIT && LIMIT - ctx < 256, "found {ctx}");
    let context: Vec<&TrialRecord> = trials
        .iter()
        .filter(|t| t.phase == Phase::Context)
        .collect();
    // Every proposal was screened; the answer alone was verified, and is stable.
    let verified: Vec<&&TrialRecord> = context
        .iter()
        .filter(|t| t.stage == Stage::Verify)
        .collect();
    assert_eq!(verified.len(), 1, "{context:#?}");
    assert_eq!(
        (verified[0].config.ctx, verified[0].verdict),
        (ctx, Verdict::Stable)
    );
    assert_eq!(observer.verify_decisions, vec![ctx]);
    assert!(context
        .iter()
        .filter(|t| t.config.ctx != ctx)
        .all(|t| t.stage == Stage::Screen && t.samples.len() == 1));
    // One granularity step above the answer failed.
    assert!(context
        .iter()
        .any(|t| t.config.ctx == ctx + 256 && t.verdict == Verdict::Failed));
    assert_eq!(
        limits.bounds.max_context,
        Some(Bound::Memory {
            at: ctx + 256,
            trial_id: context
                .iter()
                .find(|t| t.config.ctx == ctx + 256)
                .map_or(0, |t| t.id),
            threshold: None,
            peak_bytes: None,
            limit_bytes: None,
            device: None,
        })
    );

    assert_eq!(
        limits.best_batch,
        Some(128),
        "throughput stops improving past 128"
    );
    assert!(matches!(
        limits.bounds.best_batch,
        Some(Bound::Throughput { at: 256, .. })
    ));
    assert_eq!(limits.max_concurrency, Some(2), "4 streams fail");
    assert!(matches!(
        limits.bounds.max_concurrency,
        Some(Bound::Memory { at: 4, .. })
    ));
    for (i, run) in machine.runs.iter().enumerate() {
        assert!(!machine.runs[..i].contains(run), "{run:?} measured twice");
    }
    // Batch and concurrency trials are verifications.
    assert!(trials
        .iter()
        .filter(|t| t.phase != Phase::Context)
        .all(|t| t.stage == Stage::Verify));
    // The batch scaler's first proposal (64) and concurrency 1 were measured before.
    assert!(observer.reused >= 2, "reused {}", observer.reused);
    let ladder: Vec<u32> = machine
        .runs
        .iter()
        .filter(|(c, _)| c.concurrency > 1)
        .map(|(c, _)| c.concurrency)
        .collect();
    assert_eq!(
        ladder,
        vec![2, 4],
        "the climb stops at the first failing level"
    );
    // Every sample reached the observer as it was measured.
    let samples: usize = trials.iter().map(|t| t.samples.len()).sum();
    assert_eq!(observer.samples, samples);
}

/// The context a default run on the default machine publishes.
async fn published() -> u32 {
    let Tuned { limits, .. } = tune_on(
        &mut Machine::default(),
        TrialBook::default(),
        &plan(),
        plugins(),
    )
    .await;
    limits.unwrap().max_context.unwrap()
}

/// A machine whose verifications at `ctx` vary by `first` then `again`, and whose
/// smallest context varies by `floor`.
fn noisy_at(ctx: u32, first: f64, again: f64, floor: f64) -> Machine {
    Machine {
        decode: vec![
            (ctx, vec![varying(first), varying(again)]),
            (2048, vec![varying(floor)]),
        ],
        ..Machine::default()
    }
}

#[tokio::test]
async fn a_spread_within_the_machine_s_noise_is_measured_again_and_published() {
    let ctx = published().await;
    let mut machine = noisy_at(ctx, 0.30, 0.25, 0.20);
    let Tuned {
        limits,
        trials,
        observer,
    } = tune_on(&mut machine, TrialBook::default(), &plan(), plugins()).await;
    assert_eq!(limits.unwrap().max_context, Some(ctx));
    let at = |c: u32| -> Vec<&TrialRecord> {
        trials
            .iter()
            .filter(|t| t.config.ctx == c && t.stage == Stage::Verify && t.phase == Phase::Context)
            .collect()
    };
    let (first, again) = (at(ctx)[0], at(ctx)[1]);
    assert!(matches!(first.reason, Some(Reason::Unsteady(_))));
    let floor = at(2048)[0];
    let Some(Reason::WithinNoise(check)) = &again.reason else {
        panic!("{:?}", again.reason)
    };
    assert_eq!(check.remeasure_of, Some(first.id));
    assert_eq!(
        check.floor.map(|f| (f.ctx, f.trial_id)),
        Some((2048, floor.id))
    );
    assert_eq!(again.verdict, Verdict::Stable);
    // What was done is said, in order: the floor measured, the configuration again.
    assert!(
        observer.notes[0].contains("noise floor"),
        "{:?}",
        observer.notes
    );
    assert!(
        observer.notes[1].contains("the machine was noisy, not the configuration"),
        "{:?}",
        observer.notes
    );
    // The batch phase's reuse of the context line's verification takes the second.
    assert!(observer.reused >= 1);
    // The batch phase's noisy trial was held against a floor measured afresh for it.
    let floors = trials
        .iter()
        .filter(|t| t.config.ctx == 2048 && t.stage == Stage::Verify)
        .count();
    assert_eq!(floors, 2, "one floor per suspect");
}

#[tokio::test]
async fn a_spread_clear_of_a_quiet_machine_s_floor_is_the_configuration_s_instability() {
    let ctx = published().await;
    let mut machine = noisy_at(ctx, 0.30, 0.30, 0.02);
    let Tuned { limits, trials, .. } =
        tune_on(&mut machine, TrialBook::default(), &plan(), plugins()).await;
    let limits = limits.unwrap();
    let found = limits.max_context.expect("a context below");
    assert!(found < ctx, "{found} vs {ctx}");
    match &limits.bounds.max_context {
        Some(Bound::Instability {
            at,
            reason: Some(Reason::Unsteady(check)),
            ..
        }) => {
            assert_eq!(*at, ctx);
            assert!(
                check.floor.is_some() && check.remeasure_of.is_some(),
                "{check:?}"
            );
        }
        other => panic!("{other:?}"),
    }
    // One suspect: the floor measured once, the configuration twice.
    let verified = |c: u32| {
        trials
            .iter()
            .filter(|t| t.config.ctx == c && t.stage == Stage::Verify)
            .count()
    };
    assert_eq!((verified(ctx), verified(2048)), (2, 1));

    // Resumed from its trials, the run replays every step, the noise floor included.
    let mut second = noisy_at(ctx, 0.30, 0.30, 0.02);
    let Tuned {
        limits: replayed, ..
    } = tune_on(
        &mut second,
        TrialBook::from_records(trials),
        &plan(),
        plugins(),
    )
    .await;
    assert_eq!(replayed.unwrap(), limits);
    assert!(second.runs.is_empty(), "ran again: {:?}", second.runs);
}

#[tokio::test]
async fn each_phase_s_limits_are_told_as_it_ends() {
    let Tuned {
        limits, observer, ..
    } = tune_on(
        &mut Machine::default(),
        TrialBook::default(),
        &plan(),
        plugins(),
    )
    .await;
    let limits = limits.unwrap();
    let phases: Vec<Phase> = observer.phases.iter().map(|(p, _)| *p).collect();
    assert_eq!(phases, [Phase::Context, Phase::Batch, Phase::Concurrency]);
    let (_, after_context) = &observer.phases[0];
    assert_eq!(after_context.max_context, limits.max_context);
    assert_eq!(after_context.bounds.max_context, limits.bounds.max_context);
    assert_eq!(
        (after_context.best_batch, &after_context.bounds.best_batch),
        (None, &None),
        "not worked out before the batch phase"
    );
    assert_eq!(observer.phases[2].1, limits);
}

#[tokio::test]
async fn an_unstable_verification_goes_back_to_the_plugin_and_the_search_goes_on() {
    let mut first = Machine::default();
    let Tuned { limits, .. } = tune_on(&mut first, TrialBook::default(), &plan(), plugins()).await;
    let noisy = limits.unwrap().max_context.unwrap();

    let mut machine = Machine {
        flaky_verify: vec![noisy],
        ..Machine::default()
    };
    let Tuned {
        limits,
        trials,
        observer,
    } = tune_on(&mut machine, TrialBook::default(), &plan(), plugins()).await;
    let limits = limits.unwrap();
    let ctx = limits.max_context.expect("a verified context");
    // binary-search withdrew the refuted context: its next best, below, was verified.
    assert!(ctx < noisy, "{ctx} vs {noisy}");
    assert_eq!(observer.verify_decisions, vec![noisy, ctx]);
    assert_eq!(machine.count(noisy, Stage::Verify), 1);
    assert!(trials
        .iter()
        .any(|t| t.config.ctx == ctx && t.stage == Stage::Verify && t.verdict == Verdict::Stable));
    // What bound the context is the unstable verification just above it.
    assert!(
        matches!(limits.bounds.max_context, Some(Bound::Instability { at, .. }) if at == noisy),
        "{:?}",
        limits.bounds.max_context
    );
}

#[tokio::test]
async fn unstable_verifications_up_to_the_bound_publish_no_context() {
    let mut machine = Machine {
        all_verifications_flaky: true,
        ..Machine::default()
    };
    let Tuned { limits, trials, .. } =
        tune_on(&mut machine, TrialBook::default(), &plan(), plugins()).await;
    let limits = limits.unwrap();
    assert_eq!(limits.max_context, None);
    let verifications = trials.iter().filter(|t| t.stage == Stage::Verify).count();
    assert_eq!(verifications, MAX_VERIFICATIONS as usize);
    assert!(matches!(
        limits.bounds.max_context,
        Some(Bound::Instability { .. })
    ));
    assert!(matches!(
        limits.bounds.best_batch,
        Some(Bound::NotRun { .. })
    ));
}

#[tokio::test]
async fn a_plugin_naming_a_refuted_context_again_is_an_error_naming_it() {
    let mut machine = Machine {
        flaky_verify: vec![8192],
        ..Machine::default()
    };
    let Tuned { limits, .. } = tune_on(
        &mut machine,
        TrialBook::default(),
        &plan(),
        misbehaving(r#"{"mode": "stubborn", "value": 8192}"#),
    )
    .await;
    let err = limits.expect_err("the plugin ignored its failed verification");
    assert!(
        matches!(
            err,
            TuneError::Contract(ContractBreach::RefutedBest { value: 8192, .. })
        ),
        "{err}"
    );
    assert!(err.to_string().contains("misbehaving"), "{err}");
    assert_eq!(machine.count(8192, Stage::Verify), 1);
}

#[tokio::test]
async fn without_screens_every_context_proposal_is_verified() {
    let plan = Plan {
        screen_trials: false,
        ..plan()
    };
    let mut machine = Machine::default();
    let Tuned {
        limits,
        trials,
        observer,
    } = tune_on(&mut machine, TrialBook::default(), &plan, plugins()).await;
    let ctx = limits.unwrap().max_context.unwrap();
    assert!(ctx <= LIMIT && LIMIT - ctx < 256, "found {ctx}");
    assert!(trials.iter().all(|t| t.stage == Stage::Verify));
    // Every proposal was a verify decision, and the answer's own trial is its
    // verification: no trial beyond the proposals.
    let context_runs = machine
        .runs
        .iter()
        .filter(|(c, _)| c.batch == plan.initial_batch && c.concurrency == 1)
        .count();
    assert_eq!(context_runs, observer.verify_decisions.len());
    for (i, run) in machine.runs.iter().enumerate() {
        assert!(!machine.runs[..i].contains(run), "{run:?} measured twice");
    }
}

#[tokio::test]
async fn a_repeated_proposal_is_measured_three_times_at_most_and_replays_on_resume() {
    let settings = r#"{"mode": "propose", "value": 4096}"#;
    let mut machine = Machine::default();
    let Tuned { limits, trials, .. } = tune_on(
        &mut machine,
        TrialBook::default(),
        &plan(),
        misbehaving(settings),
    )
    .await;
    assert!(matches!(
        limits,
        Err(TuneError::Contract(ContractBreach::Runaway { .. }))
    ));
    assert_eq!(machine.count(4096, Stage::Screen), MAX_MEASUREMENTS);
    assert_eq!(trials.len(), MAX_MEASUREMENTS);

    // Resumed from those records, the same requests are answered by them.
    let mut second = Machine::default();
    let Tuned { limits, .. } = tune_on(
        &mut second,
        TrialBook::from_records(trials),
        &plan(),
        misbehaving(settings),
    )
    .await;
    assert!(matches!(
        limits,
        Err(TuneError::Contract(ContractBreach::Runaway { .. }))
    ));
    assert!(second.runs.is_empty(), "ran again: {:?}", second.runs);
}

#[tokio::test]
async fn a_resumed_book_replays_without_running_again() {
    let mut first = Machine {
        flaky_verify: vec![99_840],
        ..Machine::default()
    };
    let Tuned { limits, trials, .. } =
        tune_on(&mut first, TrialBook::default(), &plan(), plugins()).await;
    let limits = limits.unwrap();

    let mut second = Machine {
        flaky_verify: vec![99_840],
        ..Machine::default()
    };
    let Tuned {
        limits: replayed, ..
    } = tune_on(
        &mut second,
        TrialBook::from_records(trials),
        &plan(),
        plugins(),
    )
    .await;
    assert_eq!(replayed.unwrap(), limits);
    assert!(second.runs.is_empty(), "ran again: {:?}", second.runs);
}

#[tokio::test]
async fn a_cancelled_run_stops_before_the_next_trial() {
    let snapshot = crate::hardware::probe(&Default::default());
    let thresholds = Thresholds::default();
    let mut machine = Machine::default();
    let mut plugins = plugins();
    let mut observer = Quiet::default();
    let cancel = CancellationToken::new();
    cancel.cancel();
    let mut driver = Driver::new(
        &mut machine,
        &mut observer,
        TrialBook::default(),
        &snapshot,
        &thresholds,
        cancel,
    );
    let result = driver.run(&plan(), &mut plugins).await;
    assert!(matches!(result, Err(TuneError::Interrupted)));
    assert!(machine.runs.is_empty());
}

fn ttft_p95_under(ms: f64) -> Slo {
    Slo {
        bounds: vec![SloBound {
            metric: SloMetric::TtftP95,
            value: ms,
        }],
    }
}

/// A whole run on a machine sustaining up to 64 streams, the ladder judging `slo`.
async fn tune_judging(slo: Slo) -> (Machine, Limits, Vec<TrialRecord>) {
    let mut machine = Machine {
        max_streams: 64,
        ..Machine::default()
    };
    let plan = Plan {
        slo: slo.clone(),
        ..plan()
    };
    let Tuned { limits, trials, .. } = tune_on(
        &mut machine,
        TrialBook::default(),
        &plan,
        plugins_judging(&slo),
    )
    .await;
    (machine, limits.unwrap(), trials)
}

/// The stream counts measured by the concurrency phase itself (one stream comes from
/// the batch phase).
fn levels(machine: &Machine) -> Vec<u32> {
    machine
        .runs
        .iter()
        .filter(|(c, _)| c.concurrency > 1)
        .map(|(c, _)| c.concurrency)
        .collect()
}

#[tokio::test]
async fn one_stream_measured_by_the_batch_phase_is_judged_as_a_level() {
    let (_, limits, trials) = tune_judging(Slo::default()).await;
    assert_eq!(limits.max_concurrency, Some(8));
    assert_eq!(limits.bounds.max_concurrency, Some(Bound::Cap { cap: 8 }));
    let one = trials
        .iter()
        .find(|r| r.config.concurrency == 1 && r.config.batch == 128)
        .expect("level 1");
    let figures = one.concurrency.as_ref().expect("judged as a level");
    assert_eq!(figures.latency.ttft_p95_ms, Some(100.0));
    assert_eq!(figures.slo, None, "no objective, no judgement");
}

#[tokio::test]
async fn an_objective_between_two_levels_ends_between_them() {
    let (machine, limits, trials) = tune_judging(ttft_p95_under(450.0)).await;
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
    let judged: Vec<(u32, bool)> = trials
        .iter()
        .filter(|r| r.phase == Phase::Concurrency)
        .map(|r| {
            assert_eq!(r.stage, Stage::Verify, "levels are verifications");
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
async fn an_objective_no_context_meets_bounds_the_context_search_by_it() {
    // 100 ms to the first token at any context, against 50 ms: no context is
    // published, and the limit says the objective bound it, with the figure.
    let (machine, limits, _) = tune_judging(ttft_p95_under(50.0)).await;
    assert_eq!(limits.max_context, None);
    assert!(levels(&machine).is_empty(), "{:?}", levels(&machine));
    match &limits.bounds.max_context {
        Some(Bound::Slo {
            measured, bound, ..
        }) => assert_eq!((*measured, *bound), (Some(100.0), 50.0)),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_phase_that_does_not_run_says_why() {
    let plan = Plan {
        concurrency: false,
        batch_scaling: false,
        ..plan()
    };
    let mut machine = Machine::default();
    let Tuned { limits, .. } = tune_on(&mut machine, TrialBook::default(), &plan, plugins()).await;
    let limits = limits.unwrap();
    assert_eq!(limits.best_batch, Some(64));
    let reason = |b: &Option<Bound>| match b {
        Some(Bound::NotRun { reason }) => reason.clone(),
        other => panic!("{other:?}"),
    };
    assert!(reason(&limits.bounds.best_batch).contains("batch_adaptation.enabled"));
    assert!(reason(&limits.bounds.max_concurrency).contains("--skip-concurrency"));
    assert!(levels(&machine).is_empty());
}

/// Each variant's plugins, the built-ins; the hints they were told.
#[derive(Default)]
struct BuiltinsPerVariant {
    hints: Vec<(Variant, Option<u32>)>,
}

impl VariantPlugins for BuiltinsPerVariant {
    fn load(
        &mut self,
        variant: &Variant,
        hint: Option<u32>,
    ) -> Result<(ContextSearch, BatchScaler), PluginError> {
        self.hints.push((*variant, hint));
        let host = host();
        let mut facts = model();
        facts.hint = hint;
        let context = host.load_context(
            &PluginRef::Builtin("binary-search".into()),
            "{}",
            &HardwareFacts::default(),
            &facts,
            &Default::default(),
        )?;
        Ok((context, batch_scaler(&host)))
    }
}

/// A fixed quality cost per cache type.
struct FixedQuality;

impl QualityJudge for FixedQuality {
    async fn quality(
        &mut self,
        variant: &Variant,
        _cancel: &CancellationToken,
    ) -> Result<crate::record::Quality, String> {
        let kld = match variant.cache_type_v {
            crate::record::KvCacheType::Q4_0 => 0.3,
            _ => 0.002,
        };
        Ok(crate::record::Quality {
            kld_mean: kld,
            kld_stddev: kld / 2.0,
            top1_agreement: 0.9,
            positions: 64,
        })
    }
}

#[tokio::test]
async fn each_variant_gets_its_own_search_and_the_largest_context_within_the_gate_is_chosen() {
    use crate::record::{CachePair, KvCacheType};
    let f16 = Variant::default();
    let q8 = f16.with_caches(CachePair::both(KvCacheType::Q8_0));
    let q4 = f16.with_caches(CachePair::both(KvCacheType::Q4_0));
    let space = plugin::VariantSpace {
        initial: f16,
        candidates: vec![f16, q8, q4],
        max_variants: 3,
    };
    let host = host();
    let search = host
        .load_variant(
            &PluginRef::Builtin("variant-frontier".into()),
            "{}",
            &HardwareFacts::default(),
            &model(),
            &space,
        )
        .expect("variant-frontier loads");
    let mut loader = BuiltinsPerVariant::default();
    let mut frontier = Frontier {
        search,
        plugins: &mut loader,
        judge: &mut FixedQuality,
        max_kld: 0.05,
    };
    let mut machine = Machine {
        limit: 40_000,
        ..Machine::default()
    };
    let snapshot = crate::hardware::probe(&Default::default());
    let thresholds = Thresholds::default();
    let mut observer = Quiet::default();
    let mut driver = Driver::new(
        &mut machine,
        &mut observer,
        TrialBook::default(),
        &snapshot,
        &thresholds,
        CancellationToken::new(),
    );
    let mut concurrency = ladder(&host, &Slo::default());
    let run = driver
        .run_frontier(&plan(), &mut concurrency, &mut frontier)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let ctx_of = |v: Variant| {
        run.rows
            .iter()
            .find(|r| r.variant == v)
            .and_then(|r| r.max_context)
            .unwrap_or_else(|| panic!("{v} measured: {:#?}", run.rows))
    };
    // The flags' variant first; q8_0 holds about twice f16's context, q4_0 more still.
    assert_eq!(run.rows[0].variant, f16);
    assert!(
        f64::from(ctx_of(q8)) >= 1.6 * f64::from(ctx_of(f16)),
        "{:#?}",
        run.rows
    );
    assert!(ctx_of(q4) > ctx_of(q8));
    assert_eq!(run.rows[0].quality, None, "f16 is the reference");
    assert!(run.rows.iter().all(|r| r.bound.is_some() && r.trials > 0));
    // q4_0 costs more than the gate: q8_0's is the published context, and the
    // concurrency phase ran at it.
    assert_eq!(run.chosen, Some(q8));
    assert_eq!(run.limits.max_context, Some(ctx_of(q8)));
    assert!(run.limits.max_concurrency.is_some());
    assert!(machine
        .runs
        .iter()
        .filter(|(c, _)| c.concurrency > 1)
        .all(|(c, _)| c.variant == q8));
    // Later variants start from what the first reached, scaled by their cache.
    let hinted = |v: Variant| {
        loader
            .hints
            .iter()
            .find(|(h, _)| *h == v)
            .and_then(|(_, h)| *h)
    };
    assert_eq!(hinted(f16), None);
    let f16_ctx = f64::from(ctx_of(f16));
    assert!(
        hinted(q8).is_some_and(|h| f64::from(h) > 1.8 * f16_ctx),
        "{:?}",
        loader.hints
    );
}

/// The offload phase's parts on the test machine: the built-in `offload-bisect`, and a
/// fit that answers `fit` (llama.cpp's choice, as `fit_offload` reads it).
struct TestOffload {
    host: PluginHost,
    layers: Option<(u32, u32)>,
    fit: Option<ozone_sdk::Offload>,
    fitted_at: Vec<u32>,
    bounds: Vec<ozone_sdk::OffloadBounds>,
}

impl TestOffload {
    fn new(layers: u32, expert_layers: u32, fit: Option<ozone_sdk::Offload>) -> Self {
        Self {
            host: host(),
            layers: Some((layers, expert_layers)),
            fit,
            fitted_at: Vec::new(),
            bounds: Vec::new(),
        }
    }
}

impl OffloadPlugins for TestOffload {
    fn layers(&self) -> Option<(u32, u32)> {
        self.layers
    }

    async fn fit(
        &mut self,
        config: &TrialConfig,
        _failed: &TrialRecord,
        _cancel: &CancellationToken,
    ) -> Option<crate::record::FitOffload> {
        self.fitted_at.push(config.ctx);
        let offload = self.fit?;
        Some(crate::record::FitOffload::Chosen {
            ctx: config.ctx,
            margin_mib: 1024,
            offload,
            layers: self.layers.map(|(l, _)| l),
            projected_mib: Some(1000),
            source: crate::record::FitOffloadSource::Loaded,
            memory: None,
            peaks: Peaks::default(),
            breach: None,
            command: Vec::new(),
        })
    }

    fn load(
        &mut self,
        bounds: &ozone_sdk::OffloadBounds,
    ) -> Result<crate::plugin::OffloadSearch, PluginError> {
        self.bounds.push(*bounds);
        self.host.load_offload(
            &PluginRef::Builtin("offload-bisect".into()),
            "{}",
            &HardwareFacts::default(),
            &model(),
            bounds,
        )
    }
}

/// A tune with the offload phase on `machine`.
async fn tune_offloading(
    machine: &mut Machine,
    plan: &Plan,
    offload: &mut TestOffload,
) -> (
    Result<(Limits, Option<crate::record::OffloadOutcome>), TuneError>,
    Vec<TrialRecord>,
) {
    let snapshot = crate::hardware::probe(&Default::default());
    let thresholds = Thresholds::default();
    let mut observer = Quiet::default();
    let mut plugins = plugins();
    let mut driver = Driver::new(
        machine,
        &mut observer,
        TrialBook::default(),
        &snapshot,
        &thresholds,
        CancellationToken::new(),
    );
    let outcome = driver.run_offloading(plan, &mut plugins, offload).await;
    (outcome, driver.book.records().to_vec())
}

/// 9 layers (8 blocks and the output) of 10 000 units each and a unit of KV a token,
/// under a budget that holds every layer up to 32 768 tokens.
fn dense_gpu() -> Gpu {
    Gpu {
        layers: 9,
        dense: 10_000,
        experts: 0,
        budget: 9 * (10_000 + 32_768),
    }
}

#[tokio::test]
async fn where_every_layer_fails_for_gpu_memory_the_offload_is_searched_from_fits_choice() {
    let mut machine = Machine {
        gpu: Some(dense_gpu()),
        limit: 2 * TRAINED,
        ..Machine::default()
    };
    let fit = ozone_sdk::Offload {
        gpu_layers: 3,
        cpu_moe_layers: 0,
    };
    let mut offload = TestOffload::new(9, 0, Some(fit));
    let mut plan = plan();
    plan.concurrency = false;
    let (outcome, trials) = tune_offloading(&mut machine, &plan, &mut offload).await;
    let (limits, outcome) = outcome.expect("the tune runs");
    let outcome = outcome.expect("the offload phase ran");
    // Full offload holds about 32k; the offload is searched at the largest context that
    // failed for GPU memory with every layer on the GPU.
    let full = limits.max_context.expect("a context at full offload");
    assert!(full <= 32_768 && 32_768 - full < 512, "{full}");
    let largest_failed = trials
        .iter()
        .filter(|t| t.phase == Phase::Context && t.verdict != Verdict::Stable)
        .map(|t| t.config.ctx)
        .max()
        .expect("failures");
    assert_eq!(outcome.ctx, largest_failed);
    assert_eq!(offload.fitted_at, vec![outcome.ctx], "fit ran once, there");
    assert_eq!(offload.bounds[0].fit, Some(fit));
    let own: Vec<&TrialRecord> = trials
        .iter()
        .filter(|t| t.phase == Phase::Offload)
        .collect();
    // Fit's choice is the first proposal.
    assert_eq!(own[0].config.variant.gpu_layers, Some(3));
    // The most layers that fit at that context, verified; one more failed.
    let gpu = dense_gpu();
    let most = (0..=9u32)
        .rev()
        .find(|g| u64::from(*g) * (gpu.dense + u64::from(outcome.ctx)) <= gpu.budget)
        .expect("some layers fit");
    assert!(most < 9);
    let found = outcome.offload.expect("an offload fits");
    assert_eq!(found.gpu_layers, most);
    let verified = trials
        .iter()
        .find(|t| Some(t.id) == outcome.trial_id)
        .expect("its verification");
    assert_eq!(
        (verified.stage, verified.verdict, verified.config.ctx),
        (Stage::Verify, Verdict::Stable, outcome.ctx)
    );
    let next = outcome.next_failed.as_ref().expect("the step above failed");
    assert_eq!(next.offload.gpu_layers, most + 1);
    assert!(outcome.decode_tps.is_some() && outcome.trials >= 2);
    assert!(
        outcome.fit_words().contains("3 of 9 layers on the GPU"),
        "{}",
        outcome.fit_words()
    );
    // The limits stay those at full offload.
    assert_eq!(limits.max_context, Some(full));
}

#[tokio::test]
async fn with_no_context_at_full_offload_the_limits_are_the_offloads() {
    // Not even the smallest context fits with every layer on the GPU (9 × 12 048).
    let gpu = Gpu {
        budget: 100_000,
        ..dense_gpu()
    };
    let mut machine = Machine {
        gpu: Some(gpu),
        limit: 2 * TRAINED,
        ..Machine::default()
    };
    let mut offload = TestOffload::new(9, 0, None);
    let mut plan = plan();
    plan.concurrency = false;
    let (outcome, trials) = tune_offloading(&mut machine, &plan, &mut offload).await;
    let (limits, outcome) = outcome.expect("the tune runs");
    let outcome = outcome.expect("the offload phase ran");
    // The largest context tried: the one the run wanted most.
    let largest = trials
        .iter()
        .filter(|t| t.phase == Phase::Context)
        .map(|t| t.config.ctx)
        .max()
        .expect("context trials");
    assert_eq!(outcome.ctx, largest);
    let most = (0..=9u32)
        .rev()
        .find(|g| u64::from(*g) * (gpu.dense + u64::from(largest)) <= gpu.budget)
        .expect("some layers fit");
    assert_eq!(outcome.offload.map(|o| o.gpu_layers), Some(most));
    assert_eq!(limits.max_context, Some(largest));
    // Bound by the step with more on the GPU.
    assert!(
        matches!(
            limits.bounds.max_context,
            Some(Bound::Memory { at, threshold: Some(crate::record::Metric::GpuMemoryBudget), .. }) if at == largest
        ),
        "{:?}",
        limits.bounds.max_context
    );
    assert!(trials.iter().any(|t| t.phase == Phase::Offload));
}

#[tokio::test]
async fn a_moe_model_gives_up_experts_before_layers() {
    // 8 expert layers of 40 000 units: with every expert on the CPU all 9 layers fit at
    // the trained context, with all of them on the GPU none does.
    let gpu = Gpu {
        layers: 9,
        dense: 10_000,
        experts: 40_000,
        budget: 9 * (10_000 + TRAINED as u64) + 3 * 40_000,
    };
    let mut machine = Machine {
        gpu: Some(gpu),
        limit: 2 * TRAINED,
        ..Machine::default()
    };
    let mut offload = TestOffload::new(9, 8, None);
    let mut plan = plan();
    plan.concurrency = false;
    let (outcome, trials) = tune_offloading(&mut machine, &plan, &mut offload).await;
    let (_, outcome) = outcome.expect("the tune runs");
    let outcome = outcome.expect("the offload phase ran");
    let own: Vec<&TrialRecord> = trials
        .iter()
        .filter(|t| t.phase == Phase::Offload)
        .collect();
    // Every proposal keeps every layer: experts went to the CPU, no layer had to.
    assert!(
        own.iter()
            .all(|t| t.config.variant.gpu_layers == Some(9) && t.config.variant.cpu_moe_layers > 0),
        "{:?}",
        own.iter().map(|t| t.config.variant).collect::<Vec<_>>()
    );
    let found = outcome.offload.expect("an offload fits");
    assert_eq!(found.gpu_layers, 9);
    // The fewest layers' experts on the CPU that fit at that context.
    let fewest = (0..=8u32)
        .find(|n| {
            let mut config = own[0].config.clone();
            config.variant.gpu_layers = Some(9);
            config.variant.cpu_moe_layers = *n;
            gpu.fits(&config)
        })
        .expect("every expert on the CPU fits");
    assert!(fewest > 0 && fewest < 8, "{fewest}");
    assert_eq!(found.cpu_moe_layers, fewest);
}

#[tokio::test]
async fn no_offload_phase_on_a_cpu_machine_with_a_set_ngl_or_without_the_plugins() {
    // A CPU-only machine: the context search is bound by RAM, never by a GPU.
    let mut machine = Machine::default();
    let mut offload = TestOffload::new(9, 0, None);
    let mut plan = plan();
    plan.concurrency = false;
    let (outcome, trials) = tune_offloading(&mut machine, &plan, &mut offload).await;
    let (limits, outcome) = outcome.expect("the tune runs");
    assert!(limits.max_context.is_some());
    assert_eq!(outcome, None);
    assert!(offload.fitted_at.is_empty() && offload.bounds.is_empty());
    assert!(trials.iter().all(|t| t.phase != Phase::Offload));

    // -ngl set by the user: the offload is theirs.
    let mut machine = Machine {
        gpu: Some(dense_gpu()),
        limit: 2 * TRAINED,
        ..Machine::default()
    };
    let mut fixed = plan.clone();
    fixed.variant.gpu_layers = Some(9);
    let (outcome, _) = tune_offloading(&mut machine, &fixed, &mut offload).await;
    assert_eq!(outcome.expect("the tune runs").1, None);

    // No offload plugins (the lab, a backend Ozone does not offload).
    let mut machine = Machine {
        gpu: Some(dense_gpu()),
        limit: 2 * TRAINED,
        ..Machine::default()
    };
    offload.layers = None;
    let (outcome, trials) = tune_offloading(&mut machine, &plan, &mut offload).await;
    assert_eq!(outcome.expect("the tune runs").1, None);
    assert!(trials.iter().all(|t| t.phase != Phase::Offload));
}
