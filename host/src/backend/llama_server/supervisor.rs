//! The small process between Ozone and llama-server that makes the server — and
//! everything it starts — die with Ozone, however Ozone dies.
//!
//! `PR_SET_PDEATHSIG` alone is not enough: it reaches only the direct child. When
//! `--llama-server` is a wrapper script that starts the real server without `exec`, the
//! script dies with Ozone and the real server lives on. Something that outlives Ozone has
//! to kill the server's whole process group, and only a process can: so the direct child
//! of Ozone is a supervisor, and the server runs under it in a process group of its own.
//!
//! ```text
//! ozone ── supervisor (own group) ── llama-server or wrapper (group G) ── …its children (G)
//! ```
//!
//! The supervisor checks every 50 ms whether its parent is still Ozone; when it is not
//! (Ozone exited, crashed or was SIGKILLed), it SIGKILLs group G and exits. When the
//! server exits, it SIGKILLs what is left of G and exits the way the server did, so
//! Ozone reads the server's own exit status from it. Ozone stops the server by signalling
//! group G; the supervisor follows.
//!
//! Why a fork and not Ozone re-executing itself in a hidden mode: the supervisor must
//! work wherever a server is started, the `ozone` binary, the test binaries and library
//! users alike, and none of those but `ozone` could answer such a mode. It is forked
//! between `fork` and `exec` of the spawn, where only async-signal-safe calls are allowed,
//! and makes nothing else: `fork`, `setpgid`, `prctl`, `write`, `close_range`, `waitpid`,
//! `getppid`, `kill`, `poll`, `_exit` — no allocation, no lock. It does not exec, so its
//! memory is the parent's, shared copy-on-write; the sampler watches the server's group,
//! never the supervisor.

use std::io::{self, Read};
use std::os::fd::{AsRawFd, RawFd};

use tokio::process::{Child, Command};

/// How often the supervisor checks on Ozone and the server.
const CHECK_EVERY_MS: libc::c_int = 50;

/// A server started under a supervisor.
#[derive(Debug)]
pub(super) struct Supervised {
    /// The supervisor: waiting on it waits on the server, and its exit status is the
    /// server's.
    pub child: Child,
    /// The server (or the wrapper run as `--llama-server`): also its process group id.
    pub server_pid: i32,
}

/// Spawns `command` under a supervisor. `command`'s stdio, environment and arguments
/// are the server's; its process group and pre-exec hooks must not be set by the caller.
pub(super) fn spawn(mut command: Command) -> io::Result<Supervised> {
    let (mut report_read, report_write) = io::pipe()?;
    let ozone = std::process::id() as libc::pid_t;
    let report = report_write.as_raw_fd();
    // The supervisor has its own group: a Ctrl-C at the terminal reaches Ozone's group
    // only, and Ozone decides what happens to servers.
    command.process_group(0);
    // SAFETY: `split` runs in the forked child before exec and only makes
    // async-signal-safe system calls (see the module comment); it captures two integers.
    unsafe {
        command.pre_exec(move || split(ozone, report));
    }
    let spawned = command.spawn();
    // Our copy of the write end must go, or a supervisor that died early would leave the
    // read below waiting forever.
    drop(report_write);
    let child = spawned?;
    // The supervisor wrote the pid before it let `spawn` return.
    let mut pid = [0u8; 4];
    report_read.read_exact(&mut pid).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("the server's supervisor did not report: {e}"),
        )
    })?;
    Ok(Supervised {
        child,
        server_pid: i32::from_ne_bytes(pid),
    })
}

/// In the child of the spawn's fork: forks again. The new child goes on to exec the
/// server in a process group of its own; this process stays behind as the supervisor.
fn split(ozone: libc::pid_t, report: RawFd) -> io::Result<()> {
    // SAFETY: only async-signal-safe calls, on values owned by this process.
    unsafe {
        let supervisor = libc::getpid();
        match libc::fork() {
            -1 => Err(io::Error::last_os_error()),
            0 => {
                // The server: group G = its pid; killed if the supervisor dies.
                if libc::setpgid(0, 0) != 0
                    || libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0
                {
                    return Err(io::Error::last_os_error());
                }
                if libc::getppid() != supervisor {
                    return Err(io::Error::from_raw_os_error(libc::ESRCH));
                }
                Ok(())
            }
            server => supervise(ozone, server, report),
        }
    }
}

