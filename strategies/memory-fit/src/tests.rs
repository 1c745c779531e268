//! The decision table, and a matrix of simulated machines: GPUs and CPU servers under a
//! memory budget, several slopes, limits and trained contexts, seeded noise on the
//! readings, peaks the 100 ms sampler misses, unstable screens, flat and falling memory,
//! walls that are not memory, warm starts and failed verifications.
//!
//! The noise lives here until the SDK harness has noisy machines of its own.

use std::cell::Cell;

use binary_search::BinarySearch;
use ozone_sdk::testing::{self, MemoryMachine, Run};
use ozone_sdk::{
    ContextSearch, Failure, HardwareFacts, ModelFacts, Stage, Threshold, TrialOutcome, Verdict,
};

use super::table::cases;
use super::MemoryFit;

const MIB: f64 = (1 << 20) as f64;
const GIB: f64 = (1 << 30) as f64;

#[test]
fn decision_table_natively() {
    for case in cases() {
        let machine = MemoryMachine::with_context_limit(case.limit);
        let mut model = testing::model(case.trained);
        model.hint = case.hint;
        if !case.prior {
            model.kv_bytes_per_token = None;
            model.layers.clear();
        }
        let run =
            testing::run_context::<MemoryFit>(case.settings, &machine.hardware(), &model, |ctx| {
                machine.context_trial(ctx)
            })
            .unwrap_or_else(|e| panic!("{}: {e}", case.name));
        assert_eq!(run.proposals, case.proposals, "{}", case.name);
        assert_eq!(run.best, case.best, "{}", case.name);
    }
}

/// Which memory the simulated server runs into.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Binds {
    /// A discrete GPU's threshold (whole device).
    Gpu,
    /// The user's budget on the server's GPU memory.
    GpuBudget,
    /// The user's budget on the server's resident memory (CPU inference).
    Process,
    /// The machine's RAM (CPU inference, no budget).
    Ram,
}

/// A machine whose binding memory is `base + per_token × ctx` (bytes) against `limit`,
/// read with noise: ± `noise` on every reading, and up to `missed` below the true peak
/// (the 100 ms sampler misses the top). The guard breaches on what it reads, as the real
/// one does. `unstable` is the chance that a screen which fits comes back unstable.
/// Above `wall`, trials fail for a reason that is not memory.
#[derive(Debug, Clone)]
struct Sim {
    binds: Binds,
    base: f64,
    per_token: f64,
    limit: f64,
    noise: f64,
    missed: f64,
    unstable: f64,
    wall: Option<(u32, Failure)>,
    /// Requests per trial: 1 for a screen.
    samples: u32,
    rng: Cell<u64>,
}

impl Sim {
    /// A clean machine whose largest stable context is `limit_ctx`.
    fn new(binds: Binds, base: f64, per_token: f64, limit_ctx: u32) -> Self {
        Self {
            binds,
            base,
            per_token,
            limit: base + per_token * f64::from(limit_ctx),
            noise: 0.0,
            missed: 0.0,
            unstable: 0.0,
            wall: None,
            samples: 1,
            rng: Cell::new(0x9e37_79b9_7f4a_7c15),
        }
    }

