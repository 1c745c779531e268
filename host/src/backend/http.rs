//! The HTTP client every backend uses.

/// A client that never reuses a connection. Inference servers close idle keep-alive
/// connections on their own schedule, and a request sent on one the server is closing
/// fails with "connection closed before message completed": a failure of the client,
/// not of the configuration under test. A fresh loopback connection per request costs
/// well under a millisecond.
pub(crate) fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap_or_default()
}
