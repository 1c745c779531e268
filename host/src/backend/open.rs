//! Opening a server for one trial configuration, per backend: llama-server is started
//! and the filler tokenized in the model's own tokens; Ollama is loaded with the
//! configuration's options; an OpenAI-compatible server is calibrated (characters per
//! token). Every step can be cut short by a threshold breach or Ctrl-C.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::generation::failure;
use super::llama_server::{
    device_buffers_mib, exit_breakdown, loaded_device, LlamaServerSpec, ManagedServer,
};
use super::ollama::{OllamaClient, OllamaOptions};
use super::openai::OpenAiClient;
use super::prompt::{target_prompt_tokens, text_prompt, token_prompt, FILLER};
use super::requester::Requester;
use super::{BackendSpec, Generation, GenerationRequest, Prompt};
use crate::guard::{guarded, Guarded};
use crate::record::{Breach, FailureKind, MemoryBreakdown, Metric, TrialConfig, TrialFailure};

/// Tokens of the warm-up request.
const WARMUP_PROMPT_TOKENS: usize = 32;
const WARMUP_PREDICT: u32 = 4;
/// Characters of the calibration prompt (Ollama, OpenAI): short enough never to be
/// truncated, long enough for a steady characters-per-token ratio.
const CALIBRATION_CHARS: usize = 2000;
/// How long a failed request waits for a crashing server to be seen as exited.
const EXIT_SETTLE: Duration = Duration::from_millis(500);

/// How a trial wants its server opened.
#[derive(Debug, Clone)]
pub struct OpenOptions {
    /// How long a server may take to load and answer `/health`.
    pub health_timeout: Duration,
    /// Share of the context the prompt fills.
    pub fill_ratio: f64,
    /// Tokens generated per request.
    pub n_predict: u32,
    /// One unmeasured request before the samples (llama-server; the others always send
    /// their calibration request).
    pub warmup: bool,
    /// Timeout of the warm-up or calibration request.
    pub request_timeout: Duration,
    /// `gpu_memory_budget_mb` in bytes: a llama-server whose own account of the device
    /// buffers it allocated at load is over it is stopped before any request (the
    /// budget then binds where nothing reads a process's GPU memory live, lavapipe say,
    /// and costs no fill where something does).
    pub gpu_budget_bytes: Option<u64>,
}

/// A server that could not be opened: why, the context it granted if it said, and the
/// last lines it logged.
#[derive(Debug, Clone)]
pub struct OpenFailure {
    pub failure: TrialFailure,
    pub granted_ctx: Option<u32>,
    pub log_tail: Vec<String>,
    /// The server never came up at all: it exited before answering `/health`, never
    /// answered it, or could not be run (`failure` says which).
    pub never_started: bool,
    /// The GPU-memory budget crossed by the device buffers the server allocated at load
    /// (`OpenOptions::gpu_budget_bytes`), with the figure.
    pub load_breach: Option<Box<Breach>>,
}

impl OpenFailure {
    fn new(failure: TrialFailure, log_tail: Vec<String>) -> Self {
        Self {
            failure,
            granted_ctx: None,
            log_tail,
            never_started: false,
            load_breach: None,
        }
    }
}

/// Opens servers of one backend. Keeps what it learnt about the model's tokenizer
/// between trials.
#[derive(Debug)]
pub struct ServerOpener {
    spec: BackendSpec,
    /// llama-server: the filler in the model's own tokens.
    filler_tokens: Option<Arc<Vec<u32>>>,
    /// Ollama, OpenAI: characters per token, learnt from the server's counts.
    chars_per_token: Option<f64>,
}

/// A server ready for samples under one configuration.
pub struct OpenServer {
    server: Option<ManagedServer>,
    requester: Requester,
    granted_ctx: Option<u32>,
    prompts: Prompts,
}

/// The prompts of a trial's requests, all of one length; cheap to clone into each
/// concurrent stream.
#[derive(Debug, Clone)]
pub struct Prompts {
    source: PromptSource,
    /// Prompt tokens each request should carry.
    target_tokens: u32,
}

#[derive(Debug, Clone)]
enum PromptSource {
    Tokens(Arc<Vec<u32>>),
    Text { chars_per_token: f64 },
}

