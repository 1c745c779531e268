//! The measured samples of a context or batch trial: waves of `concurrency` simultaneous
//! requests (one, in every trial the driver runs outside the concurrency phase), each
//! output checked against what was asked (whole prompt processed, every token
//! generated), timeouts counted, a server that died mid-trial noticed, and sampling
//! stopped as soon as the verdict is settled. Concurrency levels are a closed loop
//! instead (`closed_loop.rs`), with the same checks and the same early stop.

use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::verdict::meets_confidence;
use super::{OnSample, TrialSettings};
use crate::backend::{interrupted, timeout_failure, Generation, GenerationRequest, OpenServer};
use crate::guard::{guarded, Guarded};
use crate::record::{Breach, FailureKind, SampleRecord, Stage, TrialConfig, TrialFailure};

/// A prompt processed below this share of what was sent was truncated.
const TRUNCATION_TOLERANCE: f64 = 0.9;

/// What the sampling phase produced.
#[derive(Default)]
pub(super) struct Sampled {
    /// In sample order.
    pub samples: Vec<SampleRecord>,
    pub sample_failures: Vec<TrialFailure>,
    pub trial_failure: Option<TrialFailure>,
    /// Why sampling ended before every planned request ran (the verdict was settled).
    pub stopped_early: Option<String>,
    /// Kill the server rather than stop it gently (breach, Ctrl-C, requests in flight).
    pub kill: bool,
}

impl Sampled {
    pub fn stopped(trial_failure: Option<TrialFailure>) -> Self {
        Self::default().stop(trial_failure)
    }

    pub fn stop(mut self, trial_failure: Option<TrialFailure>) -> Self {
        self.trial_failure = trial_failure;
        self.kill = true;
        self
    }

    pub fn finish(mut self) -> Self {
        self.samples.sort_by_key(|s| s.index);
        self
    }
}

/// Where the samples of a trial stand: whether its verdict is already settled.
pub(super) struct Tally {
    pub planned: u32,
    pub ok: u32,
    pub failed: u32,
    pub timeouts: u32,
    pub confidence_threshold: f64,
    pub max_timeouts: u32,
}

impl Tally {
    /// Nothing measured yet, `planned` samples to come.
    pub fn new(planned: u32, settings: &TrialSettings) -> Self {
        Self {
            planned,
            ok: 0,
            failed: 0,
            timeouts: 0,
            confidence_threshold: settings.confidence_threshold,
            max_timeouts: settings.max_concurrent_timeouts,
        }
    }

    fn done(&self) -> u32 {
        self.ok + self.failed
    }

    /// More timeouts than allowed: the trial fails, however many samples are left.
    pub fn too_many_timeouts(&self, timeout: Duration) -> Option<TrialFailure> {
        (self.timeouts > self.max_timeouts).then(|| TrialFailure {
            kind: FailureKind::Timeout,
            message: format!(
                "{} requests ran past the {:.0} s timeout (at most {} allowed)",
                self.timeouts,
                timeout.as_secs_f64(),
                self.max_timeouts
            ),
            fault: None,
        })
    }

    /// Why the remaining samples cannot change the verdict, while some remain: the
    /// success rate can no longer reach the confidence threshold, or too many requests
    /// timed out.
    pub fn settled(&self, timeout: Duration) -> Option<String> {
        let remaining = self.planned.saturating_sub(self.done());
        if remaining == 0 {
            return None;
        }
        let at = format!("stopped after sample {} of {}", self.done(), self.planned);
        if let Some(f) = self.too_many_timeouts(timeout) {
            return Some(format!("{at}: {}", f.message));
        }
        // The verdict's own rule, with every remaining sample a success.
        let reachable =
            meets_confidence(self.ok + remaining, self.planned, self.confidence_threshold);
        (!reachable).then(|| {
            let failures = match self.failed {
                1 => "1 failure makes".to_string(),
                n => format!("{n} failures make"),
            };
            let percent = (self.confidence_threshold * 1000.0).round() / 10.0;
            format!("{at}: {failures} {percent} % unreachable")
        })
    }
}