    fn seeded(mut self, seed: u64, noise: f64, missed: f64, unstable: f64) -> Self {
        self.rng = Cell::new(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        self.noise = noise;
        self.missed = missed;
        self.unstable = unstable;
        self
    }

    /// Uniform in [0, 1) (xorshift64*).
    fn uniform(&self) -> f64 {
        let mut x = self.rng.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng.set(x);
        (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// The largest aligned context that fits without noise.
    fn true_limit(&self, bounds: &ozone_sdk::ContextBounds) -> u32 {
        let ctx = ((self.limit - self.base) / self.per_token).max(0.0) as u64;
        bounds.fit(ctx)
    }

    fn hardware(&self) -> HardwareFacts {
        let limit = Some(self.limit as u64);
        let mut hw = HardwareFacts {
            ram_total_bytes: Some(64 << 30),
            ram_available_bytes: Some(60 << 30),
            ram_limit_bytes: Some(54 << 30),
            logical_cores: Some(16),
            ..Default::default()
        };
        match self.binds {
            Binds::Gpu => {
                hw.gpu_count = 1;
                hw.gpu_memory_total_bytes = Some((self.limit * 1.1) as u64);
                hw.gpu_memory_limit_bytes = limit;
            }
            Binds::GpuBudget => {
                hw.gpu_count = 1;
                hw.gpu_memory_total_bytes = Some(80 << 30);
                hw.gpu_memory_limit_bytes = Some(72 << 30);
                hw.gpu_memory_budget_bytes = limit;
            }
            Binds::Process => hw.process_memory_budget_bytes = limit,
            Binds::Ram => hw.ram_limit_bytes = limit,
        }
        hw
    }

    fn trial(&self, ctx: u32) -> TrialOutcome {
        let truth = self.base + self.per_token * f64::from(ctx);
        let noise = (2.0 * self.uniform() - 1.0) * self.noise;
        let read = (truth + noise - self.uniform() * self.missed).max(0.0);
        let config = testing::context_config(ctx);
        let wall = self.wall.filter(|(at, _)| ctx > *at).map(|(_, f)| f);
        let mut o = if read > self.limit {
            testing::failed(config, Failure::ThresholdBreach(self.threshold()))
        } else if let Some(failure) = wall {
            let mut o = testing::failed(config, failure);
            o.stage = Stage::Screen;
            o.samples = 1;
            return o; // no readings: the trial never got to its peak
        } else if self.uniform() < self.unstable {
            TrialOutcome {
                verdict: Verdict::Unstable,
                success_rate: 0.0,
                ..testing::stable(config)
            }
        } else {
            testing::stable(config)
        };
        o.stage = if self.samples == 1 {
            Stage::Screen
        } else {
            Stage::Verify
        };
        o.samples = self.samples;
        o.cv = None;
        let peak = Some(read as u64);
        let headroom = Some(self.limit as i64 - read as i64);
        match self.binds {
            Binds::Gpu => {
                o.peak_gpu_memory_bytes = peak;
                o.headroom.gpu_memory_bytes = headroom;
            }
            Binds::GpuBudget => {
                o.peak_server_gpu_memory_bytes = peak;
                o.headroom.gpu_memory_budget_bytes = headroom;
                // The device holds more than the server; far from its own limit.
                o.peak_gpu_memory_bytes = Some(read as u64 + (1 << 30));
                o.headroom.gpu_memory_bytes = Some((72i64 << 30) - read as i64 - (1 << 30));
            }
            Binds::Process => {
                o.peak_process_memory_bytes = peak;
                o.headroom.process_memory_bytes = headroom;
            }
            Binds::Ram => {}
        }
        // Whole-machine RAM, moving with whatever else runs (±1 GiB).
        let ram = match self.binds {
            Binds::Ram => read,
            _ => 8.0 * GIB + (2.0 * self.uniform() - 1.0) * GIB,
        };
        o.peak_ram_bytes = Some(ram as u64);
        o.headroom.ram_bytes = Some(
            if self.binds == Binds::Ram {
                self.limit
            } else {
                54.0 * GIB
            } as i64
                - ram as i64,
        );
        o
    }

    fn threshold(&self) -> Threshold {
        match self.binds {
            Binds::Gpu => Threshold::Vram,
            Binds::GpuBudget => Threshold::GpuMemoryBudget,
            Binds::Process => Threshold::ProcessMemory,
            Binds::Ram => Threshold::Ram,
        }
    }
}

/// What a run cost and found.
#[derive(Debug)]
struct Tally {
    run: Run,
    /// Trials that failed on memory (breach or out of memory): the expensive ones.
    breaches: usize,
    /// The step above `best` was measured and did not hold.
    proven: bool,
}

fn drive<S: ContextSearch>(sim: &Sim, model: &ModelFacts) -> Tally {
    let mut outcomes: Vec<TrialOutcome> = Vec::new();
    let run = testing::run_context::<S>("{}", &sim.hardware(), model, |ctx| {
        let o = sim.trial(ctx);
        outcomes.push(o.clone());
        o
    })
    .expect("run");
    let breaches = outcomes
        .iter()
        .filter(|o| o.failure.is_some_and(|f| f.is_memory()))
        .count();
    let g = model.bounds.granularity;
    let proven = run.best.is_some_and(|b| {
        b == model.bounds.max
            || outcomes
                .iter()
                .any(|o| o.config.ctx == b + g && !o.is_stable())
    });
    Tally {
        run,
        breaches,
        proven,
    }
}

fn model(trained: u32, kv_bytes: Option<u64>) -> ModelFacts {
    let mut m = testing::model(trained);
    // The slope alone (no layers): a dense model's cache grows by it.
    m.kv_bytes_per_token = kv_bytes;
    m.layers.clear();
    m
}

/// The generated demo model (trained context 131072) on this project's 2-core CI machine
/// under a 48 MiB server budget, as measured with the CPU llama-server of
/// `.ci/install-llama-server`. Screens (one fill): resident memory 28.6 MiB + 0.777 KiB
/// per token (1.5× its 512-byte KV cache; a 1024..16384 sweep fits a line within
/// 0.22 MiB), so the limit is near 25 600. Full trials of 5 samples: llama-server keeps
/// each finished request's cache in RAM (`--cache-ram`), so every further sample adds a
/// KV cache — 2.78 KiB per token (5.4× the prior), the limit near 7150, readings
/// spread as in the shipped profiles (±0.3 MiB, and up to 0.4 MiB of the peak missed
/// between two 100 ms samples).
fn demo(seed: u64, full_trials: bool) -> (Sim, ModelFacts) {
    let (per_token, noise, missed) = if full_trials {
        (2.78 * 1024.0, 0.3 * MIB, 0.4 * MIB)
    } else {
        (0.777 * 1024.0, 0.1 * MIB, 0.1 * MIB)
    };
    let sim = Sim {
        limit: 48.0 * MIB,
        samples: if full_trials { 5 } else { 1 },
        ..Sim::new(Binds::Process, 28.6 * MIB, per_token, 0)
    }
    .seeded(seed, noise, missed, 0.0);
    (sim, model(131_072, Some(512)))
}

fn demo_runs(full_trials: bool) -> Vec<(u32, Tally)> {
    (1..=40)
        .map(|seed| {
            let (sim, model) = demo(seed, full_trials);
            (
                sim.true_limit(&model.bounds),
                drive::<MemoryFit>(&sim, &model),
            )
        })
        .collect()
}

/// Every run proven and within `band` of the truth; then the share of runs in ≤ 4
/// trials with ≤ 1 breach, the mean trials and the mean breaches.
fn summarize(runs: &[(u32, Tally)], band: u32) -> (usize, f64, f64) {
    for (truth, t) in runs {
        let best = t.run.best.expect("a stable context");
        assert!(t.proven, "{:?}", t.run);
        assert!(
            best.abs_diff(*truth) <= band,
            "{best} vs {truth}: {:?}",
            t.run
        );
        assert!(t.breaches <= 2, "{:?}", t.run);
    }
    let n = runs.len() as f64;
    let within = runs
        .iter()
        .filter(|(_, t)| t.run.proposals.len() <= 4 && t.breaches <= 1)
        .count();
    let trials = runs
        .iter()
        .map(|(_, t)| t.run.proposals.len())
        .sum::<usize>() as f64
        / n;
    let breaches = runs.iter().map(|(_, t)| t.breaches).sum::<usize>() as f64 / n;
    (within, trials, breaches)
}

#[test]
fn demo_model_under_48_mib_in_four_screens_and_one_breach() {
    // Issue 9's target on the simulated demo: ≤ 4 context trials, ≤ 1 breach. The
    // readings spread ±0.2 MiB ≈ ±260 tokens: the answer is the truth or a step off.
    let (within, trials, breaches) = summarize(&demo_runs(false), 256);
    assert!(
        within >= 26,
        "{within} of 40 runs within 4 trials and 1 breach"
    );
    assert!(
        trials <= 4.5 && breaches <= 1.1,
        "{trials} trials, {breaches} breaches"
    );
}

#[test]
fn demo_model_with_full_trials() {
    // Today's full trials: memory grows 5.4× faster than the KV cache alone; the prior
    // counts one cache per request in host memory, so the second point still fits.
    let (within, trials, breaches) = summarize(&demo_runs(true), 512);
    assert!(
        within >= 24,
        "{within} of 40 runs within 4 trials and 1 breach"
    );
    assert!(
        trials <= 4.6 && breaches <= 1.15,
        "{trials} trials, {breaches} breaches"
    );
}

/// Every machine of the matrix, clean and noisy: memory-fit finds the limit (to within
/// the noise), proves it with a failure one step above, in fewer trials and with fewer
/// breaches than binary-search.
#[test]
fn the_matrix_against_binary_search() {
    let gpu = |limit| Sim::new(Binds::Gpu, 5.0 * GIB, 131_072.0, limit);
    let cpu = |limit| Sim::new(Binds::Process, 400.0 * MIB, 160_000.0, limit);
    let budget = |limit| Sim::new(Binds::GpuBudget, 9.0 * GIB, 200_000.0, limit);
    let ram = |limit| Sim::new(Binds::Ram, 6.0 * GIB, 300_000.0, limit);
    // (machine, trained context, KV prior as a share of the real slope, reading noise
    // and missed peak as shares of the limit: GPU memory is read exactly by the driver,
    // resident memory moves and is sampled every 100 ms)
    let machines: Vec<(&str, Sim, u32, f64, f64)> = vec![
        (
            "gpu 8b, limit 100k of 128k",
            gpu(100_000),
            131_072,
            1.0,
            0.001,
        ),
        (
            "gpu 8b, limit 30k of 128k",
            gpu(30_000),
            131_072,
            1.0,
            0.001,
        ),
        ("gpu 8b, limit 5k of 32k", gpu(5000), 32_768, 1.0, 0.001),
        ("gpu, buffers: prior 0.6x", gpu(70_000), 131_072, 0.6, 0.001),
        (
            "gpu budget, limit 44k of 128k",
            budget(44_000),
            131_072,
            0.9,
            0.001,
        ),
        (
            "cpu budget, limit 20k of 32k",
            cpu(20_000),
            32_768,
            0.7,
            0.004,
        ),
        (
            "cpu budget, limit 60k of 128k",
            cpu(60_000),
            131_072,
            0.6,
            0.004,
        ),
        ("ram, limit 150k of 256k", ram(150_000), 262_144, 0.8, 0.004),
    ];
    let (mut fit_trials, mut bin_trials, mut fit_breaches, mut bin_breaches) = (0, 0, 0, 0);
    for (name, clean, trained, prior_share, noise) in machines {
        for (seed, noise) in [(0, 0.0), (7, noise), (11, 2.0 * noise)] {
            let sim = clean
                .clone()
                .seeded(seed, noise * clean.limit, noise * clean.limit, 0.0);
            let m = model(trained, Some((clean.per_token * prior_share) as u64));
            let truth = sim.true_limit(&m.bounds);
            let fit = drive::<MemoryFit>(&sim, &m);
            let bin = drive::<BinarySearch>(&sim, &m);
            let label = format!("{name}, noise {noise}: memory-fit {:?}", fit.run);
            let best = fit.run.best.expect(&label);
            // Readings spread ± 2 noise of the limit around the truth.
            let band = (2.0 * noise * clean.limit / clean.per_token) as u32 + 256;
            assert!(best.abs_diff(truth) <= band, "{label}: truth {truth}");
            assert!(fit.proven, "{label}");
            assert!(fit.breaches <= 2, "{label}");
            assert!(fit.run.proposals.len() <= 7, "{label}");
            fit_trials += fit.run.proposals.len();
            bin_trials += bin.run.proposals.len();
            fit_breaches += fit.breaches;
            bin_breaches += bin.breaches;
        }
    }
    assert!(
        fit_trials * 3 <= bin_trials * 2,
        "memory-fit {fit_trials} trials, binary-search {bin_trials}"
    );
    assert!(
        fit_breaches * 2 <= bin_breaches,
        "memory-fit {fit_breaches} breaches, binary-search {bin_breaches}"
    );
}

#[test]
fn the_trained_context_binds_in_few_trials() {
    for (binds, base, per_token) in [
        (Binds::Gpu, 5.0 * GIB, 131_072.0),
        (Binds::Process, 400.0 * MIB, 100_000.0),
    ] {
        let sim = Sim::new(binds, base, per_token, 1_000_000);
        let m = model(131_072, Some(per_token as u64));
        let t = drive::<MemoryFit>(&sim, &m);
        assert_eq!(t.run.best, Some(131_072), "{binds:?}: {:?}", t.run);
        assert!(t.run.proposals.len() <= 3, "{binds:?}: {:?}", t.run);
        assert_eq!(t.breaches, 0);
    }
}

#[test]
fn an_unstable_screen_near_a_stable_one_is_measured_again() {
    // The repeat itself: proposing the context again, once.
    let m = model(131_072, Some(131_072));
    let sim = Sim::new(Binds::Gpu, 5.0 * GIB, 131_072.0, 60_000);
    let mut search = MemoryFit::new("{}", &sim.hardware(), &m, &Default::default()).unwrap();
    let first = search.propose().unwrap();
    search.observe(&sim.trial(first));
    let second = search.propose().unwrap();
    let mut unstable = sim.trial(second);
    unstable.verdict = Verdict::Unstable;
    search.observe(&unstable);
    assert_eq!(search.propose(), Some(second), "measured once more");
    search.observe(&unstable);
    assert!(
        search.propose().is_some_and(|next| next < second),
        "then a wall"
    );
    assert_eq!(search.best(), Some(first));

    // One screen in ten that fits comes back unstable: the repeats keep the search on
    // the memory limit (binary-search measures such a screen again too).
    let (mut fit_answers, mut bin_answers) = (Vec::new(), Vec::new());
    for seed in 1..=20 {
        let sim = Sim::new(Binds::Gpu, 5.0 * GIB, 131_072.0, 60_000).seeded(seed, 0.0, 0.0, 0.1);
        let fit = drive::<MemoryFit>(&sim, &m);
        let bin = drive::<BinarySearch>(&sim.clone().seeded(seed, 0.0, 0.0, 0.1), &m);
        let best = fit.run.best.expect("stable");
        assert!(best <= 59_904, "seed {seed}: {:?}", fit.run);
        assert!(fit.run.proposals.len() <= 12, "seed {seed}: {:?}", fit.run);
        fit_answers.push(best);
        bin_answers.push(bin.run.best.unwrap_or(0));
    }
    let at_limit = |answers: &[u32]| answers.iter().filter(|b| **b == 59_904).count();
    assert!(at_limit(&fit_answers) >= 15, "{fit_answers:?}");
    assert!(at_limit(&bin_answers) >= 15, "{bin_answers:?}");
}

#[test]
fn flat_or_falling_memory_falls_back_to_growth() {
    // Memory that does not grow with the context (preallocated elsewhere), and memory
    // that falls: once two readings show it, the search doubles, until a timeout wall.
    for per_token in [0.0, -2000.0] {
        let mut sim = Sim::new(Binds::Gpu, 10.0 * GIB, per_token, 0);
        sim.limit = 20.0 * GIB;
        sim.wall = Some((50_000, Failure::Timeout));
        let m = model(131_072, Some(131_072));
        let t = drive::<MemoryFit>(&sim, &m);
        let p = &t.run.proposals;
        assert_eq!(p[2], 2 * p[1], "{:?}", t.run);
        assert_eq!(t.run.best, Some(49_920), "{:?}", t.run);
        assert!(t.proven);
        assert!(p.len() <= 11, "{:?}", t.run);
    }
}

#[test]
fn a_wall_that_is_not_memory_is_bisected_not_fitted() {
    // Memory would allow 100k, but fills above 24k time out (a slow CPU): the timeouts
    // are walls the fit does not explain, so the bracket is bisected.
    let mut sim = Sim::new(Binds::Gpu, 5.0 * GIB, 131_072.0, 100_000);
    sim.wall = Some((24_000, Failure::Timeout));
    let m = model(131_072, Some(131_072));
    let fit = drive::<MemoryFit>(&sim, &m);
    let bin = drive::<BinarySearch>(&sim, &m);
    assert_eq!(fit.run.best, Some(23_808), "{:?}", fit.run);
    assert!(fit.proven);
    assert_eq!(fit.breaches, 0);
    // Bisection all the way (binary-search stops after 7 bisections, a step short), from
    // a failure far above: two trials more than binary-search at most.
    assert!(
        fit.run.best >= bin.run.best,
        "{:?} vs {:?}",
        fit.run,
        bin.run
    );
    assert!(
        fit.run.proposals.len() <= bin.run.proposals.len() + 2,
        "{:?} vs {:?}",
        fit.run,
        bin.run
    );
}

#[test]
fn warm_start_on_a_noisy_machine() {
    for seed in 1..=10 {
        let (sim, mut model) = demo(seed, false);
        model.hint = Some(sim.true_limit(&model.bounds));
        let t = drive::<MemoryFit>(&sim, &model);
        assert!(t.proven, "seed {seed}: {:?}", t.run);
        assert!(t.run.proposals.len() <= 4, "seed {seed}: {:?}", t.run);
        assert!(t.breaches <= 1, "seed {seed}: {:?}", t.run);
    }
}

#[test]
fn a_failed_verification_counts_as_a_failure_and_the_search_goes_on() {
    let sim = Sim::new(Binds::Gpu, 5.0 * GIB, 131_072.0, 100_000);
    let m = model(131_072, Some(131_072));
    let mut search = MemoryFit::new("{}", &sim.hardware(), &m, &Default::default()).unwrap();
    let mut stable = Vec::new();
    while let Some(ctx) = search.propose() {
        let o = sim.trial(ctx);
        if o.is_stable() {
            stable.push(ctx);
        }
        search.observe(&o);
    }
    stable.sort_unstable();
    assert_eq!(search.best(), Some(99_840));
    // The host verifies 99840 and it does not hold (say, throughput too noisy): the
    // stable screen below is the best again, and the search goes on between them.
    let verify = |ctx, verdict| TrialOutcome {
        verdict,
        samples: 5,
        stage: Stage::Verify,
        ..sim.trial(ctx)
    };
    search.observe(&verify(99_840, Verdict::Unstable));
    let below = stable[stable.len() - 2];
    assert_eq!(search.best(), Some(below));
    let next = search.propose().expect("the search goes on");
    assert!(next > below && next < 99_840, "{next}");
    search.observe(&sim.trial(next));
    while let Some(ctx) = search.propose() {
        search.observe(&sim.trial(ctx));
    }
    assert_eq!(search.best(), Some(99_584));
    // A verification that holds changes nothing.
    search.observe(&verify(99_584, Verdict::Stable));
    assert_eq!(search.best(), Some(99_584));
    assert_eq!(search.propose(), None);
}

#[test]
fn without_any_memory_reading_it_grows_then_bisects() {
    // An OpenAI-compatible server: no peaks at all, timeouts above 40k.
    let m = model(131_072, None);
    let run = testing::run_context::<MemoryFit>("{}", &HardwareFacts::default(), &m, |ctx| {
        let config = testing::context_config(ctx);
        if ctx <= 40_000 {
            testing::stable(config)
        } else {
            testing::failed(config, Failure::Timeout)
        }
    })
    .expect("run");
    assert_eq!(run.best, Some(39_936), "{:?}", run.proposals);
    assert!(run.proposals.len() <= 12, "{:?}", run.proposals);
}

#[test]
fn propose_twice_repeats_the_pending_value() {
    let m = testing::model(131_072);
    let mut search = MemoryFit::new("{}", &Default::default(), &m, &Default::default()).unwrap();
    assert_eq!(search.propose(), Some(2048));
    assert_eq!(search.propose(), Some(2048));
}

#[test]
fn wrong_settings_are_errors() {
    let m = testing::model(131_072);
    let hw = HardwareFacts::default();
    for (settings, expected) in [
        (r#"{"margin": "small"}"#, "invalid type"),
        (r#"{"margin": 0.9}"#, "margin must be between 0 and 0.5"),
        (r#"{"max_iterations": 0}"#, "at least 1"),
        (r#"{"growth_factor": 1.0}"#, "greater than 1"),
        (r#"{"prior_reach": 0}"#, "prior_reach must be above 0"),
    ] {
        let err = MemoryFit::new(settings, &hw, &m, &Default::default())
            .err()
            .unwrap_or_default();
        assert!(err.contains(expected), "{settings}: {err}");
    }
}

/// Gemma 3's layout: 3 full-attention layers and 15 sliding-window ones of 512 tokens,
/// 1 KiB a token per layer at f16.
fn gemma_like(trained: u32) -> ModelFacts {
    use ozone_sdk::{LayerGroup, LayerKind};
    let mut m = testing::model(trained);
    m.kv_bytes_per_token = Some(3 * 1024);
    m.layers = vec![
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
    m
}

#[test]
fn a_cache_that_stops_growing_sends_the_search_to_the_trained_context() {
    use ozone_sdk::{LayerGroup, LayerKind};
    // A recurrent model (Mamba-like): a fixed state, whatever the context. Memory cannot
    // bind, so after the first reading the trained context is screened at once.
    let mut flat = testing::model(131_072);
    flat.kv_bytes_per_token = Some(0);
    flat.layers = vec![LayerGroup {
        kind: LayerKind::Recurrent,
        count: 48,
        kv_bytes_per_token: 0,
        window: None,
        state_bytes: Some(1 << 20),
    }];
    let machine = MemoryMachine::with_context_limit(1_000_000);
    let run = testing::run_context::<MemoryFit>("{}", &machine.hardware(), &flat, |ctx| {
        machine.context_trial(ctx)
    })
    .expect("run");
    assert_eq!(run.proposals, vec![2048, 131_072], "{run:?}");
    assert_eq!(run.best, Some(131_072));

    // Gemma-like: the full-attention layers' 3 KiB a token is the prior's slope above the
    // windows, not the 18 KiB every layer costs below them.
    let gemma = gemma_like(32_768);
    let search =
        MemoryFit::new("{}", &machine.hardware(), &gemma, &Default::default()).expect("settings");
    let growth = |from: u32, to: u32| {
        gemma.kv_cache_bytes(to, 512).unwrap() - gemma.kv_cache_bytes(from, 512).unwrap()
    };
    assert_eq!(growth(4096, 8192), 3 * 1024 * 4096);
    assert!(search.best().is_none());
}

/// A CPU bound by time, not memory (no memory readings at all): the screens' fill times
/// aim the search below where a fill crosses the timeout margin, so it needs a handful
/// of screens where bisection needs twice as many (9 against 18), repeats no timeout the curve
/// predicted, and a verification refuted by its 3 % slowdown keeps the screens below
/// that the slowdown leaves within the limit.
#[test]
fn a_time_edge_is_aimed_at_from_the_fill_times() {
    let machine = testing::TimeMachine::default();
    let limits = ozone_sdk::ContextLimits::default();
    let model = testing::model(32_768);
    let mut search = MemoryFit::new("{}", &Default::default(), &model, &limits).unwrap();
    let (proposals, verified) = machine.search_and_verify(&mut search);
    let verify_edge = machine.verify_edge(&limits, 256);
    let published = *verified.last().unwrap();
    assert!(machine.verify(published).is_stable(), "{verified:?}");
    assert!(
        published + 2 * 256 >= verify_edge,
        "{published} vs {verify_edge}: {proposals:?}"
    );
    assert!(verified.len() <= 2, "{verified:?} after {proposals:?}");
    // binary-search needs 18 screens on this machine (its own test).
    assert!(
        proposals.len() <= 9,
        "{} screens: {proposals:?}",
        proposals.len()
    );
}

/// On a busy machine a fill well below the time edge timed out once (a neighbour took
/// the cores): the screens' curve says it should have taken far less, so it is measured
/// again, and the answer is the quiet machine's.
#[test]
fn a_timeout_the_fill_times_did_not_predict_is_measured_again() {
    let machine = testing::TimeMachine::default();
    let limits = ozone_sdk::ContextLimits::default();
    let model = testing::model(32_768);
    let run = |transient: bool| {
        let mut search = MemoryFit::new("{}", &Default::default(), &model, &limits).unwrap();
        let mut seen = std::collections::HashSet::new();
        let mut proposals = Vec::new();
        while let Some(ctx) = search.propose() {
            proposals.push(ctx);
            let first_time = seen.insert(ctx);
            let outcome = if transient && first_time && proposals.len() == 2 {
                let mut o =
                    testing::failed(testing::context_config(ctx), ozone_sdk::Failure::Timeout);
                o.stage = ozone_sdk::Stage::Screen;
                o
            } else {
                machine.screen(ctx)
            };
            search.observe(&outcome);
        }
        (search.best(), proposals)
    };
    let (quiet, _) = run(false);
    let (busy, proposals) = run(true);
    assert_eq!(busy, quiet, "{proposals:?}");
    assert_eq!(proposals[1], proposals[2], "measured again: {proposals:?}");
}
