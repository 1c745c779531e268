//! Ctrl-C (SIGINT) and SIGTERM — what `timeout`, systemd and CI cancellation send — while
//! servers run. The first cancels the tune: whatever is in flight (a model-facts request,
//! a server start, a trial) stops and returns "interrupted", and the caller flushes its
//! log. A second one of either kills every server at once and exits, for a tune that does
//! not stop fast enough.

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;

use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

use super::children::kill_all_servers;

/// The signals that stop a tune, and which one came first.
#[derive(Debug, Clone, Default)]
pub struct Interruption {
    cancel: CancellationToken,
    /// The first signal received; 0 while none.
    signal: Arc<AtomicI32>,
}

impl Interruption {
    /// Cancelled by the first SIGINT or SIGTERM.
    pub fn token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// The signal that stopped the run (`libc::SIGINT` or `libc::SIGTERM`), if any.
    pub fn signal(&self) -> Option<i32> {
        Some(self.signal.load(Ordering::SeqCst)).filter(|s| *s != 0)
    }

    /// The shell's exit code for a process stopped by this run's signal: 128 + its number
    /// (130 for Ctrl-C, 143 for SIGTERM).
    pub fn exit_code(&self) -> i32 {
        128 + self.signal().unwrap_or(libc::SIGINT)
    }

    /// Starts listening on the current runtime. Until this is called the signals keep
    /// their default action.
    pub fn watch(&self) -> std::io::Result<()> {
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut terminate = signal(SignalKind::terminate())?;
        let this = self.clone();
        tokio::spawn(async move {
            let first = tokio::select! {
                Some(()) = interrupt.recv() => libc::SIGINT,
                Some(()) = terminate.recv() => libc::SIGTERM,
                else => return,
            };
            this.signal.store(first, Ordering::SeqCst);
            let name = if first == libc::SIGTERM {
                "terminated (SIGTERM)"
            } else {
                "interrupted"
            };
            tracing::warn!("{name}: stopping (send it again to stop at once)");
            this.cancel.cancel();
            tokio::select! {
                Some(()) = interrupt.recv() => {}
                Some(()) = terminate.recv() => {}
                else => return,
            }
            kill_all_servers();
            std::process::exit(this.exit_code());
        });
        Ok(())
    }
}
