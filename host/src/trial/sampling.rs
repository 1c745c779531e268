//! The measured samples of a context or batch trial: waves of `concurrency` simultaneous
//! requests (one, in every trial the driver runs outside the concurrency phase), each
//! output checked against what was asked (whole prompt processed, every token
//! generated), timeouts counted, a server that died mid-trial noticed. Concurrency
//! levels are a closed loop instead (`closed_loop.rs`), with the same checks.

use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::TrialSettings;
use crate::backend::{interrupted, timeout_failure, Generation, GenerationRequest, OpenServer};
use crate::guard::{guarded, Guarded};
use crate::record::{Breach, FailureKind, SampleRecord, TrialConfig, TrialFailure};

/// A prompt processed below this share of what was sent was truncated.
const TRUNCATION_TOLERANCE: f64 = 0.9;

/// What the sampling phase produced.
#[derive(Default)]
pub(super) struct Sampled {
    pub samples: Vec<SampleRecord>,
    pub sample_failures: Vec<TrialFailure>,
    pub trial_failure: Option<TrialFailure>,
    /// Kill the server rather than stop it gently (breach, Ctrl-C).
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
}

/// The measured samples, `concurrency` at a time.
pub(super) async fn sample(
    server: &mut OpenServer,
    config: &TrialConfig,
    settings: &TrialSettings,
    breaches: &mut watch::Receiver<Option<Breach>>,
    cancel: &CancellationToken,
) -> Sampled {
    let concurrency = config.concurrency.max(1);
    let waves = settings.samples.max(1).div_ceil(concurrency);
    let timeout = settings.timeouts.for_config(config.ctx, config.batch);
    let n_predict = settings.n_predict;
    let exact_counts = server.exact_counts();
    let mut out = Sampled::default();
    let mut timeouts = 0u32;

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
        let results = match guarded(collect(&mut streams), breaches, cancel).await {
            Guarded::Done(results) => results,
            // Dropping the set aborts the in-flight requests.
            Guarded::Breach => return out.stop(None),
            Guarded::Interrupted => return out.stop(Some(interrupted())),
        };

        let mut wave_failed = false;
        for (index, outcome) in results {
            let timed_out = outcome.is_err();
            let checked = outcome
                .map_err(|_| timeout_failure(timeout, "the request"))
                .and_then(|generated| {
                    checked(generated, exact_counts, server.target_tokens(), n_predict)
                });
            timeouts += u32::from(timed_out);
            match checked {
                Ok(generation) => out.samples.push(sample_record(index, None, &generation)),
                Err(f) => {
                    wave_failed = true;
                    out.samples
                        .push(failed_sample(index, None, f.message.clone()));
                    out.sample_failures.push(f);
                }
            }
        }
        if wave_failed {
            if let Some(exit) = server.server_exit().await {
                out.trial_failure = Some(died_mid_trial(exit));
                return out;
            }
        }
        if timeouts > settings.max_concurrent_timeouts {
            let f = TrialFailure {
                kind: FailureKind::Timeout,
                message: format!(
                    "{timeouts} requests ran past the {:.0} s timeout (at most {} allowed)",
                    timeout.as_secs_f64(),
                    settings.max_concurrent_timeouts
                ),
            };
            out.trial_failure = Some(f);
            return out;
        }
    }
    out
}

/// What one stream of a wave returns: its sample index and the request's outcome.
type StreamOutcome = (
    u32,
    Result<Result<Generation, TrialFailure>, tokio::time::error::Elapsed>,
);

/// Waits for every stream of a wave; results in sample order.
async fn collect(streams: &mut JoinSet<StreamOutcome>) -> Vec<StreamOutcome> {
    let mut results = Vec::new();
    while let Some(joined) = streams.join_next().await {
        match joined {
            Ok(result) => results.push(result),
            Err(e) => tracing::error!("a sample task failed: {e}"),
        }
    }
    results.sort_by_key(|(index, _)| *index);
    results
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
    }
}

pub(super) fn failed_sample(index: u32, stream: Option<u32>, error: String) -> SampleRecord {
    SampleRecord {
        index,
        stream,
        ok: false,
        error: Some(error),
        ..SampleRecord::default()
    }
}

pub(super) fn died_mid_trial(f: TrialFailure) -> TrialFailure {
    TrialFailure {
        message: format!("mid-trial: {}", f.message),
        ..f
    }
}
