//! A concurrency level measured the way servers are loaded: `N` streams in a closed
//! loop, each sending its next request as soon as its previous one finished, for a
//! fixed number of requests per stream. With `warmup` on, each stream's first request
//! is not measured (the streams start together; by their second request they have
//! spread out as real users would), though a failed one still counts as a failure.
//!
//! Every request is checked as a sample is (`sampling.rs`): whole prompt, every token.
//! A server that dies stops the loop; so do more timeouts than allowed, a breach,
//! Ctrl-C, and (as for any trial) failures enough that the level can no longer be
//! stable — its objective cannot pass then either (the in-flight requests are dropped
//! with their tasks, the reason is the record's `stopped_early`).

use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::sampling::{checked, died_mid_trial, failed_sample, sample_record, Sampled, Tally};
use super::{OnSample, TrialSettings};
use crate::backend::{interrupted, timeout_failure, Generation, GenerationRequest, OpenServer};
use crate::guard::{guarded, Guarded};
use crate::record::{Breach, TrialConfig, TrialFailure};

/// What the loop produced.
pub(super) struct Looped {
    pub sampled: Sampled,
    /// From the first measured request sent to the last measured one finished, ms;
    /// `None` when no measured request finished.
    pub window_ms: Option<f64>,
    /// Unmeasured requests each stream sent first.
    pub warmup_per_stream: u32,
}

/// One finished request, as a stream reports it.
struct Finished {
    stream: u32,
    measured: bool,
    sent: Instant,
    done: Instant,
    timed_out: bool,
    outcome: Result<Generation, TrialFailure>,
}

/// Runs `config.concurrency` streams of `settings.requests_per_stream` measured requests;
/// `on_sample` hears each request's sample as soon as it finished.
pub(super) async fn closed_loop(
    server: &mut OpenServer,
    config: &TrialConfig,
    settings: &TrialSettings,
    breaches: &mut watch::Receiver<Option<Breach>>,
    cancel: &CancellationToken,
    on_sample: OnSample<'_>,
) -> Looped {
    let streams = config.concurrency.max(1);
    let warmup = u32::from(settings.warmup);
    let rounds = warmup + settings.requests_per_stream.max(1);
    let timeout = settings.timeouts.for_config(config.ctx, config.batch);
    let n_predict = settings.n_predict;

    let (tx, mut finished) = mpsc::unbounded_channel();
    let mut tasks = JoinSet::new();
    for stream in 0..streams {
        let (requester, prompts, tx) = (server.requester(), server.prompts(), tx.clone());
        tasks.spawn(async move {
            for round in 0..rounds {
                let request = GenerationRequest {
                    // A prompt of its own per request: no cache serves another's prefill.
                    prompt: prompts.prompt(stream * rounds + round),
                    n_predict,
                    timeout,
                };
                let sent = Instant::now();
                let outcome = tokio::time::timeout(timeout, requester.generate(&request)).await;
                let report = Finished {
                    stream,
                    measured: round >= warmup,
                    sent,
                    done: Instant::now(),
                    timed_out: outcome.is_err(),
                    outcome: outcome
                        .unwrap_or_else(|_| Err(timeout_failure(timeout, "the request"))),
                };
                if tx.send(report).is_err() {
                    return; // The loop stopped listening: the trial is over.
                }
            }
        });
    }
    drop(tx);

    let mut progress = Progress {
        out: Sampled::default(),
        window: None,
        tally: Tally::new(streams * settings.requests_per_stream.max(1), settings),
        timeout,
        exact_counts: server.exact_counts(),
        target_tokens: server.target_tokens(),
        n_predict,
    };
    let ended = guarded(
        progress.follow(&mut finished, server, on_sample),
        breaches,
        cancel,
    )
    .await;
    // Dropping the set aborts the requests still in flight.
    drop(tasks);
    let Progress {
        mut out, window, ..
    } = progress;
    // Stopped early, requests were left: the server is killed with them in flight.
    out.kill |= out.stopped_early.is_some();
    let sampled = match ended {
        Guarded::Done(()) => out.finish(),
        Guarded::Breach => out.stop(None).finish(),
        Guarded::Interrupted => out.stop(Some(interrupted())).finish(),
    };
    Looped {
        sampled,
        window_ms: window.map(|(first, last)| (last - first).as_secs_f64() * 1000.0),
        warmup_per_stream: warmup,
    }
}

/// What the loop has seen so far (kept when a breach or Ctrl-C cuts it short).
struct Progress {
    out: Sampled,
    /// First measured request sent, last measured request finished.
    window: Option<(Instant, Instant)>,
    /// Whether the level's verdict is settled (counted over the samples: the measured
    /// requests, and a warm-up request that failed).
    tally: Tally,
    /// Each request's timeout.
    timeout: Duration,
    exact_counts: bool,
    target_tokens: u32,
    n_predict: u32,
}

impl Progress {
    /// Records each request as it finishes, until every stream is done or the trial
    /// must stop (the server died, too many timeouts, the verdict settled).
    async fn follow(
        &mut self,
        finished: &mut mpsc::UnboundedReceiver<Finished>,
        server: &mut OpenServer,
        on_sample: OnSample<'_>,
    ) {
        let mut exit_checked = false;
        while let Some(f) = finished.recv().await {
            let index = self.out.samples.len() as u32;
            self.tally.timeouts += u32::from(f.timed_out);
            if f.measured {
                let (first, last) = self.window.get_or_insert((f.sent, f.done));
                *first = (*first).min(f.sent);
                *last = (*last).max(f.done);
            }
            let outcome = checked(
                f.outcome,
                self.exact_counts,
                self.target_tokens,
                self.n_predict,
            );
            let sample = match outcome {
                Ok(generation) if f.measured => {
                    self.tally.ok += 1;
                    sample_record(index, Some(f.stream), &generation)
                }
                Ok(_) => continue,
                Err(failure) => {
                    let failure = if f.measured {
                        failure
                    } else {
                        // A failed warm-up is a sample of its own: one more planned.
                        self.tally.planned += 1;
                        TrialFailure {
                            message: format!("warm-up request: {}", failure.message),
                            ..failure
                        }
                    };
                    self.tally.failed += 1;
                    let sample = failed_sample(index, Some(f.stream), &failure);
                    self.out.sample_failures.push(failure);
                    sample
                }
            };
            on_sample(&sample);
            let failed = !sample.ok;
            self.out.samples.push(sample);
            if failed && !exit_checked {
                exit_checked = true;
                if let Some(exit) = server.server_exit().await {
                    self.out.trial_failure = Some(died_mid_trial(exit));
                    return;
                }
            }
            if let Some(reason) = self.tally.settled(self.timeout) {
                self.out.trial_failure = self.tally.too_many_timeouts(self.timeout);
                self.out.stopped_early = Some(reason);
                return;
            }
        }
        // Every request came back: too many timeouts still fail the level.
        self.out.trial_failure = self.tally.too_many_timeouts(self.timeout);
    }
}
