//! Waiting on a trial's work while the sampler's breach or Ctrl-C may cut it short.

use std::future::Future;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::record::Breach;

/// Outcome of waiting on something while the guard and Ctrl-C may interrupt it.
pub enum Guarded<T> {
    Done(T),
    Breach,
    Interrupted,
}

/// Runs `work` until it finishes, a breach is published on `breaches` (see
/// [`super::Sampler::breaches`]) or `cancel` fires; the work is dropped when cut short.
pub async fn guarded<T>(
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
