//! The JSONL trial log: appended one event a line, each line written with a single
//! `write` so a crash leaves at most the last line torn; read back tolerating that.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use super::files::{file_stem, timestamp};
use super::{LogEvent, ReportError};

/// An open trial log.
#[derive(Debug)]
pub struct RunLog {
    path: PathBuf,
    file: File,
}

/// What [`read_log_detailed`] found.
#[derive(Debug, Clone, PartialEq)]
pub struct LogContents {
    pub events: Vec<LogEvent>,
    /// The last line, when it was cut short (crash mid-write) and so was skipped.
    pub torn_tail: Option<String>,
    /// Byte length of the complete lines: where appending continues.
    pub valid_len: u64,
}

/// `<out_dir>/logs/<model>_<ts>.jsonl`.
pub fn log_path(out_dir: &Path, model_name: &str, started_at: DateTime<Utc>) -> PathBuf {
    out_dir.join("logs").join(format!(
        "{}_{}.jsonl",
        file_stem(model_name),
        timestamp(started_at)
    ))
}

impl RunLog {
    /// Creates `<out_dir>/logs/<model>_<ts>.jsonl` (and its folder); an existing file of
    /// that name is an error, never overwritten.
    pub fn create(
        out_dir: &Path,
        model_name: &str,
        started_at: DateTime<Utc>,
    ) -> Result<Self, ReportError> {
        Self::create_at(&log_path(out_dir, model_name, started_at))
    }

    /// Creates a new log at exactly `path`.
    pub fn create_at(path: &Path) -> Result<Self, ReportError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| ReportError::io(dir, e))?;
        }
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|e| ReportError::io(path, e))?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
        })
    }

    /// Opens an existing log to continue it (`--resume`). A torn last line is cut off so
    /// the next event starts on a clean line. Returns the events already in the log.
    pub fn open_append(path: &Path) -> Result<(Self, Vec<LogEvent>), ReportError> {
        let contents = read_log_detailed(path)?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| ReportError::io(path, e))?;
        file.set_len(contents.valid_len)
            .map_err(|e| ReportError::io(path, e))?;
        // A complete last line written without its newline still needs one.
        if contents.valid_len > 0 {
            let mut last = [0u8];
            file.seek(SeekFrom::Start(contents.valid_len - 1))
                .and_then(|_| file.read_exact(&mut last))
                .map_err(|e| ReportError::io(path, e))?;
            if last[0] != b'\n' {
                file.write_all(b"\n")
                    .map_err(|e| ReportError::io(path, e))?;
            }
        }
        file.seek(SeekFrom::End(0))
            .map_err(|e| ReportError::io(path, e))?;
        Ok((
            Self {
                path: path.to_path_buf(),
                file,
            },
            contents.events,
        ))
    }

    /// Appends one event as one line and flushes it to the operating system.
    pub fn append(&mut self, event: &LogEvent) -> Result<(), ReportError> {
        let mut line = serde_json::to_string(event).map_err(|e| ReportError::Encode {
            path: self.path.clone(),
            message: e.to_string(),
        })?;
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .and_then(|()| self.file.flush())
            .map_err(|e| ReportError::io(&self.path, e))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Reads every event of a log; a torn last line is skipped (see [`read_log_detailed`]).
pub fn read_log(path: &Path) -> Result<Vec<LogEvent>, ReportError> {
    Ok(read_log_detailed(path)?.events)
}

/// Reads a log. A last line that does not parse and has no newline is a write cut short
/// by a crash: it is reported in `torn_tail` and skipped. Any other bad line is an error
/// naming its line number.
pub fn read_log_detailed(path: &Path) -> Result<LogContents, ReportError> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(|e| ReportError::io(path, e))?;
    let mut events = Vec::new();
    let mut offset = 0usize;
    let mut line_no = 0usize;
    while offset < bytes.len() {
        line_no += 1;
        let end = bytes[offset..]
            .iter()
            .position(|&b| b == b'\n')
            .map(|i| offset + i);
        let (line, next) = match end {
            Some(end) => (&bytes[offset..end], end + 1),
            None => (&bytes[offset..], bytes.len()),
        };
        if line.iter().all(u8::is_ascii_whitespace) {
            offset = next;
            continue;
        }
        match serde_json::from_slice::<LogEvent>(line) {
            Ok(event) => events.push(event),
            Err(_) if end.is_none() => {
                return Ok(LogContents {
                    events,
                    torn_tail: Some(String::from_utf8_lossy(line).into_owned()),
                    valid_len: offset as u64,
                });
            }
            Err(e) => {
                return Err(ReportError::BadLine {
                    path: path.to_path_buf(),
                    line: line_no,
                    message: e.to_string(),
                })
            }
        }
        offset = next;
    }
    Ok(LogContents {
        events,
        torn_tail: None,
        valid_len: bytes.len() as u64,
    })
}