/// The measured samples, `concurrency` at a time: `settings.samples_for(stage)` of them,
/// fewer when the verdict is settled early (the trial then stops at once, in-flight
/// requests dropped). `on_sample` hears each sample as soon as its request finished.
pub(super) async fn sample(
    server: &mut OpenServer,
    config: &TrialConfig,
    settings: &TrialSettings,
    stage: Stage,
    breaches: &mut watch::Receiver<Option<Breach>>,
    cancel: &CancellationToken,
    on_sample: OnSample<'_>,
) -> Sampled {
    let concurrency = config.concurrency.max(1);
    let waves = settings.samples_for(stage).max(1).div_ceil(concurrency);
    let timeout = settings.timeouts.for_config(config.ctx, config.batch);
    let n_predict = settings.n_predict;
    let exact_counts = server.exact_counts();
    let mut out = Sampled::default();
    let mut tally = Tally::new(waves * concurrency, settings);

    for wave in 0..waves {
        let mut streams = JoinSet::new();
        for k in 0..concurrency {
            let index = wave * concurrency + k;
            let request = GenerationRequest {
                prompt: server.prompt(index),
                n_predict,
                timeout,
            };
            let requester = server.requester();
            streams.spawn(async move {
                let outcome = tokio::time::timeout(timeout, requester.generate(&request)).await;
                (index, outcome)
            });
        }
        let mut exit_checked = false;
        loop {
            // Dropping the set aborts the in-flight requests.
            let joined = match guarded(streams.join_next(), breaches, cancel).await {
                Guarded::Done(Some(joined)) => joined,
                Guarded::Done(None) => break,
                Guarded::Breach => return out.stop(None).finish(),
                Guarded::Interrupted => return out.stop(Some(interrupted())).finish(),
            };
            let (index, outcome) = match joined {
                Ok(result) => result,
                Err(e) => {
                    tracing::error!("a sample task failed: {e}");
                    continue;
                }
            };
            tally.timeouts += u32::from(outcome.is_err());
            let checked = outcome
                .map_err(|_| timeout_failure(timeout, "the request"))
                .and_then(|generated| {
                    checked(generated, exact_counts, server.target_tokens(), n_predict)
                });
            let record = match checked {
                Ok(generation) => {
                    tally.ok += 1;
                    sample_record(index, None, &generation)
                }
                Err(f) => {
                    tally.failed += 1;
                    let record = failed_sample(index, None, &f);
                    out.sample_failures.push(f);
                    record
                }
            };
            on_sample(&record);
            let failed = !record.ok;
            out.samples.push(record);
            if failed && !exit_checked {
                exit_checked = true;
                if let Some(exit) = server.server_exit().await {
                    out.trial_failure = Some(died_mid_trial(exit));
                    return out.finish();
                }
            }
            if let Some(reason) = tally.settled(timeout) {
                out.trial_failure = tally.too_many_timeouts(timeout);
                out.stopped_early = Some(reason);
                out.kill = !streams.is_empty();
                return out.finish();
            }
        }
        if let Some(f) = tally.too_many_timeouts(timeout) {
            out.trial_failure = Some(f);
            return out.finish();
        }
    }
    out.finish()
}

/// A request's outcome, its output checked against what was asked: with exact counts
/// (llama-server fed token ids) every prompt token and every generated token, else the
/// prompt's length.
pub(super) fn checked(
    generated: Result<Generation, TrialFailure>,
    exact_counts: bool,
    target_tokens: u32,
    n_predict: u32,
) -> Result<Generation, TrialFailure> {
    let generation = generated?;
    let check = if exact_counts {
        check_counts(&generation, target_tokens, n_predict)
    } else {
        check_truncation(&generation, target_tokens)
    };
    check.map(|()| generation).map_err(|e| TrialFailure {
        kind: FailureKind::BadOutput,
        message: e,
        fault: None,
    })
}

