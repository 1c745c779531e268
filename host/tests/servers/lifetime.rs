//! No llama-server outlives Ozone, even when Ozone is SIGKILLed (no destructor runs):
//! the server dies through `PR_SET_PDEATHSIG`. One test re-runs its own binary as the
//! "Ozone" process, which starts a real server and waits; the test kills it with
//! SIGKILL and watches the server disappear. Another starts the real `ozone` with a
//! `--llama-server` wrapper script that does not `exec`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::cli::{ozone, RUN_ENDS, TERMINATED};
use crate::common::{self, quick_config, wait_until, *};
use ozone::backend::llama_server::ManagedServer;
use tokio_util::sync::CancellationToken;

const CHILD_ROLE: &str = "OZONE_TEST_PDEATHSIG_CHILD";
const PID_LINE: &str = "OZONE_TEST_SERVER_PID=";

#[test]
fn server_dies_when_ozone_is_sigkilled() {
    if std::env::var_os(CHILD_ROLE).is_some() {
        run_as_ozone();
        return;
    }
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "lifetime::server_dies_when_ozone_is_sigkilled",
            "--exact",
            "--nocapture",
        ])
        .env(CHILD_ROLE, "1")
        .env("LLAMA_SERVER", llama_server())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("re-run the test binary");
    let stdout = child.stdout.take().expect("child stdout");
    let server_pid: i32 = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find_map(|l| l.strip_prefix(PID_LINE).and_then(|p| p.trim().parse().ok()))
        .expect("the child reports its server's pid");
    assert!(alive(server_pid), "the server should be running");

    // SAFETY: kill(2) on the child this test spawned.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    let _ = child.wait();

    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(server_pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !alive(server_pid),
        "llama-server {server_pid} outlived its killed parent"
    );
}

/// Alive and not a zombie (an orphan is reaped by init; a zombie is already dead).
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
    })
}

/// The child: start a server, say its pid, wait to be killed.
fn run_as_ozone() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let spec = llama_spec(llama_server(), &[]);
        let server = ManagedServer::start(
            &spec,
            &config(2048, 1),
            Duration::from_secs(60),
            &CancellationToken::new(),
            &|_| {},
        )
        .await
        .unwrap_or_else(|f| panic!("llama-server did not start: {:?}", f.failure));
        println!("{PID_LINE}{}", server.pid());
        tokio::time::sleep(Duration::from_secs(120)).await;
        drop(server);
    });
}

/// A `--llama-server` that runs the real one as its child (no `exec`), as wrapper
/// scripts that set up an environment often do.
fn wrapper_script(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("llama-server-wrapper.sh");
    let real = common::llama_server();
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\n# No exec: the real server is this shell's child.\n'{}' \"$@\"\nstatus=$?\nexit $status\n",
            real.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// Live llama-server processes (the real binary, not the wrapper) serving `model`.
fn real_servers(model: &Path) -> Vec<u32> {
    common::processes_mentioning(&model.display().to_string())
        .into_iter()
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim() == "llama-server")
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_behind_a_wrapper_dies_with_ozone_on_sigkill_and_sigterm() {
    let _serial = common::serial().await;
    for sig in [libc::SIGKILL, libc::SIGTERM] {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join(format!("wrapped-{sig}.gguf"));
        ozone::backend::gguf::write_tiny_model(&model, &Default::default()).unwrap();
        let wrapper = wrapper_script(dir.path());
        let config = quick_config(dir.path());
        let child = ozone(
            dir.path(),
            &[
                "tune",
                model.to_str().unwrap(),
                "--llama-server",
                wrapper.to_str().unwrap(),
                "--config",
                &config,
            ],
        )
        .start();
        wait_until("the real server started", RUN_ENDS, || {
            !real_servers(&model).is_empty()
        });
        child.signal(sig);
        let signalled = Instant::now();
        let out = child.finish();
        wait_until(
            "every llama-server and wrapper gone",
            Duration::from_secs(5),
            || common::processes_mentioning(&model.display().to_string()).is_empty(),
        );
        eprintln!(
            "signal {sig}: ozone and the wrapped server gone {:?} after it",
            signalled.elapsed()
        );
        if sig == libc::SIGTERM {
            out.code(TERMINATED);
            assert!(out.stderr.contains("ozone tune --resume"), "{}", out.stderr);
        }
    }
}
