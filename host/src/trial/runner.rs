//! The trial runner: one configuration, N samples against a real server while the
//! sampler watches the hardware.
//!
//! A server failure is never an `Err`: it is a `Failed` verdict with its
//! [`FailureKind`]. A guard breach cancels the in-flight requests at once; a cancelled
//! token (Ctrl-C) kills the server and returns a record failed with "interrupted".

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::prompt::{target_prompt_tokens, text_prompt, token_prompt, FILLER};
use super::requester::Requester;
use super::summary::{summarize, verdict};
use super::TrialSettings;
use crate::backend::llama_server::{LlamaServerSpec, ManagedServer};
use crate::backend::ollama::{OllamaClient, OllamaOptions};
use crate::backend::openai::OpenAiClient;
use crate::backend::{
    gguf, BackendError, BackendSpec, Generation, GenerationRequest, ModelFacts, Prompt,
};
use crate::guard::{Sampler, SamplerOptions};
use crate::record::{
    Breach, Failure, FailureKind, Phase, SampleRecord, SampleSeries, TrialConfig, TrialRecord,
    Verdict,
};

/// Tokens of the warm-up request.
const WARMUP_PROMPT_TOKENS: usize = 32;
const WARMUP_PREDICT: u32 = 4;
/// Characters of the calibration prompt (Ollama, OpenAI): short enough never to be
/// truncated, long enough for a steady characters-per-token ratio.
const CALIBRATION_CHARS: usize = 2000;
/// A prompt processed below this share of what was sent was truncated.
const TRUNCATION_TOLERANCE: f64 = 0.9;
/// How long a failed request waits for a crashing server to be seen as exited.
const EXIT_SETTLE: Duration = Duration::from_millis(500);

/// A finished trial: the record for the JSONL log and the hardware series.
#[derive(Debug, Clone)]
pub struct TrialRun {
    pub record: TrialRecord,
    pub series: SampleSeries,
}

/// Runs trials against one backend. Keeps what it learnt about the model's tokenizer
/// between trials.
#[derive(Debug)]
pub struct TrialRunner {
    spec: BackendSpec,
    settings: TrialSettings,
    sampler: SamplerOptions,
    /// llama-server: the filler in the model's own tokens.
    filler_tokens: Option<Arc<Vec<u32>>>,
    /// Ollama, OpenAI: characters per token, learnt from the server's counts.
    chars_per_token: Option<f64>,
}

/// What a trial's execution produced, before statistics.
struct Execution {
    samples: Vec<SampleRecord>,
    /// Why each failed sample failed, in order (the record keeps only the message).
    sample_failures: Vec<Failure>,
    failure: Option<Failure>,
    granted_ctx: Option<u32>,
    log_tail: Vec<String>,
}

impl Execution {
    fn failed(failure: Failure, log_tail: Vec<String>) -> Self {
        Self {
            samples: Vec::new(),
            sample_failures: Vec::new(),
            failure: Some(failure),
            granted_ctx: None,
            log_tail,
        }
    }
}

/// Outcome of waiting on something while the guard and Ctrl-C may interrupt it.
enum Guarded<T> {
    Done(T),
    Breach,
    Interrupted,
}

