//! The trial runner: one configuration against a real server while the sampler watches
//! the hardware, then the statistics and the verdict. A [`Stage::Screen`] sends one
//! request that fills the context (does it load, fit, at what peak); a
//! [`Stage::Verify`] sends `min_samples_per_config` of them. Either stops as soon as its
//! verdict is settled, and says why in `stopped_early`.
//!
//! A server failure is never an `Err`: it is a `Failed` verdict with its
//! [`FailureKind`]. A guard breach cancels the in-flight requests at once; a cancelled
//! token (Ctrl-C) kills the server and returns a record failed with "interrupted".
//! Opening the server is the backend's ([`ServerOpener`]); the samples are
//! `sampling.rs`'s, a concurrency level's closed loop `closed_loop.rs`'s (always a
//! verification: its streams × `requests_per_stream` requests, whatever the stage).

use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::closed_loop::closed_loop;
use super::sampling::{sample, Sampled};
use super::summary::{concurrency_figures, summarize, LoopShape};
use super::verdict::{judge, Kind};
use super::{OnSample, TrialSettings};
use crate::backend::{interrupted, BackendSpec, OpenOptions, OpenServer, ServerOpener};
use crate::guard::{guarded, Guarded, Sampler, SamplerOptions};
use crate::record::{
    Breach, FailureKind, MemoryBreakdown, Phase, SampleRecord, SampleSeries, Stage, TrialConfig,
    TrialFailure, TrialRecord, Verdict,
};

/// A finished trial: the record for the JSONL log and the hardware series.
#[derive(Debug, Clone)]
pub struct TrialRun {
    pub record: TrialRecord,
    pub series: SampleSeries,
    /// The server never came up (see [`OpenFailure::never_started`]) for a reason that
    /// is not memory — no breach, no out-of-memory in its log: no other configuration
    /// would fare better.
    pub server_cannot_start: bool,
}

/// Runs trials against one backend.
#[derive(Debug)]
pub struct TrialRunner {
    opener: ServerOpener,
    settings: TrialSettings,
    sampler: SamplerOptions,
}

/// What a trial's execution produced, before statistics.
struct Execution {
    samples: Vec<SampleRecord>,
    /// Why each failed sample failed, in order (the record keeps only the message).
    sample_failures: Vec<TrialFailure>,
    failure: Option<TrialFailure>,
    stopped_early: Option<String>,
    granted_ctx: Option<u32>,
    log_tail: Vec<String>,
    /// The server never came up.
    never_started: bool,
    /// A concurrency level's closed loop: how its requests were sent.
    looped: Option<LoopShape>,
    /// llama.cpp's memory per device, printed by the server as it stopped.
    memory_breakdown: Option<MemoryBreakdown>,
    /// The GPU-memory budget crossed by the device buffers the server allocated at load.
    load_breach: Option<Breach>,
}

impl Execution {
    fn failed(failure: TrialFailure, log_tail: Vec<String>) -> Self {
        Self {
            samples: Vec::new(),
            sample_failures: Vec::new(),
            failure: Some(failure),
            stopped_early: None,
            granted_ctx: None,
            log_tail,
            never_started: false,
            looped: None,
            memory_breakdown: None,
            load_breach: None,
        }
    }
}

fn failure(kind: FailureKind, message: impl Into<String>) -> TrialFailure {
    TrialFailure {
        kind,
        message: message.into(),
        fault: None,
    }
}

impl TrialRunner {
    pub fn new(spec: BackendSpec, settings: TrialSettings, sampler: SamplerOptions) -> Self {
        Self {
            opener: ServerOpener::new(spec),
            settings,
            sampler,
        }
    }

    pub fn spec(&self) -> &BackendSpec {
        self.opener.spec()
    }

    pub fn settings(&self) -> &TrialSettings {
        &self.settings
    }

    /// Runs one trial of `stage`. Never fails: whatever went wrong is in the record.
    pub async fn run(
        &mut self,
        id: u32,
        phase: Phase,
        stage: Stage,
        config: &TrialConfig,
        cancel: &CancellationToken,
    ) -> TrialRun {
        self.run_reporting(id, phase, stage, config, cancel, &mut |_| {})
            .await
    }

