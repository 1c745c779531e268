//! Documented exit codes and the error type that carries one to the process edge.

use std::process::ExitCode;

pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0    done
  1    internal error or every trial failed
  2    bad input: unreadable config, missing model file, bad flag value, invalid plugin
  3    no inference server: llama-server not found or failed to start, Ollama unreachable
  4    a plugin broke its sandbox or its contract
  130  interrupted (Ctrl-C); the log is flushed and `ozone tune --resume LOG` continues
  143  terminated (SIGTERM, as sent by `timeout`, systemd or CI): handled as Ctrl-C";

/// Why `ozone` stopped, as a process exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Internal = 1,
    BadInput = 2,
    NoServer = 3,
    Plugin = 4,
    Interrupted = 130,
    Terminated = 143,
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
        let stopped = matches!(self.exit, Exit::Interrupted | Exit::Terminated);
        if !stopped || !self.error.to_string().is_empty() {
            eprintln!("{}", self.lines().join("\n"));
        }
        ExitCode::from(self.exit as u8)
    }

    /// The message, then each cause that says something the lines before did not (many
    /// errors already include their source's text).
    fn lines(&self) -> Vec<String> {
        let mut said = self.error.to_string();
        let mut lines = vec![format!("error: {said}")];
        for cause in self.error.chain().skip(1) {
            let cause = cause.to_string();
            if !said.contains(&cause) {
                lines.push(format!("  caused by: {cause}"));
                said.push_str(&cause);
            }
        }
        lines
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_already_in_the_message_is_not_repeated() {
        #[derive(Debug, thiserror::Error)]
        #[error("reading the model: {0}")]
        struct Wrapper(#[source] std::io::Error);
        let io = std::io::Error::other("/m/x.gguf: permission denied");
        let failure = Failure::new(Exit::BadInput, Wrapper(io));
        assert_eq!(
            failure.lines(),
            ["error: reading the model: /m/x.gguf: permission denied"]
        );
        let failure = Failure::new(
            Exit::Internal,
            anyhow::Error::new(std::io::Error::other("disk full")).context("writing the log"),
        );
        assert_eq!(
            failure.lines(),
            ["error: writing the log", "  caused by: disk full"]
        );
    }
}