impl Prompts {
    /// The prompt of request `index`: same length, different start (no cache hits).
    pub fn prompt(&self, index: u32) -> Prompt {
        let offset = index as usize * 97;
        match &self.source {
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

    /// Prompt tokens each request aims for.
    pub fn target_tokens(&self) -> u32 {
        self.target_tokens
    }
}

impl OpenServer {
    /// The prompt of sample `index` (see [`Prompts::prompt`]).
    pub fn prompt(&self, index: u32) -> Prompt {
        self.prompts.prompt(index)
    }

    /// The prompts of this trial, for streams that build their own.
    pub fn prompts(&self) -> Prompts {
        self.prompts.clone()
    }

    /// A handle that sends one request; clone it for each concurrent stream.
    pub fn requester(&self) -> Requester {
        self.requester.clone()
    }

    /// Prompt tokens each sample aims for.
    pub fn target_tokens(&self) -> u32 {
        self.prompts.target_tokens
    }

    /// The context the server granted, when it says (llama-server, Ollama).
    pub fn granted_ctx(&self) -> Option<u32> {
        self.granted_ctx
    }

    /// Whether the server's token counts are exact (llama-server, fed token ids): every
    /// prompt token and every generated token can then be checked.
    pub fn exact_counts(&self) -> bool {
        self.server.is_some()
    }

    pub fn log_tail(&self) -> Vec<String> {
        self.server
            .as_ref()
            .map(ManagedServer::log_tail)
            .unwrap_or_default()
    }

    /// llama.cpp's memory breakdown per device, which llama-server prints as it stops:
    /// read after [`OpenServer::close`] (a killed server prints none; Ollama and
    /// OpenAI-compatible servers are not Ozone's to stop).
    pub fn memory_breakdown(&self) -> Option<MemoryBreakdown> {
        exit_breakdown(&self.server.as_ref()?.log_lines())
    }

    /// Stops a server Ozone started: `fast` kills it at once (breach, Ctrl-C).
    pub async fn close(&mut self, fast: bool) {
        if let Some(server) = &mut self.server {
            if fast {
                server.kill().await;
            } else {
                server.stop().await;
            }
        }
    }

    /// The server's own exit, when it died (waits briefly for a crash to be visible).
    pub async fn server_exit(&mut self) -> Option<TrialFailure> {
        exit_of(self.server.as_mut()?).await
    }
}

/// How `server` exited, when a failed request suggests it died (waits briefly for a
/// crash to be visible).
async fn exit_of(server: &mut ManagedServer) -> Option<TrialFailure> {
    let deadline = Instant::now() + EXIT_SETTLE;
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

impl ServerOpener {
    pub fn new(spec: BackendSpec) -> Self {
        Self {
            spec,
            filler_tokens: None,
            chars_per_token: None,
        }
    }

    pub fn spec(&self) -> &BackendSpec {
        &self.spec
    }

    /// Starts (llama-server) or loads (Ollama) the configuration and prepares prompts.
    /// `watch_pid` gets a started server's process id as soon as it exists.
    pub async fn open(
        &mut self,
        config: &TrialConfig,
        options: &OpenOptions,
        watch_pid: &(dyn Fn(u32) + Send + Sync),
        breaches: &mut watch::Receiver<Option<Breach>>,
        cancel: &CancellationToken,
    ) -> Result<OpenServer, OpenFailure> {
        let spec = self.spec.clone();
        match &spec {
            BackendSpec::LlamaServer(spec) => {
                self.open_llama(spec, config, options, watch_pid, breaches, cancel)
                    .await
            }
            BackendSpec::Ollama { base_url, model } => {
                let client = OllamaClient::new(base_url, model);
                let ollama_options = OllamaOptions {
                    num_ctx: config.ctx,
                    num_batch: config.batch,
                    num_predict: options.n_predict,
                    num_thread: None,
                    num_gpu: None,
                };
                let requester = Requester::Ollama(client.clone(), ollama_options);
                let mut server = self
                    .open_remote(requester, config, options, breaches, cancel)
                    .await?;
                // Ollama clamps num_ctx to the trained context: see what it loaded.
                match guarded(client.loaded(), breaches, cancel).await {
                    Guarded::Done(Ok(Some(loaded))) => server.granted_ctx = loaded.context_length,
                    Guarded::Done(_) => {}
                    Guarded::Breach => {
                        return Err(OpenFailure::new(interrupted_by_breach(), Vec::new()))
                    }
                    Guarded::Interrupted => {
                        return Err(OpenFailure::new(interrupted(), Vec::new()))
                    }
                }
                check_granted(&server, config)?;
                Ok(server)
            }
            BackendSpec::OpenAi {
                base_url,
                model,
                api_key,
            } => {
                let requester =
                    Requester::OpenAi(OpenAiClient::new(base_url, model, api_key.clone()));
                self.open_remote(requester, config, options, breaches, cancel)
                    .await
            }
        }
    }

    async fn open_llama(
        &mut self,
        spec: &LlamaServerSpec,
        config: &TrialConfig,
        options: &OpenOptions,
        watch_pid: &(dyn Fn(u32) + Send + Sync),
        breaches: &mut watch::Receiver<Option<Breach>>,
        cancel: &CancellationToken,
    ) -> Result<OpenServer, OpenFailure> {
        // A breach while the server loads (a GPU budget crossed by the KV cache) stops the
        // start, which then reaps the server the sampler killed: the next trial must not
        // start while this one's memory is still being released. Ctrl-C drops it at once.
        let stop_on_breach = CancellationToken::new();
        let start = ManagedServer::start(
            spec,
            config,
            options.health_timeout,
            &stop_on_breach,
            watch_pid,
        );
        tokio::pin!(start);
        // `false`: the sampler is gone and no breach can come (the branch is disabled).
        let breach = async { breaches.wait_for(Option::is_some).await.is_ok() };
        let started = tokio::select! {
            biased;
            () = cancel.cancelled() => return Err(OpenFailure::new(interrupted(), Vec::new())),
            started = &mut start => started,
            true = breach => {
                stop_on_breach.cancel();
                let _ = start.await;
                return Err(OpenFailure::new(interrupted_by_breach(), Vec::new()));
            }
        };
        let mut server = match started {
            Ok(server) => server,
            Err(start_failure) if cancel.is_cancelled() => {
                return Err(OpenFailure::new(interrupted(), start_failure.log_tail));
            }
            Err(start_failure) => {
                return Err(OpenFailure {
                    never_started: true,
                    ..OpenFailure::new(start_failure.failure, start_failure.log_tail)
                });
            }
        };
        if let Some(breach) = over_budget_at_load(&server, options.gpu_budget_bytes) {
            let log_tail = server.log_tail();
            server.kill().await;
            return Err(OpenFailure {
                granted_ctx: server.granted_ctx(),
                load_breach: Some(Box::new(breach.clone())),
                ..OpenFailure::new(
                    failure(
                        FailureKind::ThresholdBreach(Metric::GpuMemoryBudget),
                        breach.to_string(),
                    ),
                    log_tail,
                )
            });
        }

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
                    return Err(OpenFailure::new(
                        failure(
                            FailureKind::BadOutput,
                            "llama-server tokenized the filler text to nothing",
                        ),
                        log,
                    ));
                }
                Err(e) => {
                    let died = exit_of(&mut server).await;
                    let log = server.log_tail();
                    return Err(OpenFailure::new(
                        died.unwrap_or_else(|| {
                            failure(
                                FailureKind::ServerError,
                                format!("cannot tokenize the prompt: {e}"),
                            )
                        }),
                        log,
                    ));
                }
            },
        };
        // With -kvu the slot may address the whole cache; the share per slot is ctx.
        let granted_ctx = server.granted_ctx().map(|g| g.min(config.ctx));
        let usable = granted_ctx.unwrap_or(config.ctx);
        let server = OpenServer {
            requester: Requester::Llama(server.client().clone()),
            granted_ctx,
            prompts: Prompts {
                source: PromptSource::Tokens(Arc::clone(&filler)),
                target_tokens: target_prompt_tokens(usable, options.fill_ratio, options.n_predict),
            },
            server: Some(server),
        };
        let mut server = match check_granted(&server, config) {
            Ok(()) => server,
            Err(mut open_failure) => {
                let mut server = server;
                open_failure.log_tail = server.log_tail();
                server.close(false).await;
                return Err(open_failure);
            }
        };

        if options.warmup {
            let request = GenerationRequest {
                prompt: token_prompt(&filler, WARMUP_PROMPT_TOKENS, 0),
                n_predict: WARMUP_PREDICT,
                timeout: options.request_timeout,
            };
            warm(&mut server, &request, breaches, cancel).await?;
        }
        Ok(server)
    }

