//! [`PluginHost`]: loads plugins (built-in or from a file) into sandboxed instances.

use std::borrow::Cow;
use std::path::PathBuf;
use std::str::FromStr;

use ozone_sdk::{
    BatchBounds, ConcurrencyBounds, ContextLimits, HardwareFacts, ModelFacts, OffloadBounds, Slo,
    VariantSpace,
};
use wasmtime::component::{Component, Linker};
use wasmtime::Engine;

use super::bindings::{self, wit};
use super::engine::{self, ComponentCache};
use super::sandbox::{self, StoreState};
use super::strategy::{
    BatchScaler, ConcurrencySearch, ContextSearch, OffloadSearch, Sandboxed, VariantSearch,
};
use super::{builtin, PluginError, SandboxLimits};

/// The five kinds of strategy (WIT worlds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum World {
    Context,
    Batch,
    Concurrency,
    Variant,
    Offload,
}

impl World {
    pub const ALL: [World; 5] = [
        World::Context,
        World::Batch,
        World::Concurrency,
        World::Variant,
        World::Offload,
    ];

    /// The WIT world name.
    pub fn name(self) -> &'static str {
        match self {
            World::Context => "context-strategy",
            World::Batch => "batch-strategy",
            World::Concurrency => "concurrency-strategy",
            World::Variant => "variant-strategy",
            World::Offload => "offload-strategy",
        }
    }

    /// The exported interface (`ozone:strategy/<interface>@version`).
    pub fn interface(self) -> &'static str {
        match self {
            World::Context => "context",
            World::Batch => "batch",
            World::Concurrency => "concurrency",
            World::Variant => "variants",
            World::Offload => "offload",
        }
    }
}

impl std::fmt::Display for World {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.name())
    }
}

/// Which plugin to load: a built-in by name, or a component file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginRef {
    Builtin(String),
    File(PathBuf),
}

impl FromStr for PluginRef {
    type Err = PluginError;

    /// A built-in's name (`binary-search`, …), or a path to a `.wasm` file.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if builtin::find(s).is_some() {
            Ok(PluginRef::Builtin(s.to_string()))
        } else if s.ends_with(".wasm") || s.contains(std::path::MAIN_SEPARATOR) {
            Ok(PluginRef::File(PathBuf::from(s)))
        } else {
            Err(PluginError::UnknownBuiltin(s.to_string()))
        }
    }
}

impl std::fmt::Display for PluginRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PluginRef::Builtin(name) => f.write_str(name),
            PluginRef::File(path) => write!(f, "{}", path.display()),
        }
    }
}

/// Loads plugins into sandboxed instances. Build one per run; it holds the engine and
/// the compiled-component cache. Plugin calls are synchronous, short (metered by fuel)
/// and never block on I/O or an async runtime (no WASI is linked), so they may be
/// made from inside a tokio runtime, including from a worker thread.
pub struct PluginHost {
    engine: Engine,
    limits: SandboxLimits,
    cache: ComponentCache,
    context_linker: Linker<StoreState>,
    batch_linker: Linker<StoreState>,
    concurrency_linker: Linker<StoreState>,
    variant_linker: Linker<StoreState>,
    offload_linker: Linker<StoreState>,
}

impl PluginHost {
    /// `cache_dir`: where compiled components are kept (`None` disables the cache; see
    /// [`PluginHost::default_cache_dir`]).
    pub fn new(limits: SandboxLimits, cache_dir: Option<PathBuf>) -> Result<Self, PluginError> {
        let engine = engine::engine(&limits)?;
        let cache = ComponentCache::new(&engine, cache_dir);
        Ok(Self {
            context_linker: sandbox::linker(&engine, World::Context)?,
            batch_linker: sandbox::linker(&engine, World::Batch)?,
            concurrency_linker: sandbox::linker(&engine, World::Concurrency)?,
            variant_linker: sandbox::linker(&engine, World::Variant)?,
            offload_linker: sandbox::linker(&engine, World::Offload)?,
            engine,
            limits,
            cache,
        })
    }

    /// `<user cache dir>/ozone/components`, when the platform has a cache dir.
    pub fn default_cache_dir() -> Option<PathBuf> {
        engine::default_cache_dir()
    }

    pub fn limits(&self) -> &SandboxLimits {
        &self.limits
    }

