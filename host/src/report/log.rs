//! The JSONL trial log: appended one event a line, each line written with a single
//! `write` so a crash leaves at most the last line torn; read back tolerating that.
//!
//! The run that writes a log holds an advisory lock on it (`flock`) until it ends, so a
//! second `--resume` of the same log, or a resume of a run still going, is refused
//! instead of interleaving two runs' lines.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use super::files::{file_stem, timestamp};
use super::{LogEvent, ReportError, LOG_VERSION};

/// Suffixes tried when a run of the same model started in the same second.
const NAME_TRIES: u32 = 100;

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
    /// Creates `<out_dir>/logs/<model>_<ts>.jsonl` (and its folder), locked for this run.
    /// An existing file is never overwritten: a run of the same model that started in
    /// the same second gets `<model>_<ts>_2.jsonl`, and so on. The log's name (without
    /// `.jsonl`) names the run's other files too.
    pub fn create(
        out_dir: &Path,
        model_name: &str,
        started_at: DateTime<Utc>,
    ) -> Result<Self, ReportError> {
        let first = log_path(out_dir, model_name, started_at);
        let mut path = first.clone();
        for n in 2..=NAME_TRIES + 1 {
            match Self::create_at(&path) {
                Err(ReportError::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::AlreadyExists && n <= NAME_TRIES =>
                {
                    let stem = first.file_stem().unwrap_or_default().to_string_lossy();
                    path = first.with_file_name(format!("{stem}_{n}.jsonl"));
                }
                other => return other,
            }
        }
        unreachable!("the last try returns")
    }

    /// Creates a new log at exactly `path`, locked for this run.
    pub fn create_at(path: &Path) -> Result<Self, ReportError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| ReportError::io(dir, e))?;
        }
        // Append mode: every line goes to the file's end, whoever else grew it.
        let file = OpenOptions::new()
            .append(true)
            .create_new(true)
            .open(path)
            .map_err(|e| ReportError::io(path, e))?;
        lock(&file, path)?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
        })
    }

    /// Opens an existing log to continue it (`--resume`), locked for this run. A torn
    /// last line is cut off so the next event starts on a clean line. Returns the events
    /// already in the log.
    pub fn open_append(path: &Path) -> Result<(Self, Vec<LogEvent>), ReportError> {
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(path)
            .map_err(|e| ReportError::io(path, e))?;
        // Before reading: what is read must be what no one else is writing.
        lock(&file, path)?;
        let contents = read_log_detailed(path)?;
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

/// The `log_version` of a `run_started` line, when it is newer than this Ozone reads.
fn newer_version(line: &[u8]) -> Option<u32> {
    #[derive(serde::Deserialize)]
    struct Head {
        event: String,
        log_version: u32,
    }
    let head: Head = serde_json::from_slice(line).ok()?;
    (head.event == "run_started" && head.log_version > LOG_VERSION).then_some(head.log_version)
}

/// Takes the log for this process; the lock goes with the file when it is closed (or
/// the process dies).
fn lock(file: &File, path: &Path) -> Result<(), ReportError> {
    match file.try_lock() {
        Ok(()) => Ok(()),
        Err(TryLockError::WouldBlock) => Err(ReportError::InUse {
            path: path.to_path_buf(),
        }),
        Err(TryLockError::Error(e)) => Err(ReportError::io(path, e)),
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
        if events.is_empty() {
            // A newer layout may not parse at all: its version is read on its own first.
            if let Some(version) = newer_version(line) {
                return Err(ReportError::NewerLog {
                    path: path.to_path_buf(),
                    version,
                });
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_started_in_the_same_second_get_their_own_log() {
        let dir = tempfile::tempdir().unwrap();
        let at = Utc::now();
        let first = RunLog::create(dir.path(), "m", at).unwrap();
        let second = RunLog::create(dir.path(), "m", at).unwrap();
        let stem = format!("m_{}", timestamp(at));
        assert_eq!(first.path(), dir.path().join(format!("logs/{stem}.jsonl")));
        assert_eq!(
            second.path(),
            dir.path().join(format!("logs/{stem}_2.jsonl"))
        );
    }

    #[test]
    fn a_log_is_held_by_one_run_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.jsonl");
        let running = RunLog::create_at(&path).unwrap();
        let err = RunLog::open_append(&path).unwrap_err();
        assert!(
            matches!(err, ReportError::InUse { .. }) && err.to_string().contains("run.jsonl"),
            "{err}"
        );
        // Readers are not kept out.
        assert!(read_log(&path).is_ok());
        drop(running);
        let (resumed, _) = RunLog::open_append(&path).unwrap();
        assert!(matches!(
            RunLog::open_append(&path),
            Err(ReportError::InUse { .. })
        ));
        drop(resumed);
    }

    #[test]
    fn a_log_from_a_newer_ozone_is_refused_by_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new.jsonl");
        std::fs::write(
            &path,
            "{\"event\":\"run_started\",\"log_version\":99,\"shape\":\"unknown to us\"}\n",
        )
        .unwrap();
        let err = read_log(&path).unwrap_err();
        assert!(
            err.to_string()
                .contains("log version 99: written by a newer ozone (this one reads version 1)"),
            "{err}"
        );
    }
}
