//! Every output file: JSONL trial log, summary, defaults YAML, env JSON, deploy files, HTML.
//!
//! Layout under the output directory (default `./ozone_results`):
//! `logs/<model>_<ts>.jsonl` (written as the run goes, [`RunLog`]),
//! `summaries/<model>_<ts>.json`, `defaults/<model>.yaml`, `env/env_<ts>.json`,
//! `deploy/<model>.Modelfile`, `deploy/<model>.llama-server.sh`,
//! `report/<model>_<ts>.html` (all by [`write_outputs`]).

mod bounds;
mod charts;
mod concurrency;
mod escape;
mod events;
mod files;
mod frontier;
mod html;
mod log;
mod offload;
mod summary;
mod svg;
mod text;

#[cfg(test)]
pub(crate) mod tests;

use std::path::{Path, PathBuf};

pub use bounds::{describe, reason_words};
pub use concurrency::{server_note, ConcurrencySummary, Level};
pub use escape::escape;
pub use events::{server_binary_in, LogEvent, RunFinished, RunStatus, LOG_VERSION};
pub use files::{
    file_stem, shell_quote, timestamp, write_file, write_outputs, write_run_outputs, OutputPaths,
};
pub use frontier::{
    frontier_cells, frontier_rows, frontier_table, outcomes_in, variant_line, variant_words,
    FrontierRow,
};
pub use html::{render_html, render_summary_html, time_bound_note, STYLE};
pub use log::{log_path, read_log, read_log_detailed, LogContents, RunLog};
pub use offload::{row_words, OffloadRow, OffloadSummary};
pub use summary::{PhaseTiming, RunSummary, Timings, TrialInProgress};
pub use svg::{Chart, Mark, Point, Series};
pub use text::presets_table;

/// Default output directory.
pub const DEFAULT_OUTPUT_DIR: &str = "ozone_results";

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}:{line}: not a trial-log event: {message}", path.display())]
    BadLine {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("cannot encode {}: {message}", path.display())]
    Encode { path: PathBuf, message: String },
    #[error("cannot write \"{word}\" into a shell script: it holds a NUL byte")]
    Unquotable { word: String },
    #[error(
        "{} is in use by another ozone: a run (or a --resume of it) is going on; wait for it \
         to end, or stop it first",
        path.display()
    )]
    InUse { path: PathBuf },
    #[error(
        "{}: log version {version}: written by a newer ozone (this one reads version {}); \
         use that ozone to read or resume it",
        path.display(),
        LOG_VERSION
    )]
    NewerLog { path: PathBuf, version: u32 },
    #[error("the log has no run_started event: not an ozone trial log")]
    NoRunStarted,
}

impl ReportError {
    fn io(path: &Path, source: std::io::Error) -> Self {
        ReportError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
