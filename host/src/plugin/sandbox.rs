//! One store per plugin instance: its limits, its log import, and the mapping of
//! wasmtime failures to [`PluginError`]s. A store that failed a call is dropped.

use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Engine, ResourceLimiter, Store, Trap};

use super::bindings::{self, wit, HostImports};
use super::{PluginError, SandboxLimits, World};

/// Longest log message kept from a plugin.
const MAX_LOG_CHARS: usize = 2000;

/// The data of one plugin's store.
pub struct StoreState {
    plugin: String,
    memory_cap_bytes: usize,
    /// Linear memory granted so far, over all memories of the instance.
    memory_used_bytes: usize,
    /// The last error-level message (the SDK logs panics there before trapping).
    last_error: Option<String>,
}

/// Returned by the limiter; found again in the call's error to name the cause.
#[derive(Debug)]
struct MemoryCapExceeded;

impl std::fmt::Display for MemoryCapExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("memory cap exceeded")
    }
}

impl std::error::Error for MemoryCapExceeded {}

impl ResourceLimiter for StoreState {
    /// The cap is on the store's total: a component may hold several linear memories.
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = self
            .memory_used_bytes
            .saturating_sub(current)
            .saturating_add(desired);
        if total > self.memory_cap_bytes {
            return Err(wasmtime::Error::new(MemoryCapExceeded));
        }
        self.memory_used_bytes = total;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Tables hold function references; a strategy needs a few hundred at most.
        Ok(desired <= 100_000)
    }
}

impl HostImports for StoreState {
    fn log(&mut self, level: wit::LogLevel, message: String) {
        let mut message = message;
        if message.len() > MAX_LOG_CHARS {
            let cut = (0..=MAX_LOG_CHARS)
                .rev()
                .find(|i| message.is_char_boundary(*i))
                .unwrap_or(0);
            message.truncate(cut);
            message.push('…');
        }
        let plugin = &self.plugin;
        match level {
            wit::LogLevel::Trace => tracing::trace!("[{plugin}] {message}"),
            wit::LogLevel::Debug => tracing::debug!("[{plugin}] {message}"),
            wit::LogLevel::Info => tracing::info!("[{plugin}] {message}"),
            wit::LogLevel::Warn => tracing::warn!("[{plugin}] {message}"),
            wit::LogLevel::Error => {
                tracing::debug!("[{plugin}] {message}");
                self.last_error = Some(message);
            }
        }
    }
}

impl wit::Host for StoreState {}

/// A linker with the host import, for one world. Unknown imports (the WASI interfaces a
/// Rust std guest links) are added per component as traps: no env, files, clocks,
/// random or sockets reach a plugin.
pub fn linker(engine: &Engine, world: World) -> Result<Linker<StoreState>, PluginError> {
    let mut linker = Linker::new(engine);
    let result = match world {
        World::Context => {
            bindings::context::ContextStrategy::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)
        }
        World::Batch => {
            bindings::batch::BatchStrategy::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)
        }
        World::Concurrency => bindings::concurrency::ConcurrencyStrategy::add_to_linker::<
            _,
            HasSelf<_>,
        >(&mut linker, |s| s),
        World::Variant => {
            bindings::variants::VariantStrategy::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)
        }
        World::Offload => {
            bindings::offload::OffloadStrategy::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)
        }
    };
    result.map_err(|e| PluginError::Engine(format!("{e:#}")))?;
    Ok(linker)
}

pub fn new_store(engine: &Engine, plugin: &str, limits: &SandboxLimits) -> Store<StoreState> {
    let cap = usize::try_from(limits.memory_mb.saturating_mul(1 << 20)).unwrap_or(usize::MAX);
    let mut store = Store::new(
        engine,
        StoreState {
            plugin: plugin.to_string(),
            memory_cap_bytes: cap,
            memory_used_bytes: 0,
            last_error: None,
        },
    );
    store.limiter(|s| s as &mut dyn ResourceLimiter);
    store
}

/// Arms the per-call budget before a call into the plugin.
pub fn arm(store: &mut Store<StoreState>, limits: &SandboxLimits) -> Result<(), PluginError> {
    store.data_mut().last_error = None;
    store
        .set_fuel(limits.fuel_per_call)
        .map_err(|e| PluginError::Engine(format!("{e:#}")))
}

/// Whether `error` is the plugin breaking its sandbox (a trap, the memory cap), as
/// opposed to a host-side failure such as a link error.
pub fn is_violation(error: &wasmtime::Error) -> bool {
    error.is::<MemoryCapExceeded>() || error.downcast_ref::<Trap>().is_some()
}

/// Names what went wrong in a failed call.
pub fn classify(
    error: wasmtime::Error,
    store: &Store<StoreState>,
    call: &'static str,
    limits: &SandboxLimits,
) -> PluginError {
    let plugin = store.data().plugin.clone();
    if error.is::<MemoryCapExceeded>() {
        return PluginError::Memory {
            plugin,
            call,
            limit_mb: limits.memory_mb,
        };
    }
    let trap = error.downcast_ref::<Trap>().copied();
    match trap {
        Some(Trap::OutOfFuel) => PluginError::Budget {
            plugin,
            call,
            fuel: limits.fuel_per_call,
        },
        Some(Trap::StackOverflow) => PluginError::Trapped {
            plugin,
            call,
            message: format!(
                "call stack exhausted (stack cap {} KiB; if it needs more, raise ozone.sandbox.stack_kb)",
                limits.stack_kb
            ),
        },
        _ => {
            // The root cause says what happened; the wasm backtrace around it is noise
            // for a user (it is logged at debug level).
            tracing::debug!("plugin {plugin} failed in {call}: {error:?}");
            let mut message = error.root_cause().to_string();
            if message.starts_with("unknown import") {
                message += " (plugins are granted no WASI: no environment, files, clocks, \
                            random or sockets)";
            }
            if let Some(logged) = &store.data().last_error {
                message = format!("{logged} ({message})");
            }
            PluginError::Trapped {
                plugin,
                call,
                message: first_lines(&message, 6),
            }
        }
    }
}

/// Wasm backtraces can be long; keep the head.
fn first_lines(text: &str, n: usize) -> String {
    let mut lines: Vec<&str> = text.lines().take(n + 1).collect();
    if lines.len() > n {
        lines.truncate(n);
        lines.push("…");
    }
    lines.join("\n")
}
