//! Where each value came from, and which keys of a file Ozone does not know.

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde::Serialize;

use super::schema::{INFORMATIONAL_KEYS, PASSTHROUGH_SECTIONS, UNUSED_SECTIONS};
use super::LoadedConfig;

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "from", content = "at")]
pub enum Provenance {
    Default,
    File(PathBuf),
    /// A command-line flag, by name.
    Flag(String),
}

impl std::fmt::Display for Provenance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Provenance::Default => f.write_str("default"),
            Provenance::File(path) => write!(f, "{}", path.display()),
            Provenance::Flag(flag) => write!(f, "flag {flag}"),
        }
    }
}

/// Whether Ozone acts on a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "usage", content = "why")]
pub enum Usage {
    Used,
    /// Read and shown, not acted on (the reason says what Ozone does instead).
    Informational(&'static str),
    /// A section of the original layout accepted as it is and not acted on.
    NotUsed,
}

/// One leaf of the effective configuration.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConfigEntry {
    /// Dotted key path, e.g. `search_strategy.initial_context_probe`.
    pub path: String,
    pub value: serde_json::Value,
    pub provenance: Provenance,
    #[serde(flatten)]
    pub usage: Usage,
}

pub(super) fn entries(loaded: &LoadedConfig) -> Vec<ConfigEntry> {
    let tree = serde_json::to_value(&loaded.config).unwrap_or_default();
    let mut leaves = Vec::new();
    json_leaves(&tree, "", &mut leaves);
    leaves
        .into_iter()
        .map(|(path, value)| ConfigEntry {
            provenance: loaded.provenance(&path),
            usage: usage(&path),
            path,
            value,
        })
        .collect()
}

fn usage(path: &str) -> Usage {
    if UNUSED_SECTIONS.iter().any(|s| within(path, s)) {
        Usage::NotUsed
    } else if let Some((_, why)) = INFORMATIONAL_KEYS.iter().find(|(k, _)| *k == path) {
        Usage::Informational(why)
    } else {
        Usage::Used
    }
}

/// `path` is `section` or lies below it.
fn within(path: &str, section: &str) -> bool {
    path == section
        || path
            .strip_prefix(section)
            .is_some_and(|rest| rest.starts_with('.'))
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

fn yaml_key(key: &serde_yaml::Value) -> String {
    match key {
        serde_yaml::Value::String(s) => s.clone(),
        serde_yaml::Value::Number(n) => n.to_string(),
        serde_yaml::Value::Bool(b) => b.to_string(),
        other => format!("{other:?}"),
    }
}

fn json_leaves(
    value: &serde_json::Value,
    prefix: &str,
    out: &mut Vec<(String, serde_json::Value)>,
) {
    match value {
        serde_json::Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                json_leaves(v, &join(prefix, k), out);
            }
        }
        leaf => out.push((prefix.to_string(), leaf.clone())),
    }
}

/// Leaf key paths of a YAML tree (sequences and empty mappings are leaves).
pub(super) fn leaf_paths(value: &serde_yaml::Value, prefix: &str, out: &mut BTreeSet<String>) {
    match value {
        serde_yaml::Value::Mapping(map) if !map.is_empty() => {
            for (k, v) in map {
                leaf_paths(v, &join(prefix, &yaml_key(k)), out);
            }
        }
        _ if prefix.is_empty() => {}
        _ => {
            out.insert(prefix.to_string());
        }
    }
}

/// Key paths of `file` that the known layout (the defaults, serialised) does not have.
/// Unused and pass-through sections are not looked into.
pub(super) fn unknown_keys(
    file: &serde_yaml::Value,
    known: &serde_json::Value,
    prefix: &str,
    out: &mut Vec<String>,
) {
    let serde_yaml::Value::Mapping(map) = file else {
        return;
    };
    for (k, v) in map {
        let key = yaml_key(k);
        let path = join(prefix, &key);
        if UNUSED_SECTIONS
            .iter()
            .chain(PASSTHROUGH_SECTIONS)
            .any(|s| *s == path)
        {
            continue;
        }
        match known.get(&key) {
            None => out.push(path),
            Some(inner) if inner.is_object() => unknown_keys(v, inner, &path, out),
            Some(_) => {}
        }
    }
}
