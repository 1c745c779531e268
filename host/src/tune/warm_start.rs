//! The warm-start store: the limits a run found, remembered per (hardware fingerprint,
//! model digest, Ozone version) in `<user data dir>/ozone/learned.json`, so the next run
//! can hand them to the context plugin as a hint.
//!
//! Writes are atomic (a temporary file in the same folder, then a rename), so a crash
//! never leaves a half-written store.

use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::hardware::HardwareSnapshot;
use crate::record::Limits;

/// Limits remembered somewhere else than this machine's store: a fleet's results
/// directory (`crate::fleet`).
pub trait WarmStartSource: Send + Sync {
    /// The context to try first for `key` under `config`'s limits, and a note saying
    /// where it comes from; `None` when nothing comparable is known.
    fn context_hint(&self, key: &Key, config: &Config) -> Option<(u32, String)>;
}

/// Format version of `learned.json`.
const STORE_VERSION: u32 = 1;

/// What identifies a remembered result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Key {
    /// `HardwareSnapshot::fingerprint()`.
    pub hardware_fingerprint: String,
    /// sha256 of the GGUF file or Ollama's digest.
    pub model_digest: String,
    pub ozone_version: String,
}

/// The limits a run found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Learned {
    pub model_name: String,
    pub max_context: Option<u32>,
    pub best_batch: Option<u32>,
    pub max_concurrency: Option<u32>,
    pub recorded_at: DateTime<Utc>,
}

impl Key {
    /// The key of a run of this build of Ozone on `hardware` with the model of `digest`.
    pub fn new(hardware: &HardwareSnapshot, model_digest: &str) -> Self {
        Self {
            hardware_fingerprint: hardware.fingerprint(),
            model_digest: model_digest.to_string(),
            ozone_version: env!("CARGO_PKG_VERSION").to_string(),
        }
    }
}