    /// Loads a context-search plugin and builds its search from the settings (the
    /// plugin's config section as JSON text), the machine, the model (at the variant it
    /// searches) and what bounds a context besides memory. Its proposals must lie within
    /// `model.bounds`.
    pub fn load_context(
        &self,
        plugin: &PluginRef,
        settings_json: &str,
        hw: &HardwareFacts,
        model: &ModelFacts,
        limits: &ContextLimits,
    ) -> Result<ContextSearch, PluginError> {
        let name = plugin.to_string();
        let component = self.component(plugin, World::Context)?;
        let (mut store, linker) = self.prepare(&name, &component, &self.context_linker)?;
        let bindings =
            bindings::context::ContextStrategy::instantiate(&mut store, &component, &linker)
                .map_err(|e| self.instantiate_failure(&name, e, &store))?;
        let (hw, model_facts) = (wit::HardwareFacts::from(hw), wit::ModelFacts::from(model));
        sandbox::arm(&mut store, &self.limits)?;
        let created = bindings
            .ozone_strategy_context()
            .context_search()
            .call_create(
                &mut store,
                settings_json,
                hw,
                &model_facts,
                &wit::ContextLimits::from(limits),
            );
        let resource = finish_create(created, &store, &self.limits, &name)?;
        Ok(ContextSearch {
            inner: Sandboxed::new(name, self.limits.clone(), store, bindings, resource),
            bounds: model.bounds,
        })
    }

    /// Loads a batch-scaling plugin. Its proposals must lie within `bounds` (handed to
    /// it at create: `1..=batch_adaptation.max_batch`, starting at the initial batch).
    pub fn load_batch(
        &self,
        plugin: &PluginRef,
        settings_json: &str,
        hw: &HardwareFacts,
        model: &ModelFacts,
        bounds: &BatchBounds,
    ) -> Result<BatchScaler, PluginError> {
        let name = plugin.to_string();
        let component = self.component(plugin, World::Batch)?;
        let (mut store, linker) = self.prepare(&name, &component, &self.batch_linker)?;
        let bindings = bindings::batch::BatchStrategy::instantiate(&mut store, &component, &linker)
            .map_err(|e| self.instantiate_failure(&name, e, &store))?;
        let (hw, model_facts) = (wit::HardwareFacts::from(hw), wit::ModelFacts::from(model));
        sandbox::arm(&mut store, &self.limits)?;
        let created = bindings.ozone_strategy_batch().batch_scaler().call_create(
            &mut store,
            settings_json,
            hw,
            &model_facts,
            wit::BatchBounds::from(bounds),
        );
        let resource = finish_create(created, &store, &self.limits, &name)?;
        Ok(BatchScaler {
            inner: Sandboxed::new(name, self.limits.clone(), store, bindings, resource),
            bounds: *bounds,
        })
    }

    /// Loads a concurrency-search plugin with the user's objective (`slo`, empty when
    /// none). Its proposals must lie within `bounds`.
    pub fn load_concurrency(
        &self,
        plugin: &PluginRef,
        settings_json: &str,
        hw: &HardwareFacts,
        model: &ModelFacts,
        bounds: &ConcurrencyBounds,
        slo: &Slo,
    ) -> Result<ConcurrencySearch, PluginError> {
        let name = plugin.to_string();
        let component = self.component(plugin, World::Concurrency)?;
        let (mut store, linker) = self.prepare(&name, &component, &self.concurrency_linker)?;
        let bindings = bindings::concurrency::ConcurrencyStrategy::instantiate(
            &mut store, &component, &linker,
        )
        .map_err(|e| self.instantiate_failure(&name, e, &store))?;
        let (hw, model_facts) = (wit::HardwareFacts::from(hw), wit::ModelFacts::from(model));
        sandbox::arm(&mut store, &self.limits)?;
        let created = bindings
            .ozone_strategy_concurrency()
            .concurrency_search()
            .call_create(
                &mut store,
                settings_json,
                hw,
                &model_facts,
                wit::ConcurrencyBounds::from(bounds),
                &wit::Slo::from(slo),
            );
        let resource = finish_create(created, &store, &self.limits, &name)?;
        Ok(ConcurrencySearch {
            inner: Sandboxed::new(name, self.limits.clone(), store, bindings, resource),
            bounds: *bounds,
        })
    }

    /// Loads a variant-search plugin. Its proposals must be among `space.candidates`.
    pub fn load_variant(
        &self,
        plugin: &PluginRef,
        settings_json: &str,
        hw: &HardwareFacts,
        model: &ModelFacts,
        space: &VariantSpace,
    ) -> Result<VariantSearch, PluginError> {
        let name = plugin.to_string();
        let component = self.component(plugin, World::Variant)?;
        let (mut store, linker) = self.prepare(&name, &component, &self.variant_linker)?;
        let bindings =
            bindings::variants::VariantStrategy::instantiate(&mut store, &component, &linker)
                .map_err(|e| self.instantiate_failure(&name, e, &store))?;
        let (hw, model_facts) = (wit::HardwareFacts::from(hw), wit::ModelFacts::from(model));
        sandbox::arm(&mut store, &self.limits)?;
        let created = bindings
            .ozone_strategy_variants()
            .variant_search()
            .call_create(
                &mut store,
                settings_json,
                hw,
                &model_facts,
                &wit::VariantSpace::from(space),
            );
        let resource = finish_create(created, &store, &self.limits, &name)?;
        Ok(VariantSearch {
            inner: Sandboxed::new(name, self.limits.clone(), store, bindings, resource),
            space: space.clone(),
            proposed: Vec::new(),
            pending: None,
        })
    }

