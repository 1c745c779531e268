//! `ozone` as its user runs it: the real binary, a child process in a folder of its own
//! — its warm-start store, configuration search and outputs inside that folder — that
//! is never waited on unbounded, and one way to assert on how it ended.
//!
//! ```ignore
//! ozone(dir, &["tune", "m.gguf"]).run().code(NO_SERVER).error("cannot start");
//! let out = ozone(dir, &["probe", "--json"]).run().ok();
//! ```

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The documented exit codes (`ozone --help`).
pub const OK: i32 = 0;
pub const INTERNAL: i32 = 1;
pub const BAD_INPUT: i32 = 2;
pub const NO_SERVER: i32 = 3;
pub const PLUGIN: i32 = 4;
pub const INTERRUPTED: i32 = 130;
pub const TERMINATED: i32 = 143;

/// A run that has not ended by now hangs: the deadline that turns a hang into a
/// failure. Generous on purpose — it bounds, it does not measure; what must be quick is
/// asserted on its own.
pub const RUN_ENDS: Duration = Duration::from_secs(300);

/// `ozone args` in `dir`, with `dir` as its home and data folder, `LLAMA_SERVER` set when
/// one is installed, and one compiled-plugin cache shared by every run of the test binary
/// (compiling the components is not what is tested, and costs a minute of a busy 2-core
/// machine in a debug build).
pub fn ozone(dir: &Path, args: &[&str]) -> Ozone {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ozone"));
    cmd.args(args)
        .current_dir(dir)
        .env("XDG_DATA_HOME", dir.join("data"))
        .env("XDG_CACHE_HOME", shared_cache())
        .env("XDG_CONFIG_HOME", dir.join("config"))
        .env("HOME", dir)
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(server) = super::installed_llama_server() {
        cmd.env("LLAMA_SERVER", server);
    }
    Ozone {
        cmd,
        deadline: RUN_ENDS,
    }
}

/// The compiled-plugin cache the runs of this test binary share.
pub fn shared_cache() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ozone-cli-cache")
}

/// An `ozone` command about to run.
pub struct Ozone {
    cmd: Command,
    deadline: Duration,
}

impl Ozone {
    pub fn env(mut self, key: &str, value: impl AsRef<std::ffi::OsStr>) -> Self {
        self.cmd.env(key, value);
        self
    }

    /// Runs in `dir` (its home stays the folder it was made for).
    pub fn cwd(mut self, dir: &Path) -> Self {
        self.cmd.current_dir(dir);
        self
    }

    pub fn env_remove(mut self, key: &str) -> Self {
        self.cmd.env_remove(key);
        self
    }

    /// The run must have ended by `deadline` (default [`RUN_ENDS`]).
    pub fn within(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// The command itself, for what the builder does not cover (`pre_exec`).
    pub fn command(&mut self) -> &mut Command {
        &mut self.cmd
    }

    /// Runs to the end (within the deadline).
    pub fn run(self) -> Outcome {
        self.start().finish()
    }

    /// Starts it, for a test that acts while it runs (signals, a second run).
    pub fn start(mut self) -> Running {
        let started = Instant::now();
        let mut child = self.cmd.spawn().expect("start ozone");
        let stdout = read_all(child.stdout.take().expect("piped stdout"));
        let stderr = read_all(child.stderr.take().expect("piped stderr"));
        Running {
            child,
            started,
            deadline: self.deadline,
            stdout,
            stderr,
        }
    }
}

fn read_all(mut from: impl Read + Send + 'static) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = from.read_to_string(&mut text);
        text
    })
}

/// A running `ozone`.
pub struct Running {
    child: Child,
    started: Instant,
    deadline: Duration,
    stdout: JoinHandle<String>,
    stderr: JoinHandle<String>,
}

impl Running {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on a child this test started and has not reaped.
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }

    /// Waits for the end, at most the deadline from the start; a run still going then
    /// is killed and the test fails (it would have hung).
    pub fn finish(mut self) -> Outcome {
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait for ozone") {
                break status;
            }
            if self.started.elapsed() > self.deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "ozone still ran after {:?} (a hang); stderr:\n{}",
                    self.deadline,
                    self.stderr.join().unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        Outcome {
            code: status.code(),
            took: self.started.elapsed(),
            stdout: self.stdout.join().unwrap_or_default(),
            stderr: self.stderr.join().unwrap_or_default(),
        }
    }
}

/// How a finished `ozone` ended.
#[derive(Debug)]
pub struct Outcome {
    /// `None`: killed by a signal.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub took: Duration,
}

impl Outcome {
    /// The `error:` lines of stderr.
    pub fn errors(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| l.starts_with("error:"))
            .collect()
    }

    /// Exited with `code`; else the test fails, showing both streams.
    #[track_caller]
    pub fn code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code,
            Some(code),
            "ozone exited {:?}, not {code}\nstdout:\n{}\nstderr:\n{}",
            self.code,
            self.stdout,
            self.stderr
        );
        self
    }

    /// Exited 0; its stdout.
    #[track_caller]
    pub fn ok(&self) -> &str {
        self.code(OK);
        &self.stdout
    }

    /// Exactly one `error:` line, saying `says`.
    #[track_caller]
    pub fn error(&self, says: &str) -> &Self {
        let errors = self.errors();
        assert!(
            errors.len() == 1 && errors[0].contains(says),
            "wanted one error saying {says:?}; stderr:\n{}",
            self.stderr
        );
        self
    }

    /// stderr says `says`.
    #[track_caller]
    pub fn says(&self, says: &str) -> &Self {
        assert!(
            self.stderr.contains(says),
            "stderr lacks {says:?}:\n{}",
            self.stderr
        );
        self
    }

    /// stdout as JSON.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.stdout))
    }
}