impl Learned {
    /// What to remember of a run's limits, stamped now.
    pub fn from_limits(model_name: &str, limits: &Limits) -> Self {
        Self {
            model_name: model_name.to_string(),
            max_context: limits.max_context,
            best_batch: limits.best_batch,
            max_concurrency: limits.max_concurrency,
            recorded_at: Utc::now(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Entry {
    #[serde(flatten)]
    key: Key,
    learned: Learned,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct StoreFile {
    version: u32,
    entries: Vec<Entry>,
}

#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    #[error("warm-start store {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("warm-start store {} is not valid (delete it, or run with --fresh): {message}", path.display())]
    Corrupt { path: PathBuf, message: String },
    #[error("no user data directory to keep the warm-start store in")]
    NoDataDir,
}

/// The store at one path.
#[derive(Debug, Clone)]
pub struct WarmStartStore {
    path: PathBuf,
}

impl WarmStartStore {
    /// The store at `path` (tests, `--learned-store`).
    pub fn at(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// `<user data dir>/ozone/learned.json`.
    pub fn default_path() -> Result<PathBuf, MemoryError> {
        dirs::data_dir()
            .map(|d| d.join("ozone").join("learned.json"))
            .ok_or(MemoryError::NoDataDir)
    }

    /// The store at [`WarmStartStore::default_path`].
    pub fn open_default() -> Result<Self, MemoryError> {
        Self::default_path().map(Self::at)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The result remembered for `key`, if any and not older than `max_age`.
    pub fn lookup(
        &self,
        key: &Key,
        max_age: Option<chrono::Duration>,
    ) -> Result<Option<Learned>, MemoryError> {
        let now = Utc::now();
        Ok(self
            .read()?
            .entries
            .into_iter()
            .find(|e| e.key == *key)
            .map(|e| e.learned)
            .filter(|l| max_age.is_none_or(|age| now - l.recorded_at <= age)))
    }

    /// Remembers `learned` for `key`, replacing what was remembered for it.
    pub fn remember(&self, key: &Key, learned: Learned) -> Result<(), MemoryError> {
        let mut file = self.read()?;
        file.entries.retain(|e| e.key != *key);
        file.entries.push(Entry {
            key: key.clone(),
            learned,
        });
        self.write_atomically(&file)
    }

    fn read(&self) -> Result<StoreFile, MemoryError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(StoreFile {
                    version: STORE_VERSION,
                    entries: Vec::new(),
                })
            }
            Err(source) => {
                return Err(MemoryError::Io {
                    path: self.path.clone(),
                    source,
                })
            }
        };
        let file: StoreFile = serde_json::from_str(&text).map_err(|e| MemoryError::Corrupt {
            path: self.path.clone(),
            message: e.to_string(),
        })?;
        if file.version != STORE_VERSION {
            return Err(MemoryError::Corrupt {
                path: self.path.clone(),
                message: format!("format version {}, expected {STORE_VERSION}", file.version),
            });
        }
        Ok(file)
    }

    fn write_atomically(&self, file: &StoreFile) -> Result<(), MemoryError> {
        let io = |source| MemoryError::Io {
            path: self.path.clone(),
            source,
        };
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&dir).map_err(io)?;
        let text = serde_json::to_string_pretty(file).map_err(|e| MemoryError::Corrupt {
            path: self.path.clone(),
            message: e.to_string(),
        })?;
        let tmp = dir.join(format!(
            ".{}.{}.tmp",
            self.path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "learned.json".into()),
            std::process::id()
        ));
        let written = std::fs::File::create(&tmp)
            .and_then(|mut f| {
                f.write_all(text.as_bytes())?;
                f.write_all(b"\n")?;
                f.sync_all()
            })
            .and_then(|()| std::fs::rename(&tmp, &self.path));
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written.map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(version: &str) -> Key {
        Key {
            hardware_fingerprint: "AMD EPYC 7763 64-Core Processor|2c|8GiB".into(),
            model_digest: "sha256:5ab1d2c3".into(),
            ozone_version: version.into(),
        }
    }

    fn learned(ctx: u32, days_ago: i64) -> Learned {
        Learned {
            model_name: "qwen2.5-0.5b-instruct-q4_k_m".into(),
            max_context: Some(ctx),
            best_batch: Some(256),
            max_concurrency: Some(2),
            recorded_at: Utc::now() - chrono::Duration::days(days_ago),
        }
    }

    #[test]
    fn remembers_and_finds_by_exact_key() {
        let dir = tempfile::tempdir().unwrap();
        let store = WarmStartStore::at(dir.path().join("nested").join("learned.json"));
        assert_eq!(store.lookup(&key("0.1.0"), None).unwrap(), None);
        store.remember(&key("0.1.0"), learned(20480, 0)).unwrap();
        store.remember(&key("0.2.0"), learned(16384, 0)).unwrap();
        assert_eq!(
            store
                .lookup(&key("0.1.0"), None)
                .unwrap()
                .unwrap()
                .max_context,
            Some(20480)
        );
        // A new run replaces the old result for the same key.
        store.remember(&key("0.1.0"), learned(24576, 0)).unwrap();
        assert_eq!(
            store
                .lookup(&key("0.1.0"), None)
                .unwrap()
                .unwrap()
                .max_context,
            Some(24576)
        );
        assert_eq!(
            store
                .lookup(&key("0.2.0"), None)
                .unwrap()
                .unwrap()
                .max_context,
            Some(16384)
        );
        let mut other = key("0.1.0");
        other.hardware_fingerprint.push_str("|NVIDIA H100:80GiB");
        assert_eq!(store.lookup(&other, None).unwrap(), None);
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path().join("nested"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("learned.json")]);
    }

    #[test]
    fn key_and_learned_come_from_the_run() {
        let hw = crate::fixtures::hardware();
        let k = Key::new(&hw, "sha256:5ab1d2c3");
        assert_eq!(k.hardware_fingerprint, hw.fingerprint());
        assert_eq!(k.ozone_version, env!("CARGO_PKG_VERSION"));
        let limits = Limits {
            max_context: Some(20480),
            best_batch: Some(256),
            max_concurrency: Some(2),
            ..Limits::default()
        };
        let l = Learned::from_limits("m", &limits);
        assert_eq!(
            (l.max_context, l.best_batch, l.max_concurrency),
            (Some(20480), Some(256), Some(2))
        );
    }

    #[test]
    fn old_results_are_not_reused() {
        let dir = tempfile::tempdir().unwrap();
        let store = WarmStartStore::at(dir.path().join("learned.json"));
        store.remember(&key("0.1.0"), learned(20480, 10)).unwrap();
        let week = Some(chrono::Duration::days(7));
        assert_eq!(store.lookup(&key("0.1.0"), week).unwrap(), None);
        assert!(store.lookup(&key("0.1.0"), None).unwrap().is_some());
    }

    #[test]
    fn a_corrupt_store_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("learned.json");
        std::fs::write(&path, "{\"version\": 1, \"entries\": [").unwrap();
        let err = WarmStartStore::at(&path)
            .lookup(&key("0.1.0"), None)
            .unwrap_err();
        assert!(matches!(err, MemoryError::Corrupt { .. }));
        assert!(err.to_string().contains("learned.json"), "{err}");
    }
}