async fn guarded<T>(
    work: impl Future<Output = T>,
    breaches: &mut watch::Receiver<Option<Breach>>,
    cancel: &CancellationToken,
) -> Guarded<T> {
    let breach = async {
        if breaches.wait_for(Option::is_some).await.is_err() {
            // The sampler is gone: no more breaches can come.
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        biased;
        () = cancel.cancelled() => Guarded::Interrupted,
        () = breach => Guarded::Breach,
        out = work => Guarded::Done(out),
    }
}

fn failure(kind: FailureKind, message: impl Into<String>) -> Failure {
    Failure {
        kind,
        message: message.into(),
    }
}

fn interrupted() -> Failure {
    failure(FailureKind::ServerError, "interrupted")
}

/// A server ready for samples.
struct Session {
    server: Option<ManagedServer>,
    requester: Requester,
    granted_ctx: Option<u32>,
    /// Prompt tokens each sample should carry.
    target_tokens: u32,
    prompt: PromptSource,
}

enum PromptSource {
    Tokens(Arc<Vec<u32>>),
    Text { chars_per_token: f64 },
}

impl Session {
    /// The prompt of sample `index`: same length, different start (no cache hits).
    fn prompt(&self, index: u32) -> Prompt {
        let offset = index as usize * 97;
        match &self.prompt {
            // llama-server adds no BOS to a token-array prompt: the count is exact.
            PromptSource::Tokens(filler) => {
                token_prompt(filler, self.target_tokens as usize, offset)
            }
            PromptSource::Text { chars_per_token } => {
                let chars = (f64::from(self.target_tokens) * chars_per_token).round() as usize;
                Prompt::Text(text_prompt(chars.max(1), offset))
            }
        }
    }

    fn log_tail(&self) -> Vec<String> {
        self.server
            .as_ref()
            .map(ManagedServer::log_tail)
            .unwrap_or_default()
    }

    async fn close(&mut self, fast: bool) {
        if let Some(server) = &mut self.server {
            if fast {
                server.kill().await;
            } else {
                server.stop().await;
            }
        }
    }

    /// The server's own exit, when it died (waits briefly for a crash to be visible).
    async fn server_exit(&mut self, settle: Duration) -> Option<Failure> {
        let server = self.server.as_mut()?;
        let deadline = Instant::now() + settle;
        loop {
            if let Some(f) = server.exited().await {
                return Some(f);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl TrialRunner {
    pub fn new(spec: BackendSpec, settings: TrialSettings, sampler: SamplerOptions) -> Self {
        Self {
            spec,
            settings,
            sampler,
            filler_tokens: None,
            chars_per_token: None,
        }
    }

    pub fn spec(&self) -> &BackendSpec {
        &self.spec
    }

    pub fn settings(&self) -> &TrialSettings {
        &self.settings
    }

    /// The model's facts: from the GGUF file with its sha256 (llama-server),
    /// `/api/show` (Ollama), or `/v1/models` (OpenAI-compatible: little more than the
    /// context). An unreachable server or unreadable model is an error here.
    pub async fn model_facts(&self) -> Result<ModelFacts, BackendError> {
        match &self.spec {
            BackendSpec::LlamaServer(spec) => {
                let path = spec.model.clone();
                let read = move || -> Result<ModelFacts, gguf::GgufError> {
                    let mut facts = gguf::read_facts(&path)?;
                    facts.digest = Some(gguf::file_digest(&path)?);
                    Ok(facts)
                };
                tokio::task::spawn_blocking(read)
                    .await
                    .map_err(|e| BackendError::Client(format!("GGUF reader task failed: {e}")))?
                    .map_err(BackendError::from)
            }
            BackendSpec::Ollama { base_url, model } => {
                OllamaClient::new(base_url, model).facts().await
            }
            BackendSpec::OpenAi {
                base_url,
                model,
                api_key,
            } => {
                OpenAiClient::new(base_url, model, api_key.clone())
                    .facts()
                    .await
            }
        }
    }

    /// Runs one trial. Never fails: whatever went wrong is in the record.
    pub async fn run(
        &mut self,
        id: u32,
        phase: Phase,
        config: &TrialConfig,
        cancel: &CancellationToken,
    ) -> TrialRun {
        let started_at = chrono::Utc::now();
        let t0 = Instant::now();
        let (execution, series, breach) = match Sampler::start(self.sampler.clone()) {
            Ok(sampler) => {
                let mut breaches = sampler.breaches();
                let execution = self
                    .execute(phase, config, &sampler, &mut breaches, cancel)
                    .await;
                let breach = breaches.borrow().clone();
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
        let verdict = verdict(&summary, trial_failure.as_ref(), &self.settings);
        let keep_log = verdict != Verdict::Stable || execution.samples.iter().any(|s| !s.ok);
        let record = TrialRecord {
            id,
            phase,
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
            server_log_tail: if keep_log {
                execution.log_tail
            } else {
                Vec::new()
            },
        };
        TrialRun { record, series }
    }

    async fn execute(
        &mut self,
        phase: Phase,
        config: &TrialConfig,
        sampler: &Sampler,
        breaches: &mut watch::Receiver<Option<Breach>>,
        cancel: &CancellationToken,
    ) -> Execution {
        let mut session = match self.open(config, sampler, breaches, cancel).await {
            Ok(session) => session,
            Err(execution) => return execution,
        };

        if phase == Phase::Concurrency && config.concurrency > 1 {
            let pause = Duration::from_secs_f64(self.settings.stabilization_delay_s.max(0.0));
            match guarded(tokio::time::sleep(pause), breaches, cancel).await {
                Guarded::Done(()) => {}
                Guarded::Breach => return close(session, Sampled::stopped(None)).await,
                Guarded::Interrupted => {
                    return close(session, Sampled::stopped(Some(interrupted()))).await
                }
            }
        }

        let sampled = self.sample(&mut session, config, breaches, cancel).await;
        close(session, sampled).await
    }

    /// Starts (llama-server) or loads (Ollama) the configuration and prepares prompts.
    async fn open(
        &mut self,
        config: &TrialConfig,
        sampler: &Sampler,
        breaches: &mut watch::Receiver<Option<Breach>>,
        cancel: &CancellationToken,
    ) -> Result<Session, Execution> {
        let spec = self.spec.clone();
        match &spec {
            BackendSpec::LlamaServer(spec) => {
                self.open_llama(spec, config, sampler, breaches, cancel)
                    .await
            }
            BackendSpec::Ollama { base_url, model } => {
                let client = OllamaClient::new(base_url, model);
                let options = OllamaOptions {
                    num_ctx: config.ctx,
                    num_batch: config.batch,
                    num_predict: self.settings.n_predict,
                    num_thread: None,
                    num_gpu: None,
                };
                let requester = Requester::Ollama(client.clone(), options);
                let mut session = self
                    .open_remote(requester, config, breaches, cancel)
                    .await?;
                // Ollama clamps num_ctx to the trained context: see what it loaded.
                if let Ok(Some(loaded)) = client.loaded().await {
                    session.granted_ctx = loaded.context_length;
                }
                check_granted(&session, config)?;
                Ok(session)
            }
            BackendSpec::OpenAi {
                base_url,
                model,
                api_key,
            } => {
                let requester =
                    Requester::OpenAi(OpenAiClient::new(base_url, model, api_key.clone()));
                self.open_remote(requester, config, breaches, cancel).await
            }
        }
    }

    async fn open_llama(
        &mut self,
        spec: &LlamaServerSpec,
        config: &TrialConfig,
        sampler: &Sampler,
        breaches: &mut watch::Receiver<Option<Breach>>,
        cancel: &CancellationToken,
    ) -> Result<Session, Execution> {
        let health = Duration::from_secs_f64(self.settings.health_timeout_s.max(1.0));
        let watch = |pid: u32| sampler.watch_pid(Some(pid));
        let start = ManagedServer::start(spec, config, health, cancel, &watch);
        let server = match guarded(start, breaches, cancel).await {
            Guarded::Done(Ok(server)) => server,
            Guarded::Done(Err(start_failure)) => {
                let f = if cancel.is_cancelled() {
                    interrupted()
                } else {
                    start_failure.failure
                };
                return Err(Execution::failed(f, start_failure.log_tail));
            }
            // The dropped start future killed the server.
            Guarded::Breach => return Err(Execution::failed(interrupted_by_breach(), Vec::new())),
            Guarded::Interrupted => return Err(Execution::failed(interrupted(), Vec::new())),
        };

        let filler = match &self.filler_tokens {
            Some(f) => Arc::clone(f),
            None => match server.client().tokenize(FILLER).await {
                Ok(tokens) if !tokens.is_empty() => {
                    let tokens = Arc::new(tokens);
                    self.filler_tokens = Some(Arc::clone(&tokens));
                    tokens
                }
                Ok(_) => {
                    let log = server.log_tail();
                    return Err(Execution::failed(
                        failure(
                            FailureKind::BadOutput,
                            "llama-server tokenized the filler text to nothing",
                        ),
                        log,
                    ));
                }
                Err(e) => {
                    let log = server.log_tail();
                    return Err(Execution::failed(
                        failure(
                            FailureKind::ServerError,
                            format!("cannot tokenize the prompt: {e}"),
                        ),
                        log,
                    ));
                }
            },
        };
        // With -kvu the slot may address the whole cache; the share per slot is ctx.
        let granted_ctx = server.granted_ctx().map(|g| g.min(config.ctx));
        let usable = granted_ctx.unwrap_or(config.ctx);
        let session = Session {
            requester: Requester::Llama(server.client().clone()),
            granted_ctx,
            target_tokens: target_prompt_tokens(
                usable,
                self.settings.fill_ratio,
                self.settings.n_predict,
            ),
            prompt: PromptSource::Tokens(Arc::clone(&filler)),
            server: Some(server),
        };
        let mut session = match check_granted(&session, config) {
            Ok(()) => session,
            Err(mut execution) => {
                let mut session = session;
                execution.log_tail = session.log_tail();
                session.close(false).await;
                return Err(execution);
            }
        };

        if self.settings.warmup {
            let request = GenerationRequest {
                prompt: token_prompt(&filler, WARMUP_PROMPT_TOKENS, 0),
                n_predict: WARMUP_PREDICT,
                timeout: self.settings.timeouts.for_config(config.ctx, config.batch),
            };
            self.warm(&mut session, &request, breaches, cancel).await?;
        }
        Ok(session)
    }

    /// Ollama and OpenAI-compatible servers: a calibration request (which also warms the
    /// model up, and for Ollama loads it with the configuration's options) measures how
    /// many characters the model's tokens hold.
    async fn open_remote(
        &mut self,
        requester: Requester,
        config: &TrialConfig,
        breaches: &mut watch::Receiver<Option<Breach>>,
        cancel: &CancellationToken,
    ) -> Result<Session, Execution> {
        let target_tokens = target_prompt_tokens(
            config.ctx,
            self.settings.fill_ratio,
            self.settings.n_predict,
        );
        let mut session = Session {
            server: None,
            requester,
            granted_ctx: None,
            target_tokens,
            prompt: PromptSource::Text {
                chars_per_token: 1.0,
            },
        };
        // At least one character per token: a calibration prompt of `chars` characters
        // holds at most `chars` tokens and cannot overflow the target.
        let chars = CALIBRATION_CHARS.min(target_tokens as usize).max(1);
        let request = GenerationRequest {
            prompt: Prompt::Text(text_prompt(chars, 0)),
            n_predict: WARMUP_PREDICT,
            timeout: self.settings.timeouts.for_config(config.ctx, config.batch),
        };
        let generation = self.warm(&mut session, &request, breaches, cancel).await?;
        let ratio = generation
            .prompt_tokens
            .filter(|n| *n > 0)
            .map(|n| chars as f64 / f64::from(n));
        let chars_per_token = ratio.or(self.chars_per_token).unwrap_or(4.0);
        self.chars_per_token = Some(chars_per_token);
        session.prompt = PromptSource::Text { chars_per_token };
        Ok(session)
    }

    /// One unmeasured request; its failure fails the trial.
    async fn warm(
        &self,
        session: &mut Session,
        request: &GenerationRequest,
        breaches: &mut watch::Receiver<Option<Breach>>,
        cancel: &CancellationToken,
    ) -> Result<Generation, Execution> {
        let requester = session.requester.clone();
        let work = tokio::time::timeout(request.timeout, requester.generate(request));
        let outcome = guarded(work, breaches, cancel).await;
        let fail = |f: Failure, session: &Session| Execution::failed(f, session.log_tail());
        match outcome {
            Guarded::Done(Ok(Ok(generation))) => Ok(generation),
            Guarded::Done(Ok(Err(f))) => {
                let f = session.server_exit(EXIT_SETTLE).await.unwrap_or(f);
                let execution = fail(warmup_failure(f), session);
                session.close(false).await;
                Err(execution)
            }
            Guarded::Done(Err(_)) => {
                let execution = fail(
                    timeout_failure(request.timeout, "the warm-up request"),
                    session,
                );
                session.close(false).await;
                Err(execution)
            }
            Guarded::Breach => {
                let execution = fail(interrupted_by_breach(), session);
                session.close(true).await;
                Err(execution)
            }
            Guarded::Interrupted => {
                session.close(true).await;
                Err(fail(interrupted(), session))
            }
        }
    }

    /// The measured samples, `concurrency` at a time.
    async fn sample(
        &self,
        session: &mut Session,
        config: &TrialConfig,
        breaches: &mut watch::Receiver<Option<Breach>>,
        cancel: &CancellationToken,
    ) -> Sampled {
        let concurrency = config.concurrency.max(1);
        let waves = self.settings.samples.max(1).div_ceil(concurrency);
        let timeout = self.settings.timeouts.for_config(config.ctx, config.batch);
        let n_predict = self.settings.n_predict;
        let exact_counts = session.server.is_some();
        let mut out = Sampled::default();
        let mut timeouts = 0u32;

        for wave in 0..waves {
            let mut streams = JoinSet::new();
            for k in 0..concurrency {
                let index = wave * concurrency + k;
                let request = GenerationRequest {
                    prompt: session.prompt(index),
                    n_predict,
                    timeout,
                };
                let requester = session.requester.clone();
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
                let checked = match outcome {
                    Ok(Ok(generation)) => {
                        let check = if exact_counts {
                            check_counts(&generation, session.target_tokens, n_predict)
                        } else {
                            check_truncation(&generation, session.target_tokens)
                        };
                        check
                            .map(|()| generation)
                            .map_err(|e| failure(FailureKind::BadOutput, e))
                    }
                    Ok(Err(f)) => Err(f),
                    Err(_) => {
                        timeouts += 1;
                        Err(timeout_failure(timeout, "the request"))
                    }
                };
                match checked {
                    Ok(generation) => out.samples.push(sample_record(index, &generation)),
                    Err(f) => {
                        wave_failed = true;
                        out.samples.push(failed_sample(index, f.message.clone()));
                        out.sample_failures.push(f);
                    }
                }
            }
            if wave_failed {
                if let Some(exit) = session.server_exit(EXIT_SETTLE).await {
                    out.trial_failure = Some(died_mid_trial(exit));
                    return out;
                }
            }
            if timeouts > self.settings.max_concurrent_timeouts {
                let f = failure(
                    FailureKind::Timeout,
                    format!(
                        "{timeouts} requests ran past the {:.0} s timeout (at most {} allowed)",
                        timeout.as_secs_f64(),
                        self.settings.max_concurrent_timeouts
                    ),
                );
                out.trial_failure = Some(f);
                return out;
            }
        }
        out
    }
}

/// What one stream of a wave returns: its sample index and the request's outcome.
type StreamOutcome = (
    u32,
    Result<Result<Generation, Failure>, tokio::time::error::Elapsed>,
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

/// What the sampling phase produced.
#[derive(Default)]
struct Sampled {
    samples: Vec<SampleRecord>,
    sample_failures: Vec<Failure>,
    trial_failure: Option<Failure>,
    /// Kill the server rather than stop it gently (breach, Ctrl-C).
    kill: bool,
}

impl Sampled {
    fn stopped(trial_failure: Option<Failure>) -> Self {
        Self::default().stop(trial_failure)
    }

    fn stop(mut self, trial_failure: Option<Failure>) -> Self {
        self.trial_failure = trial_failure;
        self.kill = true;
        self
    }
}

async fn close(mut session: Session, sampled: Sampled) -> Execution {
    let log_tail = session.log_tail();
    session.close(sampled.kill).await;
    Execution {
        samples: sampled.samples,
        sample_failures: sampled.sample_failures,
        failure: sampled.trial_failure,
        granted_ctx: session.granted_ctx,
        log_tail,
    }
}

fn check_granted(session: &Session, config: &TrialConfig) -> Result<(), Execution> {
    match session.granted_ctx {
        Some(granted) if granted < config.ctx => Err(Execution {
            samples: Vec::new(),
            sample_failures: Vec::new(),
            failure: Some(failure(
                FailureKind::ServerError,
                format!(
                    "the server granted a context of {granted} tokens, not the {} asked \
                     (beyond the model's trained context?)",
                    config.ctx
                ),
            )),
            granted_ctx: Some(granted),
            log_tail: session.log_tail(),
        }),
        _ => Ok(()),
    }
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

fn sample_record(index: u32, g: &Generation) -> SampleRecord {
    SampleRecord {
        index,
        ok: true,
        ttft_ms: Some(g.ttft.as_secs_f64() * 1000.0),
        prefill_tps: g.prefill_tps(),
        decode_tps: g.decode_tps(),
        prompt_tokens: g.prompt_tokens,
        completion_tokens: g.completion_tokens,
        total_ms: Some(g.total.as_secs_f64() * 1000.0),
        error: None,
    }
}

fn failed_sample(index: u32, error: String) -> SampleRecord {
    SampleRecord {
        index,
        ok: false,
        error: Some(error),
        ..SampleRecord::default()
    }
}

fn timeout_failure(timeout: Duration, what: &str) -> Failure {
    failure(
        FailureKind::Timeout,
        format!("{what} ran past the {:.0} s timeout", timeout.as_secs_f64()),
    )
}

fn warmup_failure(f: Failure) -> Failure {
    Failure {
        message: format!("warm-up failed: {}", f.message),
        ..f
    }
}

fn died_mid_trial(f: Failure) -> Failure {
    Failure {
        message: format!("mid-trial: {}", f.message),
        ..f
    }
}

/// Placeholder replaced by the breach itself when the record is built.
fn interrupted_by_breach() -> Failure {
    failure(FailureKind::ServerError, "stopped by a threshold breach")
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
            kv_cache_type: crate::record::KvCacheType::F16,
        };
        let cancel = CancellationToken::new();
        let run = runner.run(1, Phase::Context, &config, &cancel);
        assert_send(&run);
    }
}