    /// Loads an offload-search plugin. Its proposals must lie within `bounds`.
    pub fn load_offload(
        &self,
        plugin: &PluginRef,
        settings_json: &str,
        hw: &HardwareFacts,
        model: &ModelFacts,
        bounds: &OffloadBounds,
    ) -> Result<OffloadSearch, PluginError> {
        let name = plugin.to_string();
        let component = self.component(plugin, World::Offload)?;
        let (mut store, linker) = self.prepare(&name, &component, &self.offload_linker)?;
        let bindings =
            bindings::offload::OffloadStrategy::instantiate(&mut store, &component, &linker)
                .map_err(|e| self.instantiate_failure(&name, e, &store))?;
        let (hw, model_facts) = (wit::HardwareFacts::from(hw), wit::ModelFacts::from(model));
        sandbox::arm(&mut store, &self.limits)?;
        let created = bindings
            .ozone_strategy_offload()
            .offload_search()
            .call_create(
                &mut store,
                settings_json,
                hw,
                &model_facts,
                wit::OffloadBounds::from(bounds),
            );
        let resource = finish_create(created, &store, &self.limits, &name)?;
        Ok(OffloadSearch {
            inner: Sandboxed::new(name, self.limits.clone(), store, bindings, resource),
            bounds: *bounds,
        })
    }

    /// Which world a plugin implements (checks it is a component at this API version).
    pub fn inspect(&self, plugin: &PluginRef) -> Result<World, PluginError> {
        let name = plugin.to_string();
        let wasm = read(plugin)?;
        let component = self.cache.load(&self.engine, &name, &wasm)?;
        // The world it implements; else the most telling error (a wrong version, say,
        // rather than "wrong world" for the other world).
        let mut error = None;
        for world in World::ALL {
            match engine::check_world(&self.engine, &name, &component, world) {
                Ok(()) => return Ok(world),
                Err(PluginError::WrongWorld { .. }) => {}
                Err(e) => error = Some(e),
            }
        }
        Err(error.unwrap_or(PluginError::NotAStrategy {
            plugin: name,
            exports: "none".into(),
        }))
    }

    fn component(&self, plugin: &PluginRef, world: World) -> Result<Component, PluginError> {
        let name = plugin.to_string();
        let wasm = read(plugin)?;
        let component = self.cache.load(&self.engine, &name, &wasm)?;
        engine::check_world(&self.engine, &name, &component, world)?;
        Ok(component)
    }

    /// A trap or the memory cap while the component starts is the plugin's fault (named
    /// as such); anything else is a link or engine failure.
    fn instantiate_failure(
        &self,
        name: &str,
        error: wasmtime::Error,
        store: &wasmtime::Store<StoreState>,
    ) -> PluginError {
        if sandbox::is_violation(&error) {
            sandbox::classify(error, store, "instantiate", &self.limits)
        } else {
            instantiate_error(name, error)
        }
    }

    fn prepare(
        &self,
        name: &str,
        component: &Component,
        base: &Linker<StoreState>,
    ) -> Result<(wasmtime::Store<StoreState>, Linker<StoreState>), PluginError> {
        let mut linker = base.clone();
        linker
            .define_unknown_imports_as_traps(component)
            .map_err(|e| instantiate_error(name, e))?;
        let mut store = sandbox::new_store(&self.engine, name, &self.limits);
        // Instantiation runs the component's start code: give it a budget too.
        sandbox::arm(&mut store, &self.limits)?;
        Ok((store, linker))
    }
}

fn read(plugin: &PluginRef) -> Result<Cow<'static, [u8]>, PluginError> {
    match plugin {
        PluginRef::Builtin(name) => builtin::find(name)
            .map(|b| Cow::Borrowed(b.wasm))
            .ok_or_else(|| PluginError::UnknownBuiltin(name.clone())),
        PluginRef::File(path) => {
            std::fs::read(path)
                .map(Cow::Owned)
                .map_err(|source| PluginError::Read {
                    path: path.clone(),
                    source,
                })
        }
    }
}

fn instantiate_error(plugin: &str, error: wasmtime::Error) -> PluginError {
    PluginError::Instantiate {
        plugin: plugin.to_string(),
        message: format!("{error:#}"),
    }
}

fn finish_create(
    created: wasmtime::Result<Result<wasmtime::component::ResourceAny, String>>,
    store: &wasmtime::Store<StoreState>,
    limits: &SandboxLimits,
    plugin: &str,
) -> Result<wasmtime::component::ResourceAny, PluginError> {
    match created {
        Ok(Ok(resource)) => Ok(resource),
        Ok(Err(message)) => Err(PluginError::Rejected {
            plugin: plugin.to_string(),
            message,
        }),
        Err(error) => Err(sandbox::classify(error, store, "create", limits)),
    }
}
