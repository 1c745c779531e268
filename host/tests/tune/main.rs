//! `ozone tune` end to end, as a user runs it: the real binary (`common::cli`), a real
//! llama-server on generated models, or the hostile fake server where a fault must be
//! made on demand. Grouped by what is tested: the runs and their files (`runs`), the
//! concurrency phase (`concurrency`), the exit codes (`exit_codes`), stopping
//! (`stops`), a server that cannot start (`cannot_start`), results written whole
//! (`outputs`), the deploy files (`deploy`) and `--resume` (`resume`).

#[path = "../common/mod.rs"]
mod common;

mod cannot_start;
mod concurrency;
mod deploy;
mod exit_codes;
mod outputs;
mod resume;
mod runs;
mod stops;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::hostile::Behaviour;

/// A model of 2048 trained tokens: the context search has one step.
pub fn small_model(path: &Path) {
    let spec = ozone::backend::gguf::TinyModelSpec {
        trained_context: 2048,
        ..Default::default()
    };
    ozone::backend::gguf::write_tiny_model(path, &spec).expect("write the model");
}

/// One real trial per model: the smallest context, no batch or concurrency phase.
pub fn one_trial_config(dir: &Path) -> String {
    let path = dir.join("one-trial.yaml");
    let text = format!("{}  warmup: false\n", common::QUICK_CONFIG).replace(
        "search_strategy:\n",
        "search_strategy:\n  batch_adaptation:\n    enabled: false\n",
    );
    std::fs::write(&path, text).expect("write the config");
    path.display().to_string()
}

/// `/v1/models` of a server serving one model with a 4096-token context.
pub fn models_json() -> Behaviour {
    Behaviour::Json(
        r#"{"object":"list","data":[{"id":"m","object":"model","meta":{"n_ctx_train":4096}}]}"#
            .into(),
    )
}

/// A folder where writing fails with "no space left": a 2 MiB tmpfs filled up (root),
/// else a file-size limit of one byte on the writing process (`EFBIG`: the same "the
/// write stopped half-way" from the writer's side).
pub struct FullDisk {
    mount: Option<PathBuf>,
}

impl FullDisk {
    /// Mounts a small tmpfs on `dir` when this process may.
    pub fn mount(dir: &Path) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
            .arg(dir)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            eprintln!("no tmpfs here (not root?): a file-size limit stands in for a full disk");
        }
        Self {
            mount: mounted.then(|| dir.to_path_buf()),
        }
    }

    /// Fills the disk (tmpfs), or limits `cmd`'s file writes (no tmpfs).
    pub fn fill(&self, cmd: &mut Command) {
        use std::os::unix::process::CommandExt;
        match &self.mount {
            Some(dir) => {
                let mut filler = std::fs::File::create(dir.join("filler")).unwrap();
                let block = vec![0u8; 64 << 10];
                while std::io::Write::write_all(&mut filler, &block).is_ok() {}
                let _ = std::io::Write::write_all(&mut filler, &[0u8; 4096][..]);
            }
            None => {
                // SAFETY: setrlimit and signal are async-signal-safe.
                unsafe {
                    cmd.pre_exec(|| {
                        let one = libc::rlimit {
                            rlim_cur: 1,
                            rlim_max: 1,
                        };
                        libc::setrlimit(libc::RLIMIT_FSIZE, &one);
                        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
                        Ok(())
                    });
                }
            }
        }
    }

    /// Takes the room left in `file`'s last page too: tmpfs allocates by the page, so a
    /// file on a full tmpfs still grows to its page's end, and a short log line fits.
    /// The spaces written make a torn last line, as a real disk-full write leaves.
    pub fn take_the_slack_of(&self, file: &Path) {
        if self.mount.is_some() {
            let mut log = std::fs::OpenOptions::new().append(true).open(file).unwrap();
            while std::io::Write::write_all(&mut log, b" ").is_ok() {}
        }
    }

    /// Whether a real filesystem fills up (else a file-size limit stands in).
    pub fn mounted(&self) -> bool {
        self.mount.is_some()
    }

    pub fn empty(&self) {
        if let Some(dir) = &self.mount {
            let _ = std::fs::remove_file(dir.join("filler"));
        }
    }
}

impl Drop for FullDisk {
    fn drop(&mut self) {
        if let Some(dir) = &self.mount {
            let _ = Command::new("umount").arg(dir).status();
        }
    }
}
