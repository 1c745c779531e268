//! Ctrl-C while servers run: the first cancels the tune (the trial in flight kills its
//! server and returns "interrupted", the caller flushes its log); a second one kills
//! every server at once and exits with 130, for a tune that does not stop fast enough.

use tokio_util::sync::CancellationToken;

use super::children::kill_all_servers;

/// Exit code of an interrupted run (see `ozone --help`).
const INTERRUPTED: i32 = 130;

/// Spawns the Ctrl-C watcher on the current runtime.
pub fn watch_ctrl_c(cancel: CancellationToken) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_err() {
            return;
        }
        tracing::warn!("interrupted: stopping the trial in flight (Ctrl-C again to kill now)");
        cancel.cancel();
        if tokio::signal::ctrl_c().await.is_ok() {
            kill_all_servers();
            std::process::exit(INTERRUPTED);
        }
    })
}
