//! The server's log tail and what it says about a failure.

use std::collections::VecDeque;
use std::process::ExitStatus;
use std::sync::{Arc, Mutex};

use crate::backend::stream::looks_like_oom;
use crate::record::{FailureKind, ServerFault, TrialFailure};

/// Lines kept in memory; the trial record gets the last [`RECORD_LINES`]. At trace
/// verbosity a load alone logs a few hundred lines (fit's dry runs, the model's
/// metadata), and what is read back from them (the offload it loaded, the breakdown at
/// exit) must still be there when the server stops.
const KEPT_LINES: usize = 1000;
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

/// Classifies a server that exited on its own: a [`ServerFault`] when the machine or the
/// binary cannot run it at all (an illegal instruction, a bus error, a missing shared
/// library), out of memory when the log says so, otherwise a server error naming the
/// exit code or signal.
pub fn classify_exit(log: &[String], status: Option<ExitStatus>) -> TrialFailure {
    use std::os::unix::process::ExitStatusExt;
    let (code, signal) = status.map_or((None, None), |s| (s.code(), s.signal()));
    if let Some(fault) = fault_of(log, code, signal) {
        return TrialFailure {
            message: describe_fault(&fault, last_words(log)),
            fault: Some(fault),
            ..TrialFailure::new(FailureKind::ServerError, String::new())
        };
    }
    let how = match (status, code, signal) {
        (None, ..) => "stopped answering".to_owned(),
        (_, Some(code), _) => format!("exited with code {code}"),
        (_, None, Some(sig)) => format!("was killed by signal {sig} ({})", signal_name(sig)),
        _ => "exited".to_owned(),
    };
    if let Some(line) = log.iter().rev().find(|l| looks_like_oom(l)) {
        return TrialFailure::new(
            FailureKind::OutOfMemory,
            format!("llama-server {how}, out of memory: {}", line.trim()),
        );
    }
    let hint = log
        .iter()
        .rev()
        .find(|l| l.contains("error") || l.contains("failed"))
        .map(|l| format!(": {}", l.trim()))
        .unwrap_or_default();
    TrialFailure::new(
        FailureKind::ServerError,
        format!("llama-server {how}{hint}"),
    )
}

/// The fault an exit shows, if it is one no other configuration would escape.
fn fault_of(log: &[String], code: Option<i32>, signal: Option<i32>) -> Option<ServerFault> {
    match signal {
        Some(libc::SIGILL) => return Some(ServerFault::IllegalInstruction),
        Some(libc::SIGBUS) => return Some(ServerFault::BusError),
        _ => {}
    }
    // ld.so: "llama-server: error while loading shared libraries: libX.so.0: cannot open
    // shared object file: No such file or directory", exit code 127.
    const LOADER: &str = "error while loading shared libraries: ";
    log.iter().find_map(|line| {
        let (_, rest) = line.split_once(LOADER)?;
        let library = rest.split(':').next()?.trim();
        (code == Some(127) || !library.is_empty()).then(|| ServerFault::MissingLibrary {
            library: library.to_owned(),
        })
    })
}

/// One line for the user: what killed the server, the last thing it said, what to do.
pub fn describe_fault(fault: &ServerFault, last_words: Option<&str>) -> String {
    let said = last_words.map_or(String::new(), |l| format!(" (its log: {l})"));
    match fault {
        ServerFault::IllegalInstruction => format!(
            "llama-server died of an illegal instruction: this build uses CPU instructions \
             this machine lacks{said}; install a build for this CPU \
             (`.ci/install-llama-server` builds one)"
        ),
        ServerFault::BusError => format!(
            "llama-server died of a bus error (SIGBUS): a file it maps into memory, the model, \
             was truncated or replaced while it ran{said}; check the model file (its size, \
             its sha256) and run again"
        ),
        ServerFault::MissingLibrary { library } => format!(
            "llama-server cannot start: the shared library {library} is missing{said}; keep \
             the binary in the folder it was installed with (Ozone puts that folder on \
             LD_LIBRARY_PATH), or install one with `.ci/install-llama-server`"
        ),
    }
}

/// The server's last non-empty line, trimmed.
fn last_words(log: &[String]) -> Option<&str> {
    log.iter().rev().map(|l| l.trim()).find(|l| !l.is_empty())
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGKILL => "SIGKILL; the kernel's out-of-memory killer also sends this",
        libc::SIGTERM => "SIGTERM",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGABRT => "SIGABRT",
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
    fn an_illegal_instruction_is_a_fault_naming_the_fix() {
        // The pinned wheel 0.10434.0 on AMD Zen 4 without AMX, loading a Q4_K model.
        let log = lines(
            "0.00.005.094 I srv    load_model: loading model 'gemma-3-270m-q4_k_m.gguf'\n\
             AMX is not ready to be used!\n\
             0.00.585.060 I cmn          init: llama threadpool init, n_threads = 2",
        );
        let f = classify_exit(&log, Some(ExitStatus::from_raw(libc::SIGILL)));
        assert_eq!(f.kind, FailureKind::ServerError);
        assert_eq!(f.fault, Some(ServerFault::IllegalInstruction));
        assert!(
            f.message
                .starts_with("llama-server died of an illegal instruction")
                && f.message.contains("n_threads = 2")
                && f.message.contains(".ci/install-llama-server"),
            "{}",
            f.message
        );
    }

    #[test]
    fn a_bus_error_blames_the_mapped_model() {
        let f = classify_exit(&[], Some(ExitStatus::from_raw(libc::SIGBUS)));
        assert_eq!(f.fault, Some(ServerFault::BusError));
        assert!(f.message.contains("truncated or replaced"), "{}", f.message);
    }

    #[test]
    fn a_missing_library_is_named() {
        let log = lines(
            "/opt/llama-server: error while loading shared libraries: libllama-server-impl.so: \
             cannot open shared object file: No such file or directory",
        );
        let f = classify_exit(&log, Some(ExitStatus::from_raw(127 << 8)));
        assert_eq!(
            f.fault,
            Some(ServerFault::MissingLibrary {
                library: "libllama-server-impl.so".into()
            })
        );
        assert!(f
            .message
            .contains("the shared library libllama-server-impl.so is missing"));
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
