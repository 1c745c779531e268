//! Documented exit codes and the error type that carries one to the process edge.

use std::process::ExitCode;

pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0    done
  1    internal error or every trial failed
  2    bad input: unreadable config, missing model file, bad flag value, invalid plugin
  3    no inference server: llama-server not found or failed to start, Ollama unreachable;
       no scheduler: sbatch/scontrol not found or the Slurm controller not answering
  4    a plugin broke its sandbox or its contract
  130  interrupted (Ctrl-C); the log is flushed and `ozone tune --resume LOG` continues";

/// Why `ozone` stopped, as a process exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Internal = 1,
    BadInput = 2,
    NoServer = 3,
    Plugin = 4,
    Interrupted = 130,
}

/// An error on its way to the user, with the exit code it maps to.
#[derive(Debug)]
pub struct Failure {
    pub exit: Exit,
    pub error: anyhow::Error,
}

impl Failure {
    pub fn new(exit: Exit, error: impl Into<anyhow::Error>) -> Self {
        Self {
            exit,
            error: error.into(),
        }
    }

    /// Prints `error: <message>` (with its causes, cargo-style) and returns the code.
    pub fn report(self) -> ExitCode {
        if self.exit != Exit::Interrupted || !self.error.to_string().is_empty() {
            eprintln!("error: {}", self.error);
            for cause in self.error.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
        }
        ExitCode::from(self.exit as u8)
    }
}

impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Self {
        Self::new(Exit::Internal, error)
    }
}

/// Attaches an exit code to any error: `result.exit(Exit::BadInput)?`.
#[allow(dead_code)] // used by the subcommands as they land
pub trait ResultExt<T> {
    fn exit(self, exit: Exit) -> Result<T, Failure>;
}

impl<T, E: Into<anyhow::Error>> ResultExt<T> for Result<T, E> {
    fn exit(self, exit: Exit) -> Result<T, Failure> {
        self.map_err(|e| Failure::new(exit, e))
    }
}