    /// Ollama and OpenAI-compatible servers: a calibration request (which also warms the
    /// model up, and for Ollama loads it with the configuration's options) measures how
    /// many characters the model's tokens hold.
    async fn open_remote(
        &mut self,
        requester: Requester,
        config: &TrialConfig,
        options: &OpenOptions,
        breaches: &mut watch::Receiver<Option<Breach>>,
        cancel: &CancellationToken,
    ) -> Result<OpenServer, OpenFailure> {
        let target_tokens = target_prompt_tokens(config.ctx, options.fill_ratio, options.n_predict);
        let mut server = OpenServer {
            server: None,
            requester,
            granted_ctx: None,
            prompts: Prompts {
                source: PromptSource::Text {
                    chars_per_token: 1.0,
                },
                target_tokens,
            },
        };
        // At least one character per token: a calibration prompt of `chars` characters
        // holds at most `chars` tokens and cannot overflow the target.
        let chars = CALIBRATION_CHARS.min(target_tokens as usize).max(1);
        let request = GenerationRequest {
            prompt: Prompt::Text(text_prompt(chars, 0)),
            n_predict: WARMUP_PREDICT,
            timeout: options.request_timeout,
        };
        let generation = warm(&mut server, &request, breaches, cancel).await?;
        let ratio = generation
            .prompt_tokens
            .filter(|n| *n > 0)
            .map(|n| chars as f64 / f64::from(n));
        let chars_per_token = ratio.or(self.chars_per_token).unwrap_or(4.0);
        self.chars_per_token = Some(chars_per_token);
        server.prompts.source = PromptSource::Text { chars_per_token };
        Ok(server)
    }
}

