//! The one wasmtime engine, compiling components through an on-disk cache, and the
//! load-time checks (is it a component, which world, which API version).

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::component::types::ComponentItem;
use wasmtime::component::Component;
use wasmtime::{Config, Engine};

use super::{PluginError, SandboxLimits, World, API_VERSION};

/// Builds the engine every plugin shares: fuel metering for the per-call budget, a
/// stack cap, the component model.
pub fn engine(limits: &SandboxLimits) -> Result<Engine, PluginError> {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.consume_fuel(true);
    // Compiling a plugin's functions in parallel pays off on many cores; on one or two
    // busy cores the threads only contend with the inference server.
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    config.parallel_compilation(cores >= 4);
    config.max_wasm_stack(
        usize::try_from(limits.stack_kb.saturating_mul(1024)).unwrap_or(usize::MAX),
    );
    Engine::new(&config).map_err(|e| PluginError::Engine(format!("{e:#}")))
}

/// The default cache folder: `<user cache dir>/ozone/components`.
pub fn default_cache_dir() -> Option<PathBuf> {
    dirs::cache_dir().map(|d| d.join("ozone").join("components"))
}

/// Compiles components, reusing earlier compilations stored under `dir`, keyed by the
/// component's content hash and the engine's compatibility hash (wasmtime version and
/// settings), so a second run does not recompile and a new `ozone` never loads stale code.
pub struct ComponentCache {
    dir: Option<PathBuf>,
    engine_key: u64,
}

impl ComponentCache {
    pub fn new(engine: &Engine, dir: Option<PathBuf>) -> Self {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Self {
            dir,
            engine_key: hasher.finish(),
        }
    }

    fn path_for(&self, wasm: &[u8]) -> Option<PathBuf> {
        let digest = Sha256::digest(wasm);
        let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
        let dir = self.dir.as_ref()?;
        Some(dir.join(format!("{hex}-{:016x}.cwasm", self.engine_key)))
    }

    /// The compiled component for `wasm`: from the cache when present and loadable, else
    /// compiled (and stored; a cache that cannot be written only costs the next run time).
    pub fn load(
        &self,
        engine: &Engine,
        plugin: &str,
        wasm: &[u8],
    ) -> Result<Component, PluginError> {
        check_header(plugin, wasm)?;
        let path = self.path_for(wasm);
        if let Some(path) = path.as_deref() {
            // Read, not mmap (`deserialize_file`): another process replacing or truncating
            // the entry must not fault this one.
            if let Ok(bytes) = std::fs::read(path) {
                // SAFETY: the entry was written by `precompile_component` of an engine with
                // the same compatibility hash (it is in the file name), in ozone's cache
                // folder; wasmtime still checks its header and engine settings.
                match unsafe { Component::deserialize(engine, &bytes) } {
                    Ok(component) => return Ok(component),
                    Err(e) => {
                        tracing::debug!("ignoring unusable cache entry {}: {e:#}", path.display())
                    }
                }
            }
        }
        let compiled =
            engine
                .precompile_component(wasm)
                .map_err(|e| PluginError::NotAComponent {
                    plugin: plugin.to_string(),
                    reason: format!("{e:#}"),
                })?;
        if let Some(path) = &path {
            store_atomically(path, &compiled);
        }
        // SAFETY: `compiled` was produced just now by this engine.
        unsafe { Component::deserialize(engine, &compiled) }
            .map_err(|e| PluginError::Engine(format!("{e:#}")))
    }
}

fn store_atomically(path: &Path, bytes: &[u8]) {
    let Some(dir) = path.parent() else { return };
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let result = std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::write(&tmp, bytes))
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        tracing::debug!("could not store compiled plugin in {}: {e}", dir.display());
    }
}

/// Tells a core module, or something that is not wasm at all, from a component.
fn check_header(plugin: &str, wasm: &[u8]) -> Result<(), PluginError> {
    let not = |reason: &str| {
        Err(PluginError::NotAComponent {
            plugin: plugin.to_string(),
            reason: reason.to_string(),
        })
    };
    match wasm.get(..8) {
        Some([0, b'a', b's', b'm', 1, 0, 0, 0]) => not(
            "it is a core WebAssembly module; build with `--target wasm32-wasip2` (or wrap it with `wasm-tools component new`)",
        ),
        // Component binaries: a version then layer 1.
        Some([0, b'a', b's', b'm', _, _, 1, 0]) => Ok(()),
        _ if wasm.starts_with(b"(component") || wasm.starts_with(b"(module") => Ok(()),
        _ => not("it does not start with the WebAssembly magic bytes"),
    }
}

/// Checks that `component` exports `world`'s interface at this API version. A
/// component built for another version is refused as such (with how to rebuild it)
/// before its world is considered.
pub fn check_world(
    engine: &Engine,
    plugin: &str,
    component: &Component,
    world: World,
) -> Result<(), PluginError> {
    let exports: Vec<String> = component
        .component_type()
        .exports(engine)
        .filter(|(_, item)| matches!(item.ty, ComponentItem::ComponentInstance(_)))
        .map(|(name, _)| name.to_string())
        .collect();
    // (interface, version) of every `ozone:strategy/<interface>@<version>` export.
    let strategies: Vec<(&str, &str)> = exports
        .iter()
        .filter_map(|e| e.strip_prefix("ozone:strategy/")?.split_once('@'))
        .collect();
    let speaks = |w: World| strategies.contains(&(w.interface(), API_VERSION));
    if speaks(world) {
        return Ok(());
    }
    if let Some((_, other)) = strategies.iter().find(|(_, v)| *v != API_VERSION) {
        return Err(PluginError::WrongApiVersion {
            plugin: plugin.to_string(),
            found: other.to_string(),
            expected: API_VERSION,
        });
    }
    match World::ALL.into_iter().find(|w| speaks(*w)) {
        Some(other) => Err(PluginError::WrongWorld {
            plugin: plugin.to_string(),
            found: other.name(),
            expected: world.name(),
        }),
        None => Err(PluginError::NotAStrategy {
            plugin: plugin.to_string(),
            exports: if exports.is_empty() {
                "none".into()
            } else {
                exports.join(", ")
            },
        }),
    }
}
