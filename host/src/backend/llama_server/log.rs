//! The server's log tail and what it says about a failure.

use std::collections::VecDeque;
use std::process::ExitStatus;
use std::sync::{Arc, Mutex};

use crate::backend::stream::looks_like_oom;
use crate::record::{FailureKind, TrialFailure};

/// Lines kept in memory; the trial record gets the last [`RECORD_LINES`].
const KEPT_LINES: usize = 400;
pub(crate) const RECORD_LINES: usize = 40;

/// The last lines of a server's stdout and stderr, shared with the reader tasks.
#[derive(Debug, Clone, Default)]
pub struct LogTail(Arc<Mutex<VecDeque<String>>>);

impl LogTail {
    pub fn push(&self, line: String) {
        let mut lines = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if lines.len() == KEPT_LINES {
            lines.pop_front();
        }
        lines.push_back(line);
    }

    /// The last `n` lines.
    pub fn last(&self, n: usize) -> Vec<String> {
        let lines = self.0.lock().unwrap_or_else(|p| p.into_inner());
        lines
            .iter()
            .skip(lines.len().saturating_sub(n))
            .cloned()
            .collect()
    }
}

/// Classifies a server that exited on its own: out of memory when the log says so,
/// otherwise a server error naming the exit code or signal.
pub fn classify_exit(log: &[String], status: Option<ExitStatus>) -> TrialFailure {
    use std::os::unix::process::ExitStatusExt;
    let how = match status {
        Some(s) => match (s.code(), s.signal()) {
            (Some(code), _) => format!("exited with code {code}"),
            (None, Some(sig)) => format!("was killed by signal {sig} ({})", signal_name(sig)),
            _ => "exited".to_owned(),
        },
        None => "stopped answering".to_owned(),
    };
    if let Some(line) = log.iter().rev().find(|l| looks_like_oom(l)) {
        return TrialFailure {
            kind: FailureKind::OutOfMemory,
            message: format!("llama-server {how}, out of memory: {}", line.trim()),
        };
    }
    let hint = log
        .iter()
        .rev()
        .find(|l| l.contains("error") || l.contains("failed"))
        .map(|l| format!(": {}", l.trim()))
        .unwrap_or_default();
    TrialFailure {
        kind: FailureKind::ServerError,
        message: format!("llama-server {how}{hint}"),
    }
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGKILL => "SIGKILL; the kernel's out-of-memory killer also sends this",
        libc::SIGTERM => "SIGTERM",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        _ => "signal",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(str::to_owned).collect()
    }

    #[test]
    fn kv_cache_allocation_failure_is_out_of_memory() {
        let log = lines(
            "llama_kv_cache: CPU KV buffer size = 4096.00 MiB\n\
             ggml_backend_cpu_buffer_type_alloc_buffer: failed to allocate buffer of size 4294967296\n\
             llama_init_from_model: failed to initialize the context: failed to allocate buffer for kv cache\n\
             srv    load_model: failed to load model, '/m/model.gguf'\n\
             srv   operator(): exiting due to model loading error",
        );
        let f = classify_exit(&log, Some(ExitStatus::from_raw(1 << 8)));
        assert_eq!(f.kind, FailureKind::OutOfMemory);
        assert!(f.message.contains("exited with code 1"), "{}", f.message);
    }

    #[test]
    fn cuda_oom_is_out_of_memory() {
        let log = lines("ggml_cuda_host_malloc: cudaMalloc failed: out of memory");
        assert_eq!(classify_exit(&log, None).kind, FailureKind::OutOfMemory);
    }

    #[test]
    fn bad_model_is_a_server_error_with_the_reason() {
        let log = lines(
            "llama_model_load: error loading model: tensor 'blk.0.attn_q.weight' data is not within the file bounds\n\
             srv   operator(): exiting due to model loading error",
        );
        let f = classify_exit(&log, Some(ExitStatus::from_raw(1 << 8)));
        assert_eq!(f.kind, FailureKind::ServerError);
        assert!(
            f.message.contains("exiting due to model loading error"),
            "{}",
            f.message
        );
    }

    #[test]
    fn signal_is_named() {
        let f = classify_exit(&[], Some(ExitStatus::from_raw(libc::SIGKILL)));
        assert_eq!(f.kind, FailureKind::ServerError);
        assert!(f.message.contains("signal 9"), "{}", f.message);
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        let tail = LogTail::default();
        for i in 0..(KEPT_LINES + 10) {
            tail.push(i.to_string());
        }
        assert_eq!(
            tail.last(2),
            vec![(KEPT_LINES + 8).to_string(), (KEPT_LINES + 9).to_string()]
        );
    }
}