/// One unmeasured request; its failure fails the trial.
async fn warm(
    server: &mut OpenServer,
    request: &GenerationRequest,
    breaches: &mut watch::Receiver<Option<Breach>>,
    cancel: &CancellationToken,
) -> Result<Generation, OpenFailure> {
    let requester = server.requester.clone();
    let work = tokio::time::timeout(request.timeout, requester.generate(request));
    let outcome = guarded(work, breaches, cancel).await;
    let fail = |f: TrialFailure, server: &OpenServer| OpenFailure::new(f, server.log_tail());
    match outcome {
        Guarded::Done(Ok(Ok(generation))) => Ok(generation),
        Guarded::Done(Ok(Err(f))) => {
            let f = server.server_exit().await.unwrap_or(f);
            let open_failure = fail(warmup_failure(f), server);
            server.close(false).await;
            Err(open_failure)
        }
        Guarded::Done(Err(_)) => {
            let open_failure = fail(
                timeout_failure(request.timeout, "the warm-up request"),
                server,
            );
            server.close(false).await;
            Err(open_failure)
        }
        Guarded::Breach => {
            let open_failure = fail(interrupted_by_breach(), server);
            server.close(true).await;
            Err(open_failure)
        }
        Guarded::Interrupted => {
            server.close(true).await;
            Err(fail(interrupted(), server))
        }
    }
}

fn check_granted(server: &OpenServer, config: &TrialConfig) -> Result<(), OpenFailure> {
    match server.granted_ctx {
        Some(granted) if granted < config.ctx => Err(OpenFailure {
            never_started: false,
            failure: failure(
                FailureKind::ServerError,
                format!(
                    "the server granted a context of {granted} tokens, not the {} asked \
                     (beyond the model's trained context?)",
                    config.ctx
                ),
            ),
            granted_ctx: Some(granted),
            log_tail: server.log_tail(),
            load_breach: None,
        }),
        _ => Ok(()),
    }
}

/// The failure of work cut short by Ctrl-C.
pub fn interrupted() -> TrialFailure {
    failure(FailureKind::ServerError, "interrupted")
}

/// A request that ran past its timeout.
pub fn timeout_failure(timeout: Duration, what: &str) -> TrialFailure {
    failure(
        FailureKind::Timeout,
        format!("{what} ran past the {:.0} s timeout", timeout.as_secs_f64()),
    )
}

fn warmup_failure(f: TrialFailure) -> TrialFailure {
    if f.fault.is_some() {
        // Says what killed the server whenever it happened.
        return f;
    }
    TrialFailure {
        message: format!("warm-up failed: {}", f.message),
        ..f
    }
}

/// Placeholder replaced by the breach itself when the record is built.
/// The GPU-memory budget crossed by the device buffers `server` says it allocated as it
/// loaded (`llama_server::device_buffers_mib`), if it was.
fn over_budget_at_load(server: &ManagedServer, budget: Option<u64>) -> Option<Breach> {
    let limit = budget?;
    let used = device_buffers_mib(&server.log_lines())? * 1024.0 * 1024.0;
    (used > limit as f64).then(|| Breach {
        metric: Metric::GpuMemoryBudget,
        value: used,
        limit: limit as f64,
        at_ms: 0,
        device: loaded_device(&server.log_lines()).map(Box::new),
    })
}

fn interrupted_by_breach() -> TrialFailure {
    failure(FailureKind::ServerError, "stopped by a threshold breach")
}
