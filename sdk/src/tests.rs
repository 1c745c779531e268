use serde::Deserialize;

use crate::bisect::{Bisection, Bracket};
use crate::testing::{self, ConcurrencyMachine, MemoryMachine};
use crate::*;

#[derive(Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
struct Knobs {
    factor: f64,
    steps: u32,
}

#[test]
fn settings_default_on_blank_ignore_unknown_and_reject_wrong_types() {
    assert_eq!(settings::parse::<Knobs>("  "), Ok(Knobs::default()));
    let knobs: Knobs = settings::parse(r#"{"steps": 3, "other": true}"#).expect("parses");
    assert_eq!(
        knobs,
        Knobs {
            factor: 0.0,
            steps: 3
        }
    );
    let err = settings::parse::<Knobs>(r#"{"steps": "three"}"#).expect_err("wrong type");
    assert!(
        err.starts_with("invalid settings: invalid type: string"),
        "{err}"
    );
}

#[test]
fn bounds_fit_aligns_down_and_clamps() {
    let b = ContextBounds {
        min: 2048,
        max: 131_072,
        granularity: 256,
    };
    assert_eq!(b.fit(100_000), 99_840);
    assert_eq!(b.fit(10), 2048);
    assert_eq!(b.fit(1 << 40), 131_072);
    assert!(b.accepts(2048) && !b.accepts(2049) && !b.accepts(0));
}

/// Proposes a fixed sequence, then stops.
struct Script(Vec<u32>);

impl ContextSearch for Script {
    fn new(
        settings: &str,
        _: &HardwareFacts,
        _: &ModelFacts,
        _: &ContextLimits,
    ) -> Result<Self, String> {
        let values: Vec<u32> = serde_json::from_str(settings).map_err(|e| e.to_string())?;
        Ok(Script(values.into_iter().rev().collect()))
    }
    fn propose(&mut self) -> Option<u32> {
        self.0.last().copied()
    }
    fn observe(&mut self, _: &TrialOutcome) {
        self.0.pop();
    }
    fn best(&self) -> Option<u32> {
        None
    }
}

#[test]
fn the_harness_catches_out_of_bounds_proposals_and_endless_policies() {
    let machine = MemoryMachine::with_context_limit(50_000);
    let model = testing::model(131_072);
    let run = |settings: &str| {
        testing::run_context::<Script>(settings, &machine.hardware(), &model, |c| {
            machine.context_trial(c)
        })
    };
    assert_eq!(
        run("[4096, 8192]").map(|r| r.proposals),
        Ok(vec![4096, 8192])
    );
    let err = run("[4096, 1000]").expect_err("out of bounds");
    assert!(err.contains("proposed context 1000"), "{err}");
    let endless = format!("{:?}", vec![4096; 100]);
    let err = run(&endless).expect_err("endless");
    assert!(err.contains("did not stop"), "{err}");
}

#[test]
fn memory_machine_reports_peaks_and_headroom() {
    let machine = MemoryMachine::with_context_limit(10_000);
    let ok = machine.context_trial(10_000);
    assert!(ok.is_stable());
    assert_eq!(ok.headroom.gpu_memory_bytes, Some(0));
    let bad = machine.context_trial(10_240);
    assert_eq!(bad.failure, Some(Failure::ThresholdBreach(Threshold::Vram)));
    assert!(bad.headroom.gpu_memory_bytes.is_some_and(|h| h < 0));
}

#[test]
fn api_version_is_the_wit_package_version() {
    let wit = include_str!("../wit/strategy.wit");
    let package = wit
        .lines()
        .find_map(|l| l.strip_prefix("package "))
        .expect("a package line");
    assert_eq!(package, format!("ozone:strategy@{API_VERSION};"));
}

/// `sdk/wit` is a copy (a link breaks on Windows checkouts, and the SDK must carry its
/// contract when it is vendored): it must be the workspace's current version.
#[test]
fn the_sdk_carries_the_current_contract_unchanged() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let current = dir.join(format!("../wit/v{API_VERSION}/strategy.wit"));
    let Ok(expected) = std::fs::read_to_string(&current) else {
        panic!(
            "{} is missing: API_VERSION names a contract version the workspace does not have",
            current.display()
        );
    };
    assert!(
        include_str!("../wit/strategy.wit") == expected,
        "sdk/wit/strategy.wit differs from {}: copy it over (cp wit/v{API_VERSION}/strategy.wit sdk/wit/)",
        current.display()
    );
}

#[test]
fn bracket_bisects_on_the_granularity_and_closes() {
    let mut b = Bracket::new(2048, 256);
    assert_eq!(
        (b.midpoint(), b.inside(9000), b.is_closed()),
        (None, None, false)
    );
    b.record(8192, true);
    assert_eq!(b.midpoint(), None, "no failure known yet");
    b.record(9216, false);
    assert_eq!(b.midpoint(), Some(8704));
    assert_eq!(b.inside(0), Some(8448));
    assert_eq!(b.inside(100_000), Some(8960));
    b.record(8960, true);
    assert!(b.is_closed());
    assert_eq!((b.passed(), b.failed()), (Some(8960), Some(9216)));
}

#[test]
fn a_failure_withdraws_the_passes_at_or_above_it() {
    // Screens passed up to 9728, 9984 failed; the verification of 9728 then fails.
    let mut b = Bracket::new(2048, 256);
    for ctx in [4096, 8192, 9472, 9728] {
        b.record(ctx, true);
    }
    b.record(9984, false);
    assert!(b.is_closed());
    b.record(9728, false);
    assert_eq!((b.passed(), b.failed()), (Some(9472), Some(9728)));
    assert!(b.is_closed(), "9472 is the next best, nothing left between");
    // A failure far below withdraws every pass above it: the bracket reopens below.
    b.record(6144, false);
    assert_eq!((b.passed(), b.failed()), (Some(4096), Some(6144)));
    assert_eq!(b.midpoint(), Some(5120));
}

#[test]
fn bracket_without_a_pass_can_still_try_the_floor() {
    let mut b = Bracket::new(2048, 256);
    b.record(2304, false);
    assert_eq!(b.midpoint(), Some(2048));
    b.record(2048, false);
    assert!(b.is_closed());
    // Granularity 1 (stream counts): 4 passed, 8 missed → 6, then 5 or 7.
    let mut n = Bracket::new(1, 1);
    n.record(4, true);
    n.record(8, false);
    assert_eq!(n.midpoint(), Some(6));
}

#[test]
fn bisection_repeats_the_pending_proposal_until_observed() {
    let mut s = Bisection::new(2048, 256);
    assert_eq!(s.propose_with(|_| Some(4096)), Some(4096));
    assert_eq!(s.propose_with(|_| unreachable!("pending")), Some(4096));
    assert_eq!(s.pending(), Some(4096));
    s.observe(4096, false);
    assert_eq!(s.pending(), None);
    assert_eq!(s.propose_with(Bracket::midpoint), Some(2048 + 768));
}

#[test]
fn concurrency_machine_latency_grows_with_streams_and_the_slo_is_judged() {
    let machine = ConcurrencyMachine::default();
    let none = Slo::default();
    let one = machine.concurrency_trial(1, &none);
    assert_eq!(one.trial.slo_met, None);
    assert!(one.passed());
    assert_eq!(one.trial.stage, Stage::Verify);
    assert_eq!(one.trial.samples, ConcurrencyMachine::REQUESTS_PER_STREAM);
    assert_eq!(one.trial.latency.ttft_p95_ms, Some(250.0));
    let eight = machine.concurrency_trial(8, &none);
    assert_eq!(eight.trial.latency.ttft_p95_ms, Some(2000.0));
    assert_eq!(eight.min_stream_decode_tps, Some(20.0));
    assert_eq!(eight.aggregate_decode_tps, Some(160.0));

    let slo = Slo {
        bounds: vec![
            SloBound {
                metric: SloMetric::TtftP95,
                value: 1000.0,
            },
            SloBound {
                metric: SloMetric::DecodeMin,
                value: 30.0,
            },
        ],
    };
    let four = machine.concurrency_trial(4, &slo);
    assert_eq!(
        (four.trial.slo_met, four.trial.slo_missed.len()),
        (Some(true), 0)
    );
    let eight = machine.concurrency_trial(8, &slo);
    assert_eq!(eight.trial.slo_met, Some(false));
    assert!(!eight.passed());
    assert_eq!(
        eight.trial.slo_missed,
        vec![
            SloMiss {
                metric: SloMetric::TtftP95,
                bound: 1000.0,
                measured: Some(2000.0)
            },
            SloMiss {
                metric: SloMetric::DecodeMin,
                bound: 30.0,
                measured: Some(20.0)
            },
        ]
    );
}

#[test]
fn a_figure_that_was_not_measured_misses() {
    let mut outcome = ConcurrencyMachine::default().concurrency_trial(2, &Slo::default());
    outcome.trial.latency.tpot_p95_ms = None;
    outcome.judge(&Slo {
        bounds: vec![SloBound {
            metric: SloMetric::TpotP95,
            value: 1e9,
        }],
    });
    assert_eq!(outcome.trial.slo_met, Some(false));
    assert_eq!(outcome.trial.slo_missed[0].measured, None);
}

/// Proposes a fixed list of stream counts (its settings), then stops.
struct Fixed(Vec<u32>);

impl Fixed {
    fn parse(settings: &str) -> Result<Self, String> {
        let values: Vec<u32> = serde_json::from_str(settings).map_err(|e| e.to_string())?;
        Ok(Fixed(values.into_iter().rev().collect()))
    }
}

/// Proposes a fixed list of `[batch, ubatch]` pairs, then stops.
struct FixedBatches(Vec<BatchProposal>);

impl BatchScaler for FixedBatches {
    fn new(s: &str, _: &HardwareFacts, _: &ModelFacts, _: &BatchBounds) -> Result<Self, String> {
        let pairs: Vec<(u32, u32)> = serde_json::from_str(s).map_err(|e| e.to_string())?;
        Ok(FixedBatches(
            pairs
                .into_iter()
                .rev()
                .map(|(batch, ubatch)| BatchProposal { batch, ubatch })
                .collect(),
        ))
    }
    fn propose(&mut self) -> Option<BatchProposal> {
        self.0.last().copied()
    }
    fn observe(&mut self, _: &TrialOutcome) {
        self.0.pop();
    }
    fn best(&self) -> Option<BatchProposal> {
        None
    }
}

impl ConcurrencySearch for Fixed {
    fn new(
        s: &str,
        _: &HardwareFacts,
        _: &ModelFacts,
        _: &ConcurrencyBounds,
        _: &Slo,
    ) -> Result<Self, String> {
        Fixed::parse(s)
    }
    fn propose(&mut self) -> Option<u32> {
        self.0.last().copied()
    }
    fn observe(&mut self, _: &ConcurrencyOutcome) {
        self.0.pop();
    }
    fn best(&self) -> Option<u32> {
        None
    }
}

#[test]
fn the_harness_holds_batch_and_concurrency_proposals_to_their_bounds() {
    let model = testing::model(8192);
    let machine = testing::BatchMachine {
        best_batch: 64,
        peak_tps: 100.0,
        oom_above: None,
    };
    let batch = |s: &str| {
        testing::run_batch::<FixedBatches>(
            s,
            &Default::default(),
            &model,
            &testing::batch_bounds(32),
            |b| machine.batch_trial(b),
        )
    };
    let pair = |batch, ubatch| BatchProposal { batch, ubatch };
    assert_eq!(
        batch("[[32, 32], [256, 64]]").map(|r| r.proposals),
        Ok(vec![pair(32, 32), pair(256, 64)])
    );
    let err = batch("[[32, 32], [257, 64]]").expect_err("above max");
    assert!(
        err.contains("proposed batch BatchProposal { batch: 257"),
        "{err}"
    );
    assert!(
        batch("[[64, 128]]").is_err(),
        "a micro-batch above its batch"
    );
    assert!(batch("[[0, 0]]").is_err());

    let streams = ConcurrencyMachine::default();
    let run = |s: &str| {
        testing::run_concurrency::<Fixed>(
            s,
            &Default::default(),
            &model,
            &testing::concurrency_bounds(8),
            &Slo::default(),
            |n| streams.concurrency_trial(n, &Slo::default()),
        )
    };
    assert_eq!(run("[1, 8]").map(|r| r.proposals), Ok(vec![1, 8]));
    let err = run("[1, 9]").expect_err("above max");
    assert!(err.contains("proposed concurrency 9"), "{err}");
}

#[cfg(not(target_arch = "wasm32"))]
#[test]
fn records_serialize_with_the_wit_names_in_snake_case() {
    let outcome = MemoryMachine::with_context_limit(4096).context_trial(8192);
    let json = serde_json::to_value(&outcome).expect("serializes");
    assert_eq!(json["stage"], "screen");
    assert_eq!(json["failure"]["threshold_breach"], "vram");
    assert_eq!(
        json["peak_server_gpu_memory_bytes"],
        serde_json::Value::Null
    );
    let back: TrialOutcome = serde_json::from_value(json).expect("round trip");
    assert_eq!(back, outcome);
    let metric = serde_json::to_value(SloMetric::E2eP95).expect("serializes");
    assert_eq!(metric, SloMetric::E2eP95.name());
}

/// Doubles the context from the smallest and stops at the first trial that is not
/// stable: it takes one noisy trial for the limit.
struct GiveUp {
    bounds: ContextBounds,
    next: Option<u32>,
    best: Option<u32>,
}

impl ContextSearch for GiveUp {
    fn new(
        _: &str,
        _: &HardwareFacts,
        model: &ModelFacts,
        _: &ContextLimits,
    ) -> Result<Self, String> {
        Ok(GiveUp {
            bounds: model.bounds,
            next: Some(model.bounds.min),
            best: None,
        })
    }
    fn propose(&mut self) -> Option<u32> {
        self.next
    }
    fn observe(&mut self, o: &TrialOutcome) {
        let ctx = o.config.ctx;
        self.next = None;
        if o.is_stable() {
            self.best = Some(ctx);
            self.next = (ctx < self.bounds.max).then(|| self.bounds.fit(u64::from(ctx) * 2));
        }
    }
    fn best(&self) -> Option<u32> {
        self.best
    }
}

#[test]
fn a_search_that_gives_up_on_one_failed_trial_fails_the_noise_check() {
    let err = testing::check_noise_tolerance::<GiveUp>("{}", 13_000, 32_768, 0..20)
        .expect_err("a transient failure ends its search");
    assert!(err.contains("transient failure"), "{err}");
}

#[test]
fn the_noisy_machine_is_seeded_and_its_failures_pass() {
    use testing::NoisyMachine;
    let screens = |seed| {
        let m = NoisyMachine::new(MemoryMachine::with_context_limit(13_000), seed);
        let first: Vec<_> = (8..48).map(|k| m.context_trial(k * 256)).collect();
        let second: Vec<_> = (8..48).map(|k| m.context_trial(k * 256)).collect();
        (first, second)
    };
    let (first, second) = screens(3);
    assert_eq!(screens(3), (first.clone(), second.clone()), "seeded");
    let transient = first
        .iter()
        .filter(|o| o.failure == Some(Failure::Timeout))
        .count();
    assert!(
        (4..=18).contains(&transient),
        "{transient} of 40 at a 25 % rate"
    );
    for (a, b) in first.iter().zip(&second) {
        // The second screen of a context is its true outcome: stable up to the limit.
        assert_eq!(b.is_stable(), a.config.ctx <= 13_000, "{:?}", b.config);
        assert!(b.failure != Some(Failure::Timeout));
    }
    let peaks: Vec<_> = first.iter().map(|o| o.peak_gpu_memory_bytes).collect();
    let clean = MemoryMachine::with_context_limit(13_000);
    assert!(first
        .iter()
        .zip(&peaks)
        .any(|(o, p)| *p != clean.context_trial(o.config.ctx).peak_gpu_memory_bytes));
}

#[test]
fn a_sliding_window_model_s_cache_stops_growing_at_the_window() {
    // Gemma 3 270M: 3 full-attention layers and 15 of a 512-token window, 1 KiB a token
    // each at f16 (one KV head of 256 + 256).
    let mut model = testing::model(32_768);
    model.layers = vec![
        LayerGroup {
            kind: LayerKind::FullAttention,
            count: 3,
            kv_bytes_per_token: 1024,
            window: None,
            state_bytes: None,
        },
        LayerGroup {
            kind: LayerKind::SlidingWindow,
            count: 15,
            kv_bytes_per_token: 1024,
            window: Some(512),
            state_bytes: None,
        },
    ];
    // As llama.cpp logged them at -c 32768 -ub 512: 96 MiB for the 3 full layers, 15 MiB
    // for 1024 cells of the 15 windowed ones.
    assert_eq!(model.kv_cache_bytes(32_768, 512), Some((96 + 15) << 20));
    // Below the window every layer grows.
    assert_eq!(model.kv_cache_bytes(256, 512), Some(18 * 1024 * 256));
    let recurrent = LayerGroup {
        kind: LayerKind::Recurrent,
        count: 4,
        kv_bytes_per_token: 0,
        window: None,
        state_bytes: Some(1 << 20),
    };
    assert_eq!(recurrent.cache_bytes(2048, 1, 512), 4 << 20);
    assert_eq!(recurrent.cache_bytes(131_072, 2, 512), 8 << 20);
}

#[test]
fn a_quantized_v_cache_needs_flash_attention() {
    let q4 = Variant {
        cache_type_k: CacheType::Q4_0,
        cache_type_v: CacheType::Q4_0,
        flash_attn: FlashAttn::Off,
        ..Variant::default()
    };
    assert!(!q4.is_possible());
    assert!(Variant {
        flash_attn: FlashAttn::On,
        ..q4
    }
    .is_possible());
    assert!((q4.cache_ratio() - 18.0 / 64.0).abs() < 1e-12);
    assert_eq!(q4.to_string(), "kv q4_0/q4_0 fa off");
}

#[test]
fn the_harness_holds_variant_proposals_to_the_space_and_once_each() {
    struct Listed(Vec<Variant>);
    impl VariantSearch for Listed {
        fn new(
            s: &str,
            _: &HardwareFacts,
            _: &ModelFacts,
            space: &VariantSpace,
        ) -> Result<Self, String> {
            let n: usize = s.parse().map_err(|_| "a count".to_string())?;
            Ok(Listed(
                space.candidates.iter().copied().cycle().take(n).collect(),
            ))
        }
        fn propose(&mut self) -> Option<Variant> {
            self.0.first().copied()
        }
        fn observe(&mut self, _: &VariantOutcome) {
            self.0.remove(0);
        }
    }
    let q8 = Variant {
        cache_type_k: CacheType::Q8_0,
        cache_type_v: CacheType::Q8_0,
        ..Variant::default()
    };
    let space = VariantSpace {
        initial: Variant::default(),
        candidates: vec![Variant::default(), q8],
        max_variants: 4,
    };
    let machine = testing::VariantMachine {
        f16_limit: 10_000,
        trained: 32_768,
        trials_each: 6,
    };
    let run = |s: &str| {
        testing::run_variants::<Listed>(
            s,
            &Default::default(),
            &testing::model(32_768),
            &space,
            |v| machine.variant_trial(v),
        )
    };
    assert_eq!(
        run("2").map(|r| r.proposals),
        Ok(vec![Variant::default(), q8])
    );
    let err = run("3").expect_err("the first again");
    assert!(err.contains("proposed variant"), "{err}");
    let q8_outcome = machine.variant_trial(q8);
    assert_eq!(q8_outcome.max_context, Some(18_688));
    assert!(q8_outcome.quality.is_some_and(|q| q.kld_mean > 0.0));
    assert!(machine.variant_trial(Variant::default()).quality.is_none());
}