    /// [`TrialRunner::run`], handing each sample to `on_sample` as soon as its request
    /// finished.
    pub async fn run_reporting(
        &mut self,
        id: u32,
        phase: Phase,
        stage: Stage,
        config: &TrialConfig,
        cancel: &CancellationToken,
        on_sample: OnSample<'_>,
    ) -> TrialRun {
        let started_at = chrono::Utc::now();
        let t0 = Instant::now();
        let (execution, series, breach) = match Sampler::start(self.sampler.clone()) {
            Ok(sampler) => {
                let mut breaches = sampler.breaches();
                let execution = self
                    .execute(
                        phase,
                        stage,
                        config,
                        (&sampler, &mut breaches),
                        cancel,
                        on_sample,
                    )
                    .await;
                let breach = breaches.borrow().clone().or(execution.load_breach.clone());
                let series = tokio::task::spawn_blocking(move || sampler.stop())
                    .await
                    .unwrap_or_default();
                (execution, series, breach)
            }
            Err(e) => (
                Execution::failed(
                    failure(
                        FailureKind::ServerError,
                        format!("the hardware sampler cannot start: {e}"),
                    ),
                    Vec::new(),
                ),
                SampleSeries::default(),
                None,
            ),
        };

        let summary = summarize(&execution.samples);
        // An interruption explains everything after it; a breach explains the failures
        // it caused (the guard may have killed the server).
        let trial_failure = match (&execution.failure, &breach) {
            (Some(_), _) if cancel.is_cancelled() => Some(interrupted()),
            (_, Some(b)) => Some(failure(
                FailureKind::ThresholdBreach(b.metric),
                b.to_string(),
            )),
            (Some(f), None) => Some(f.clone()),
            (None, None) if summary.success_rate == 0.0 => Some(
                execution
                    .sample_failures
                    .first()
                    .cloned()
                    .unwrap_or_else(|| failure(FailureKind::BadOutput, "no sample ran")),
            ),
            (None, None) => None,
        };
        let server_cannot_start = execution.never_started
            && trial_failure
                .as_ref()
                .is_some_and(|f| matches!(f.kind, FailureKind::ServerError | FailureKind::Timeout));
        let reason = judge(
            Kind::of(phase, stage),
            &execution.samples,
            trial_failure.as_ref(),
            &self.settings,
        );
        let verdict = reason.verdict();
        let keep_log = verdict != Verdict::Stable || execution.samples.iter().any(|s| !s.ok);
        // Every concurrency level has figures, if only its shape (a server that never
        // came up measured nothing).
        let concurrency = (phase == Phase::Concurrency).then(|| {
            let shape = execution.looped.unwrap_or(LoopShape {
                streams: config.concurrency.max(1),
                requests_per_stream: self.settings.requests_per_stream,
                warmup_per_stream: 0,
                window_ms: None,
            });
            concurrency_figures(&execution.samples, shape)
        });
        let mut record = TrialRecord {
            id,
            phase,
            stage,
            config: config.clone(),
            started_at,
            duration_ms: t0.elapsed().as_millis() as u64,
            granted_ctx: execution.granted_ctx,
            samples: execution.samples,
            ttft_ms: summary.ttft_ms,
            prefill_tps: summary.prefill_tps,
            decode_tps: summary.decode_tps,
            success_rate: summary.success_rate,
            cv: summary.cv,
            peaks: series.peaks.clone(),
            breach,
            failure: trial_failure,
            verdict,
            reason: Some(reason),
            stopped_early: execution.stopped_early,
            server_log_tail: if keep_log {
                execution.log_tail
            } else {
                Vec::new()
            },
            concurrency,
            memory_breakdown: None,
        };
        // Beside the live readings; where none read the server's GPU memory, the
        // breakdown's device figure stands for it.
        record.attach_memory_breakdown(execution.memory_breakdown);
        // Stopped at load for its device buffers (a killed server prints no breakdown):
        // llama.cpp's account at load is the figure.
        if let (Some(b), None) = (&record.breach, record.peaks.server_gpu_mem_bytes) {
            if b.metric == crate::record::Metric::GpuMemoryBudget {
                record.peaks.server_gpu_mem_bytes = Some(b.value as u64);
            }
        }
        TrialRun {
            record,
            series,
            server_cannot_start,
        }
    }

