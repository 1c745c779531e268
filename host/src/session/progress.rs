//! Progress on stderr: one bar per phase, "trial k of at most N", the configuration
//! being measured, elapsed time and an ETA from the trials measured so far. Without a
//! terminal (CI, a pipe) there are no bars: each finished trial is one log line.

use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::record::{Phase, Reason, Stage, Stats, TrialConfig, TrialRecord, Verdict};

pub struct PhaseProgress {
    enabled: bool,
    bar: Option<ProgressBar>,
    phase: Option<Phase>,
    done_in_phase: u64,
    trial_started: Option<Instant>,
    measured: u32,
    measured_time: Duration,
}

impl PhaseProgress {
    /// `enabled: false` (no terminal, or `--json`) draws no bars; finished trials are
    /// then logged at info level (`-q` silences them).
    pub fn new(enabled: bool) -> Self {
        Self {
            enabled,
            bar: None,
            phase: None,
            done_in_phase: 0,
            trial_started: None,
            measured: 0,
            measured_time: Duration::ZERO,
        }
    }

    pub fn phase_started(&mut self, phase: Phase, estimated_trials: usize) {
        self.finish_phase();
        self.phase = Some(phase);
        self.done_in_phase = 0;
        if !self.enabled {
            return;
        }
        let bar = ProgressBar::with_draw_target(
            Some(estimated_trials.max(1) as u64),
            ProgressDrawTarget::stderr(),
        );
        let style = ProgressStyle::with_template(
            "{prefix:>12.bold} [{bar:20}] trial {pos} of at most {len}  {msg}  {elapsed}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        bar.set_prefix(phase_name(phase));
        bar.enable_steady_tick(Duration::from_millis(250));
        self.bar = Some(bar);
    }

    pub fn trial_started(&mut self, stage: Stage, config: &TrialConfig) {
        self.trial_started = Some(Instant::now());
        if let Some(bar) = &self.bar {
            let eta = self.eta();
            bar.set_position(self.done_in_phase + 1);
            if bar.position() > bar.length().unwrap_or(0) {
                bar.set_length(bar.position());
            }
            bar.set_message(format!("{stage} {config}{eta}"));
        }
    }

    pub fn trial_finished(&mut self, record: &TrialRecord) {
        if let Some(started) = self.trial_started.take() {
            self.measured += 1;
            self.measured_time += started.elapsed();
        }
        self.done_in_phase += 1;
        self.println(format!(
            "{:>12} {} {}  {}",
            phase_name(record.phase),
            record.stage,
            record.config,
            outcome_line(record)
        ));
    }

    pub fn trial_reused(&mut self, record: &TrialRecord) {
        self.done_in_phase += 1;
        self.println(format!(
            "{:>12} {} {}  {} (measured earlier, trial {})",
            phase_name(record.phase),
            record.stage,
            record.config,
            outcome_line(record),
            record.id
        ));
    }

    /// A line about the phase (how its trials are run).
    pub fn note(&self, message: &str) {
        self.println(format!("{:>12} {message}", "note"));
    }

    pub fn finish_phase(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }

    fn println(&self, line: String) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None => tracing::info!("{}", line.trim_start()),
        }
    }

    /// Mean measured trial duration × trials left in the phase's estimate.
    fn eta(&self) -> String {
        let (Some(bar), true) = (&self.bar, self.measured > 0) else {
            return String::new();
        };
        let left = bar.length().unwrap_or(0).saturating_sub(self.done_in_phase);
        let eta = self.measured_time / self.measured * left as u32;
        format!("  eta ≤{}", humanize(eta))
    }
}

fn phase_name(phase: Phase) -> &'static str {
    match phase {
        Phase::Context => "context",
        Phase::Offload => "offload",
        Phase::Batch => "batch",
        Phase::Concurrency => "concurrency",
    }
}

/// One line about a finished trial: its verdict and the figures that decided it (for a
/// concurrency level, its percentiles, throughput and objective), and why it stopped
/// early.
pub fn outcome_line(r: &TrialRecord) -> String {
    let mut line = verdict_line(r);
    if let (Some(f), Verdict::Stable | Verdict::Unstable) = (&r.concurrency, r.verdict) {
        let ms = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{v:.0}"));
        line += &format!(
            "; ttft p95 {} ms, tpot p95 {} ms, {} tok/s in all",
            ms(f.latency.ttft_p95_ms),
            f.latency
                .tpot_p95_ms
                .map_or("–".to_string(), |v| format!("{v:.1}")),
            ms(f.aggregate_decode_tps)
        );
        match &f.slo {
            Some(v) if v.met => line += ", SLO met",
            Some(v) => {
                let missed: Vec<String> = v
                    .missed
                    .iter()
                    .map(|m| {
                        let measured = m
                            .measured
                            .map_or("not measured".to_string(), |x| format!("{x:.1}"));
                        format!("{} {measured} (bound {})", m.metric, m.bound)
                    })
                    .collect();
                line += &format!(", SLO missed: {}", missed.join(", "));
            }
            None => {}
        }
    }
    match &r.stopped_early {
        Some(why) => format!("{line} ({why})"),
        None => line,
    }
}

fn verdict_line(r: &TrialRecord) -> String {
    if r.verdict == Verdict::Failed {
        return match &r.failure {
            Some(f) => format!("failed: {}", f.message),
            None => "failed".into(),
        };
    }
    // Mean ± standard deviation; one sample has no spread to show.
    let figure = |s: &Stats, digits: usize, unit: &str| format!("{} {unit}", s.mean_pm(digits));
    let tps = r
        .decode_tps
        .as_ref()
        .map_or("no throughput".into(), |s| figure(s, 1, "tok/s"));
    let ttft = r
        .ttft_ms
        .as_ref()
        .map_or(String::new(), |s| format!("ttft {}", figure(s, 0, "ms")));
    let verdict = if r.verdict == Verdict::Stable {
        "stable"
    } else {
        "unstable"
    };
    let why = match (&r.reason, r.reason.as_ref().and_then(Reason::spread)) {
        (Some(Reason::Served { of: 1 }), _) => "1 sample".to_string(),
        (Some(reason), Some(c)) => {
            let outliers = match c.outliers {
                0 => String::new(),
                n => format!(", {n} outlier{}", if n == 1 { "" } else { "s" }),
            };
            let noisy = if matches!(reason, Reason::WithinNoise(_)) {
                ", within the machine's noise"
            } else {
                ""
            };
            format!(
                "{:.0}% ok, spread {:.0} %{outliers}{noisy}",
                r.success_rate * 100.0,
                c.spread * 100.0
            )
        }
        _ => format!("{:.0}% ok", r.success_rate * 100.0),
    };
    format!("{verdict}: {tps}, {ttft}, {why}")
}

fn humanize(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}
