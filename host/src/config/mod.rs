//! Configuration: the `o3_ai_config.yaml` layout, defaults, overrides and provenance.
//!
//! [`load`] finds the file (`--config FILE`, else `./ozone.yaml`, else
//! `<user config dir>/ozone/ozone.yaml`, else built-in defaults), rejects wrong types and
//! out-of-range values with file, line and column, and warns about unknown keys. The
//! result, a [`LoadedConfig`], remembers where every value came from so `ozone config show`
//! can tell, and takes command-line overrides with [`LoadedConfig::set_override`].

mod convert;
mod error;
mod locate;
mod prescan;
mod provenance;
mod schema;
mod slo;
mod validate;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

pub use convert::plugin_name;
pub use error::ConfigError;
pub use locate::{KeyIndex, Position};
pub use provenance::{ConfigEntry, Provenance, Usage};
pub use schema::{
    BalancedCategory, BatchAdaptation, ConcurrencyProgression, Config, ConfigurationLearning,
    FastResponseCategory, HardwareMonitoring, HardwareProfiles, LearningSystem, MaxContextCategory,
    OzoneSettings, PeakDetection, PresetCategories, ResourceHeadroom, SafetyThresholds,
    SearchStrategy, StatisticalValidation, Testing, DEFAULT_MAX_CONCURRENCY, INFORMATIONAL_KEYS,
    PASSTHROUGH_SECTIONS, UNUSED_SECTIONS,
};
pub use slo::{parse_slo, slo_text};

/// Name of the config file looked for in the working directory and the user config dir.
pub const FILE_NAME: &str = "ozone.yaml";

/// The effective configuration with where it came from.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    pub config: Config,
    /// The file read; `None` when only built-in defaults apply.
    pub source: Option<PathBuf>,
    /// Unknown keys, and `plugin_settings` sections no configured plugin reads, each
    /// naming its key path and position.
    pub warnings: Vec<String>,
    /// The unknown-key part of `warnings`.
    unknown_keys: Vec<String>,
    /// `ozone.plugin_settings` sections of the file, by plugin name, with their position.
    plugin_sections: BTreeMap<String, Position>,
    /// Leaf key paths written in the file.
    file_keys: BTreeSet<String>,
    /// Leaf key paths set from the command line, with the flag that set them.
    overrides: BTreeMap<String, String>,
}

impl LoadedConfig {
    /// Built-in defaults only.
    pub fn defaults() -> Self {
        Self {
            config: Config::default(),
            source: None,
            warnings: Vec::new(),
            unknown_keys: Vec::new(),
            plugin_sections: BTreeMap::new(),
            file_keys: BTreeSet::new(),
            overrides: BTreeMap::new(),
        }
    }

    /// Sets `path` (dotted, e.g. `ozone.min_context`) from command-line `flag`. The value
    /// must have the key's type and keep the whole configuration in range.
    ///
    /// ```
    /// let mut loaded = ozone::config::LoadedConfig::defaults();
    /// loaded.set_override("ozone.min_context", 4096, "--min-context").unwrap();
    /// assert_eq!(loaded.config.ozone.min_context, 4096);
    /// ```
    pub fn set_override(
        &mut self,
        path: &str,
        value: impl serde::Serialize,
        flag: &str,
    ) -> Result<(), ConfigError> {
        let bad = |message: String| ConfigError::BadOverride {
            flag: flag.to_string(),
            message,
        };
        let value = serde_json::to_value(value).map_err(|e| bad(e.to_string()))?;
        let mut tree = serde_json::to_value(&self.config).map_err(|e| bad(e.to_string()))?;
        let slot = path
            .split('.')
            .try_fold(&mut tree, |node, key| node.get_mut(key))
            .ok_or_else(|| bad(format!("no configuration key `{path}`")))?;
        *slot = value;
        let config: Config =
            serde_json::from_value(tree).map_err(|e| bad(format!("{path}: {e}")))?;
        if let Some(problem) = validate::check(&config).into_iter().next() {
            return Err(bad(format!("{}: {}", problem.keys[0], problem.message)));
        }
        self.config = config;
        self.overrides.insert(path.to_string(), flag.to_string());
        // A strategy named on the command line may be the one a section is for.
        self.refresh_warnings();
        Ok(())
    }

    fn refresh_warnings(&mut self) {
        let oz = &self.config.ozone;
        let context = plugin_name(&oz.context_strategy);
        let batch = plugin_name(&oz.batch_strategy);
        let concurrency = plugin_name(&oz.concurrency_strategy);
        let variant = plugin_name(&oz.variant_strategy);
        let offload = plugin_name(&oz.offload_strategy);
        let file = self
            .source
            .as_deref()
            .map_or_else(String::new, |p| p.display().to_string());
        let unread = self
            .plugin_sections
            .iter()
            .filter(|(name, _)| {
                ![&context, &batch, &concurrency, &variant, &offload].contains(name)
            })
            .map(|(name, at)| {
                format!(
                    "{file}:{}:{}: `ozone.plugin_settings.{name}` ignored: no configured plugin \
                     is named {name} (context: {context}, batch: {batch}, concurrency: \
                     {concurrency}, variant: {variant})",
                    at.line, at.column
                )
            });
        self.warnings = self.unknown_keys.iter().cloned().chain(unread).collect();
    }

