//! No llama-server outlives Ozone, even when Ozone is SIGKILLed (no destructor runs):
//! the server dies through `PR_SET_PDEATHSIG`. The test re-runs its own binary as the
//! "Ozone" process, which starts a real server and waits; the test kills it with
//! SIGKILL and watches the server disappear.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
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
            "server_dies_when_ozone_is_sigkilled",
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
