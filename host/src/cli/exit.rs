//! Documented exit codes and the error type that carries one to the process edge.

use std::process::ExitCode;

use crate::plugin::PluginError;

/// `ozone --help`'s list; the README repeats these lines word for word (a test checks).
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0    done
  1    internal error, no configuration was stable, or the trial log or output files
       could not be written (a full disk): what was measured is in the log
  2    bad input: unreadable config, missing model file, bad flag value, a plugin that
       does not fit (unknown built-in, not a component, wrong world or API version,
       settings it rejects)
  3    no inference server: llama-server not found or failed to start, Ollama unreachable;
       no scheduler: sbatch/scontrol not found or the Slurm controller not answering
  4    a plugin broke its sandbox or its contract (trap, fuel, memory, impossible value)
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

impl Exit {
    /// The one mapping of plugin errors to exit codes, for every command (`tune`,
    /// `plugins`, `lab`): a plugin that does not fit where it was asked for is bad
    /// input; one that misbehaved once running broke its sandbox or contract.
    pub fn of_plugin_error(error: &PluginError) -> Exit {
        match error {
            PluginError::UnknownBuiltin(_)
            | PluginError::Read { .. }
            | PluginError::NotAComponent { .. }
            | PluginError::WrongApiVersion { .. }
            | PluginError::WrongWorld { .. }
            | PluginError::NotAStrategy { .. }
            // The constructor refused the settings (or facts) it was given: the user's
            // configuration is what to fix.
            | PluginError::Rejected { .. } => Exit::BadInput,
            PluginError::Instantiate { .. }
            | PluginError::Budget { .. }
            | PluginError::Memory { .. }
            | PluginError::Trapped { .. }
            | PluginError::Discarded { .. }
            | PluginError::ContextOutOfRange { .. }
            | PluginError::BatchOutOfRange { .. }
            | PluginError::OffloadOutOfRange { .. }
            | PluginError::ImpossibleVariant { .. }
            | PluginError::ConcurrencyOutOfRange { .. } => Exit::Plugin,
            PluginError::Engine(_) => Exit::Internal,
        }
    }
}

/// An error on its way to the user, with the exit code it maps to.
#[derive(Debug)]
pub struct CliError {
    pub exit: Exit,
    pub error: anyhow::Error,
}

impl CliError {
    pub fn new(exit: Exit, error: impl Into<anyhow::Error>) -> Self {
        Self {
            exit,
            error: error.into(),
        }
    }

    /// A plugin error with its exit code ([`Exit::of_plugin_error`]).
    pub fn plugin(error: PluginError) -> Self {
        Self::new(Exit::of_plugin_error(&error), error)
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

impl From<anyhow::Error> for CliError {
    fn from(error: anyhow::Error) -> Self {
        Self::new(Exit::Internal, error)
    }
}

/// Attaches an exit code to any error: `result.exit(Exit::BadInput)?`.
pub trait ResultExt<T> {
    fn exit(self, exit: Exit) -> Result<T, CliError>;
}

impl<T, E: Into<anyhow::Error>> ResultExt<T> for Result<T, E> {
    fn exit(self, exit: Exit) -> Result<T, CliError> {
        self.map_err(|e| CliError::new(exit, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_readme_lists_the_exit_codes_as_help_does() {
        let readme = include_str!("../../../README.md");
        for line in EXIT_CODES_HELP.lines().skip(1) {
            assert!(
                readme.contains(line),
                "README.md lacks this line of `ozone --help`'s exit codes:\n{line}"
            );
        }
    }

    #[test]
    fn a_cause_already_in_the_message_is_not_repeated() {
        #[derive(Debug, thiserror::Error)]
        #[error("reading the model: {0}")]
        struct Wrapper(#[source] std::io::Error);
        let io = std::io::Error::other("/m/x.gguf: permission denied");
        let failure = CliError::new(Exit::BadInput, Wrapper(io));
        assert_eq!(
            failure.lines(),
            ["error: reading the model: /m/x.gguf: permission denied"]
        );
        let failure = CliError::new(
            Exit::Internal,
            anyhow::Error::new(std::io::Error::other("disk full")).context("writing the log"),
        );
        assert_eq!(
            failure.lines(),
            ["error: writing the log", "  caused by: disk full"]
        );
    }
}