    /// Where the value at a leaf key path came from.
    pub fn provenance(&self, path: &str) -> Provenance {
        if let Some(flag) = self.overrides.get(path) {
            return Provenance::Flag(flag.clone());
        }
        match &self.source {
            Some(file) if self.file_keys.contains(path) => Provenance::File(file.clone()),
            _ => Provenance::Default,
        }
    }

    /// Every leaf value of the effective configuration with its provenance and whether
    /// Ozone acts on it, sorted by key path.
    pub fn entries(&self) -> Vec<ConfigEntry> {
        provenance::entries(self)
    }
}

/// Loads the configuration: `explicit` (`--config FILE`) if given, else the first of
/// [`search_paths`] that exists, else built-in defaults.
pub fn load(explicit: Option<&Path>) -> Result<LoadedConfig, ConfigError> {
    load_searching(explicit, &search_paths())
}

/// Like [`load`] with an explicit list of places to look (tests, embedding).
pub fn load_searching(
    explicit: Option<&Path>,
    candidates: &[PathBuf],
) -> Result<LoadedConfig, ConfigError> {
    if let Some(path) = explicit {
        return load_file(path);
    }
    match candidates.iter().find(|p| p.is_file()) {
        Some(path) => load_file(path),
        None => Ok(LoadedConfig::defaults()),
    }
}

/// Where a config file is looked for when `--config` is not given, in order.
pub fn search_paths() -> Vec<PathBuf> {
    let mut paths = vec![PathBuf::from(FILE_NAME)];
    if let Some(dir) = dirs::config_dir() {
        paths.push(dir.join("ozone").join(FILE_NAME));
    }
    paths
}

/// Reads and checks one config file.
pub fn load_file(path: &Path) -> Result<LoadedConfig, ConfigError> {
    use std::io::Read;
    let read_error = |source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|file| {
            file.take(prescan::MAX_CONFIG_BYTES + 1)
                .read_to_string(&mut text)
        })
        .map_err(read_error)?;
    parse(&text, path)
}

/// Parses config `text`; `path` names it in errors and provenance.
pub fn parse(text: &str, path: &Path) -> Result<LoadedConfig, ConfigError> {
    if text.len() as u64 > prescan::MAX_CONFIG_BYTES {
        return Err(ConfigError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    if let Some(at) = prescan::too_deep(text) {
        return Err(ConfigError::TooDeep {
            path: path.to_path_buf(),
            line: at.line,
            column: at.column,
        });
    }
    let syntax = |e: serde_yaml::Error| match e.location() {
        Some(loc) => ConfigError::Syntax {
            path: path.to_path_buf(),
            line: loc.line(),
            column: loc.column(),
            message: strip_location(&e.to_string()),
        },
        None => ConfigError::Unplaced {
            path: path.to_path_buf(),
            message: e.to_string(),
        },
    };
    let tree: serde_yaml::Value = serde_yaml::from_str(text).map_err(syntax)?;
    let mut config: Config = if tree.is_null() {
        Config::default()
    } else {
        serde_yaml::from_str(text).map_err(syntax)?
    };
    config.normalise_unused_sections();

    let index = KeyIndex::scan(text);
    if let Some(problem) = validate::check(&config).into_iter().next() {
        let at = problem
            .keys
            .iter()
            .find_map(|k| index.get(k))
            .or_else(|| index.find(problem.keys[0]))
            .unwrap_or(Position { line: 1, column: 1 });
        return Err(ConfigError::OutOfRange {
            path: path.to_path_buf(),
            line: at.line,
            column: at.column,
            key: problem.keys[0].to_string(),
            message: problem.message,
        });
    }

    let known = serde_json::to_value(Config::default()).unwrap_or_default();
    let mut unknown = Vec::new();
    provenance::unknown_keys(&tree, &known, "", &mut unknown);
    let unknown_keys = unknown
        .into_iter()
        .map(|key| {
            let at = index.find(&key).unwrap_or(Position { line: 1, column: 1 });
            format!(
                "{}:{}:{}: unknown key `{key}` ignored",
                path.display(),
                at.line,
                at.column
            )
        })
        .collect();

    let plugin_sections = config
        .ozone
        .plugin_settings
        .keys()
        .map(|name| {
            let key = format!("ozone.plugin_settings.{name}");
            let at = index.find(&key).unwrap_or(Position { line: 1, column: 1 });
            (name.clone(), at)
        })
        .collect();
    let mut file_keys = BTreeSet::new();
    provenance::leaf_paths(&tree, "", &mut file_keys);
    let mut loaded = LoadedConfig {
        config,
        source: Some(path.to_path_buf()),
        warnings: Vec::new(),
        unknown_keys,
        plugin_sections,
        file_keys,
        overrides: BTreeMap::new(),
    };
    loaded.refresh_warnings();
    Ok(loaded)
}

/// serde_yaml writes positions into its messages ("… at line L column C"); the position
/// is reported separately, so every such phrase is dropped.
fn strip_location(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(i) = rest.find(" at line ") {
        let after = &rest[i + " at line ".len()..];
        let mut words = after.splitn(3, ' ');
        let line_ok = words.next().is_some_and(|w| w.parse::<usize>().is_ok());
        let column_word = words.next() == Some("column");
        let tail = words.next().unwrap_or("");
        let digits = tail.len() - tail.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if line_ok && column_word && digits > 0 {
            out.push_str(&rest[..i]);
            rest = &tail[digits..];
        } else {
            out.push_str(&rest[..i + 1]);
            rest = &rest[i + 1..];
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests;