/// llama-server counts are exact: the prompt must be whole and every token generated.
fn check_counts(g: &Generation, target_tokens: u32, n_predict: u32) -> Result<(), String> {
    check_truncation(g, target_tokens)?;
    match g.completion_tokens {
        Some(n) if n == n_predict => Ok(()),
        Some(n) => Err(format!("generated {n} of the {n_predict} tokens asked")),
        None => Err("the server did not report how many tokens it generated".into()),
    }
}

fn check_truncation(g: &Generation, target_tokens: u32) -> Result<(), String> {
    match g.prompt_tokens {
        Some(n) if f64::from(n) >= f64::from(target_tokens) * TRUNCATION_TOLERANCE => Ok(()),
        Some(n) => Err(format!(
            "prompt truncated: about {target_tokens} tokens sent, the server processed {n}"
        )),
        None => Err("the server did not report how many prompt tokens it processed".into()),
    }
}

pub(super) fn sample_record(index: u32, stream: Option<u32>, g: &Generation) -> SampleRecord {
    SampleRecord {
        index,
        stream,
        ok: true,
        ttft_ms: Some(g.ttft.as_secs_f64() * 1000.0),
        prefill_tps: g.prefill_tps(),
        decode_tps: g.decode_tps(),
        prompt_tokens: g.prompt_tokens,
        completion_tokens: g.completion_tokens,
        total_ms: Some(g.total.as_secs_f64() * 1000.0),
        server_prompt_ms: g.server.prompt_ms,
        server_predicted_ms: g.server.predicted_ms,
        error: None,
        failure: None,
    }
}

pub(super) fn failed_sample(index: u32, stream: Option<u32>, f: &TrialFailure) -> SampleRecord {
    SampleRecord {
        index,
        stream,
        ok: false,
        error: Some(f.message.clone()),
        failure: Some(f.kind),
        ..SampleRecord::default()
    }
}

pub(super) fn died_mid_trial(f: TrialFailure) -> TrialFailure {
    if f.fault.is_some() {
        // Says what killed the server whenever it happened.
        return f;
    }
    TrialFailure {
        message: format!("mid-trial: {}", f.message),
        ..f
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally(planned: u32, ok: u32, failed: u32, timeouts: u32) -> Tally {
        Tally {
            planned,
            ok,
            failed,
            timeouts,
            confidence_threshold: 0.85,
            max_timeouts: 2,
        }
    }

    const TIMEOUT: Duration = Duration::from_secs(89);

    #[test]
    fn one_failure_of_five_settles_an_85_percent_verdict() {
        assert_eq!(tally(5, 1, 0, 0).settled(TIMEOUT), None);
        assert_eq!(
            tally(5, 1, 1, 0).settled(TIMEOUT).as_deref(),
            Some("stopped after sample 2 of 5: 1 failure makes 85 % unreachable")
        );
        // Once every sample ran there is nothing left to stop.
        assert_eq!(tally(5, 4, 1, 0).settled(TIMEOUT), None);
    }

    #[test]
    fn a_lenient_threshold_waits_for_enough_failures() {
        let mut t = tally(10, 3, 2, 0);
        t.confidence_threshold = 0.5;
        assert_eq!(t.settled(TIMEOUT), None, "7 of 10 still reachable");
        let t = Tally {
            failed: 6,
            ok: 0,
            ..t
        };
        assert_eq!(
            t.settled(TIMEOUT).as_deref(),
            Some("stopped after sample 6 of 10: 6 failures make 50 % unreachable")
        );
    }

    #[test]
    fn too_many_timeouts_end_the_trial_and_fail_it() {
        let mut t = tally(8, 3, 3, 3);
        t.confidence_threshold = 0.1;
        let why = t.settled(TIMEOUT).expect("settled");
        assert!(why.ends_with("3 requests ran past the 89 s timeout (at most 2 allowed)"));
        assert_eq!(
            t.too_many_timeouts(TIMEOUT).map(|f| f.kind),
            Some(FailureKind::Timeout)
        );
        // A screen (one request) is never stopped early: its one sample is the verdict.
        assert_eq!(tally(1, 0, 1, 1).settled(TIMEOUT), None);
    }
}
