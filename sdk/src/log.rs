//! Logging through the host: the only capability a plugin has.

use crate::types::LogLevel;

/// Writes `message` to Ozone's log (tagged with the plugin's name). Natively, in tests,
/// it goes to stderr (captured by `cargo test`).
pub fn log(level: LogLevel, message: &str) {
    #[cfg(target_arch = "wasm32")]
    crate::export::host_log(level, message);
    #[cfg(not(target_arch = "wasm32"))]
    eprintln!("[{level:?}] {message}");
}
