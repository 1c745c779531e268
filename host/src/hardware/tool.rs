//! Running a vendor tool (`nvidia-smi`, `rocm-smi`) with a deadline: a GPU in a bad state
//! can make these tools hang for minutes, and neither a probe nor the sampler may.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long a vendor tool may take before it is killed and its reading counted absent.
pub const TOOL_TIMEOUT: Duration = Duration::from_secs(5);

/// Stdout of `program args…` if it exits successfully within `timeout`; `None` when it
/// is missing, fails or overruns (then it is killed).
pub fn stdout_of(program: &str, args: &[&str], timeout: Duration) -> Option<String> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let mut stdout = child.stdout.take()?;
    // Read on a helper thread so a chatty tool cannot block on a full pipe meanwhile.
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        stdout.read_to_string(&mut text).ok().map(|_| text)
    });
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if start.elapsed() < timeout => std::thread::sleep(Duration::from_millis(2)),
            _ => {
                tracing::warn!("{program} did not answer within {timeout:?}; killed");
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let text = reader.join().ok().flatten();
    status.filter(|s| s.success()).and(text)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn output_of_a_tool_that_succeeds() {
        let out = stdout_of("sh", &["-c", "echo 'a, b'"], TOOL_TIMEOUT);
        assert_eq!(out.as_deref(), Some("a, b\n"));
    }

    #[test]
    fn missing_failing_and_hanging_tools_are_none() {
        assert_eq!(stdout_of("ozone-no-such-tool", &[], TOOL_TIMEOUT), None);
        assert_eq!(
            stdout_of("sh", &["-c", "echo x; exit 3"], TOOL_TIMEOUT),
            None
        );
        let start = Instant::now();
        assert_eq!(
            stdout_of("sleep", &["30"], Duration::from_millis(200)),
            None
        );
        assert!(start.elapsed() < Duration::from_secs(10));
    }
}