    async fn execute(
        &mut self,
        phase: Phase,
        stage: Stage,
        config: &TrialConfig,
        (sampler, breaches): (&Sampler, &mut watch::Receiver<Option<Breach>>),
        cancel: &CancellationToken,
        on_sample: OnSample<'_>,
    ) -> Execution {
        let options = OpenOptions {
            health_timeout: Duration::from_secs_f64(self.settings.health_timeout_s.max(1.0)),
            fill_ratio: self.settings.fill_ratio,
            n_predict: self.settings.n_predict,
            warmup: self.settings.warmup,
            request_timeout: self.settings.timeouts.for_config(config.ctx, config.batch),
            gpu_budget_bytes: self
                .sampler
                .thresholds
                .as_ref()
                .and_then(|t| t.gpu_memory_budget_mb)
                .map(|mb| mb.saturating_mul(1024 * 1024)),
        };
        let watch = |pid: u32| sampler.watch_pid(Some(pid));
        let opened = self
            .opener
            .open(config, &options, &watch, breaches, cancel)
            .await;
        let mut server = match opened {
            Ok(server) => server,
            Err(f) => {
                return Execution {
                    granted_ctx: f.granted_ctx,
                    never_started: f.never_started,
                    load_breach: f.load_breach.map(|b| *b),
                    ..Execution::failed(f.failure, f.log_tail)
                }
            }
        };

        if phase == Phase::Concurrency && config.concurrency > 1 {
            let pause = Duration::from_secs_f64(self.settings.stabilization_delay_s.max(0.0));
            match guarded(tokio::time::sleep(pause), breaches, cancel).await {
                Guarded::Done(()) => {}
                Guarded::Breach => return close(server, Sampled::stopped(None)).await,
                Guarded::Interrupted => {
                    return close(server, Sampled::stopped(Some(interrupted()))).await
                }
            }
        }

        if phase == Phase::Concurrency {
            let looped = closed_loop(
                &mut server,
                config,
                &self.settings,
                breaches,
                cancel,
                on_sample,
            )
            .await;
            let shape = LoopShape {
                streams: config.concurrency.max(1),
                requests_per_stream: self.settings.requests_per_stream.max(1),
                warmup_per_stream: looped.warmup_per_stream,
                window_ms: looped.window_ms,
            };
            return Execution {
                looped: Some(shape),
                ..close(server, looped.sampled).await
            };
        }
        let sampled = sample(
            &mut server,
            config,
            &self.settings,
            stage,
            breaches,
            cancel,
            on_sample,
        )
        .await;
        close(server, sampled).await
    }
}

async fn close(mut server: OpenServer, sampled: Sampled) -> Execution {
    let log_tail = server.log_tail();
    server.close(sampled.kill).await;
    Execution {
        memory_breakdown: server.memory_breakdown(),
        samples: sampled.samples,
        sample_failures: sampled.sample_failures,
        failure: sampled.trial_failure,
        stopped_early: sampled.stopped_early,
        granted_ctx: server.granted_ctx(),
        log_tail,
        never_started: false,
        looped: None,
        load_breach: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The orchestration may run a trial on any runtime thread: the future is `Send`.
    #[test]
    fn trial_future_is_send() {
        fn assert_send<T: Send>(_: &T) {}
        let mut runner = TrialRunner::new(
            BackendSpec::OpenAi {
                base_url: "http://127.0.0.1:9".into(),
                model: "m".into(),
                api_key: None,
            },
            TrialSettings::default(),
            SamplerOptions::default(),
        );
        let config = TrialConfig {
            ctx: 2048,
            batch: 512,
            ubatch: 512,
            concurrency: 1,
            variant: Default::default(),
        };
        let cancel = CancellationToken::new();
        let run = runner.run(1, Phase::Context, Stage::Screen, &config, &cancel);
        assert_send(&run);
    }
}
