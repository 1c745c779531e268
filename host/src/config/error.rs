use std::path::PathBuf;

/// Why a configuration could not be used. Every variant names the file or flag at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Malformed YAML or a value of the wrong type.
    #[error("{}:{line}:{column}: {message}", path.display())]
    Syntax {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error(
        "{} is larger than {} KiB: not an Ozone config file",
        path.display(),
        super::prescan::MAX_CONFIG_BYTES >> 10
    )]
    TooLarge { path: PathBuf },
    #[error(
        "{}:{line}:{column}: nested more than {} levels deep; Ozone's settings nest five",
        path.display(),
        super::prescan::MAX_NESTING
    )]
    TooDeep {
        path: PathBuf,
        line: usize,
        column: usize,
    },
    /// Malformed YAML that serde_yaml could not place.
    #[error("{}: {message}", path.display())]
    Unplaced { path: PathBuf, message: String },
    /// A well-typed value outside its allowed range.
    #[error("{}:{line}:{column}: {key}: {message}", path.display())]
    OutOfRange {
        path: PathBuf,
        line: usize,
        column: usize,
        key: String,
        message: String,
    },
    /// A command-line override that does not fit the configuration.
    #[error("{flag}: {message}")]
    BadOverride { flag: String, message: String },
}

impl ConfigError {
    /// 1-based (line, column) of the fault in the file, when it has one.
    pub fn position(&self) -> Option<(usize, usize)> {
        match self {
            ConfigError::Syntax { line, column, .. }
            | ConfigError::TooDeep { line, column, .. }
            | ConfigError::OutOfRange { line, column, .. } => Some((*line, *column)),
            _ => None,
        }
    }
}