/// The supervisor's whole life. Never returns.
unsafe fn supervise(ozone: libc::pid_t, server: libc::pid_t, report: RawFd) -> ! {
    // Also set here: Ozone may signal group G as soon as it has the pid.
    libc::setpgid(server, server);
    libc::prctl(libc::PR_SET_NAME, c"ozone-supervise".as_ptr());
    let pid = server.to_ne_bytes();
    libc::write(report, pid.as_ptr().cast(), pid.len());
    // Every descriptor goes, the spawn's exec-status pipe included: `spawn` returns in
    // Ozone once the server has exec'd and this process holds nothing of it.
    close_all_fds();
    loop {
        let mut status = 0;
        match libc::waitpid(server, &mut status, libc::WNOHANG) {
            0 => {}
            pid if pid == server => {
                // Helpers the server or its wrapper left behind go with it.
                libc::kill(-server, libc::SIGKILL);
                exit_as(status);
            }
            _ if *libc::__errno_location() == libc::EINTR => {}
            _ => {
                libc::kill(-server, libc::SIGKILL);
                libc::_exit(1);
            }
        }
        if libc::getppid() != ozone {
            // Ozone is gone (reparented to init or a subreaper).
            libc::kill(-server, libc::SIGKILL);
            libc::_exit(1);
        }
        libc::poll(std::ptr::null_mut(), 0, CHECK_EVERY_MS);
    }
}

unsafe fn close_all_fds() {
    if libc::syscall(libc::SYS_close_range, 0u32, u32::MAX, 0u32) == 0 {
        return;
    }
    // Kernels before 5.9: one by one, up to the descriptor limit.
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    let max = if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
        limit.rlim_cur.min(1 << 20) as libc::c_int
    } else {
        1024
    };
    for fd in 0..max {
        libc::close(fd);
    }
}

/// Exits with the server's status: the same code, or killed by the same signal (without
/// a core dump of this copy of Ozone).
unsafe fn exit_as(status: libc::c_int) -> ! {
    if libc::WIFSIGNALED(status) {
        let signal = libc::WTERMSIG(status);
        let no_core = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        libc::setrlimit(libc::RLIMIT_CORE, &no_core);
        libc::signal(signal, libc::SIG_DFL);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, signal);
        libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        libc::kill(libc::getpid(), signal);
        libc::_exit(128 + signal);
    }
    libc::_exit(if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        1
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;
    use std::process::Stdio;
    use std::time::Duration;

    fn sh(script: &str) -> Command {
        let mut command = Command::new("/bin/sh");
        command
            .args(["-c", script])
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        command
    }

    #[tokio::test]
    async fn the_supervisor_exits_as_the_server_did() {
        let mut s = spawn(sh("exit 7")).expect("spawn");
        assert_ne!(s.server_pid, s.child.id().map_or(0, |p| p as i32));
        assert_eq!(s.child.wait().await.expect("wait").code(), Some(7));

        let mut s = spawn(sh("kill -TERM $$")).expect("spawn");
        let status = s.child.wait().await.expect("wait");
        assert_eq!(status.signal(), Some(libc::SIGTERM), "{status:?}");
    }

    #[tokio::test]
    async fn the_server_has_its_own_group_and_its_output_reaches_ozone() {
        use tokio::io::AsyncReadExt;
        let mut s = spawn(sh("echo $$; cut -d' ' -f5 /proc/$$/stat")).expect("spawn");
        let mut out = String::new();
        let mut stdout = s.child.stdout.take().expect("stdout");
        tokio::time::timeout(Duration::from_secs(10), stdout.read_to_string(&mut out))
            .await
            .expect("output in time")
            .expect("read");
        let words: Vec<i32> = out
            .split_whitespace()
            .map(|w| w.parse().expect("a number"))
            .collect();
        assert_eq!(words, [s.server_pid, s.server_pid], "{out}");
        assert!(s.child.wait().await.expect("wait").success());
    }

    #[tokio::test]
    async fn a_missing_program_is_an_error_at_spawn() {
        let err = spawn(Command::new("/no/such/llama-server")).expect_err("no such file");
        assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
    }
}
