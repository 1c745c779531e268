//! The sampler and the guard against real child processes that allocate and touch
//! memory in known steps (python3, present wherever the tests run). Linux: the tree is
//! read from /proc.
#![cfg(target_os = "linux")]

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use ozone::guard::{Sampler, SamplerOptions, Thresholds};
use ozone::record::Metric;

const MIB: u64 = 1024 * 1024;

/// Allocates `steps` blocks of `step_mib` MiB, each filled with 0x01 so every page is
/// resident, sleeping `hold_s` before the first and after each.
const ALLOCATOR: &str = "
import sys, time
step, steps, hold = int(sys.argv[1]) << 20, int(sys.argv[2]), float(sys.argv[3])
blocks = []
time.sleep(hold)
for _ in range(steps):
    blocks.append(b'\\x01' * step)
    time.sleep(hold)
";

fn allocator(step_mib: u64, steps: u32, hold_s: f64) -> Command {
    let mut cmd = Command::new("python3");
    cmd.args(["-c", ALLOCATOR])
        .arg(step_mib.to_string())
        .arg(steps.to_string())
        .arg(hold_s.to_string());
    cmd
}

/// Limits nothing but the process-tree budget, so other load on the machine cannot
/// cause a breach.
fn budget_only(budget_mb: u64) -> Thresholds {
    Thresholds {
        max_vram_percent: 100.0,
        max_ram_percent: 100.0,
        max_temperature_c: 1000.0,
        max_cpu_percent: 100.0,
        vram_reserve_mb: 0,
        ram_reserve_mb: 0,
        process_memory_budget_mb: Some(budget_mb),
        gpu_memory_budget_mb: None,
        cpu_grace_ms: 0,
    }
}

fn wait_with_timeout(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    None
}

#[test]
fn sampler_records_memory_steps_and_their_peak() {
    const STEP_MIB: u64 = 64;
    const STEPS: u64 = 4;
    let sampler = Sampler::start(SamplerOptions::default()).expect("sampler starts");
    let mut child = allocator(STEP_MIB, STEPS as u32, 0.6)
        .spawn()
        .expect("python3 runs");
    sampler.watch_pid(Some(child.id()));
    let status = wait_with_timeout(&mut child, Duration::from_secs(30));
    let series = sampler.stop();
    assert!(
        status.is_some_and(|s| s.success()),
        "allocator failed: {status:?}"
    );

    let rss: Vec<u64> = series
        .points
        .iter()
        .filter_map(|p| p.process_rss_bytes)
        .collect();
    assert!(rss.len() >= 20, "too few readings: {}", rss.len());
    let baseline = *rss.iter().min().expect("readings");
    let peak = series.peaks.process_rss_bytes.expect("a peak");
    assert_eq!(Some(&peak), rss.iter().max());
    let grown = (peak - baseline) as f64;
    let expected = (STEP_MIB * STEPS * MIB) as f64;
    assert!(
        (grown - expected).abs() <= 0.1 * expected,
        "peak grew {:.1} MiB over the baseline, expected {:.1} MiB ±10 %",
        grown / MIB as f64,
        expected / MIB as f64
    );

    // Every step is visible as its own plateau, in order, up to the peak (after it the
    // process exits and its memory goes away).
    let level = |bytes: u64| ((bytes - baseline) as f64 / (STEP_MIB * MIB) as f64).round() as u64;
    let peak_at = rss
        .iter()
        .position(|&b| b == peak)
        .expect("peak is a reading");
    let mut seen: Vec<u64> = rss[..=peak_at].iter().map(|&b| level(b)).collect();
    seen.dedup();
    assert_eq!(
        seen,
        (0..=STEPS).collect::<Vec<_>>(),
        "levels seen: {seen:?}"
    );
    // Each plateau lasts several ticks (0.6 s each at 100 ms).
    for step in 1..STEPS {
        let ticks = rss.iter().filter(|&&b| level(b) == step).count();
        assert!(ticks >= 3, "step {step} seen on {ticks} ticks only");
    }

    // Machine-wide readings are there too, and time moves forward by about 100 ms.
    assert!(series.points.iter().all(|p| p.ram_used_bytes.is_some()));
    assert!(series.points.windows(2).all(|w| w[1].t_ms > w[0].t_ms));
    assert_eq!(series.interval_ms, 100);
}

#[tokio::test]
async fn guard_kills_a_tree_growing_past_its_budget() {
    const BUDGET_MB: u64 = 100;
    let sampler = Sampler::start(SamplerOptions {
        thresholds: Some(budget_only(BUDGET_MB)),
        kill_on_breach: true,
        ..SamplerOptions::default()
    })
    .expect("sampler starts");
    let mut breaches = sampler.breaches();
    // The shell stays the parent of python3: the budget covers the whole tree.
    // Were only the shell measured, no breach would come and the test would time out.
    let script = "python3 -c \"$0\" 32 30 0.2; echo unreachable";
    let mut child = Command::new("sh")
        .args(["-c", script, ALLOCATOR])
        .spawn()
        .expect("sh runs");
    sampler.watch_pid(Some(child.id()));
    let python = tokio::time::timeout(Duration::from_secs(10), first_child_of(child.id()))
        .await
        .expect("sh starts python3");

    let breach = tokio::time::timeout(Duration::from_secs(30), breaches.wait_for(Option::is_some))
        .await
        .expect("a breach within 30 s")
        .expect("sampler alive")
        .clone()
        .expect("set");
    let seen = Instant::now();
    let status = wait_with_timeout(&mut child, Duration::from_secs(5));
    let exited_after = seen.elapsed();
    let series = sampler.stop();

    assert_eq!(breach.metric, Metric::ProcessMemory);
    assert_eq!(breach.limit, (BUDGET_MB * MIB) as f64);
    assert!(breach.value > breach.limit);
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.and_then(|s| s.signal()), Some(libc::SIGKILL));
    assert!(
        exited_after < Duration::from_millis(200),
        "child exited {exited_after:?} after the breach"
    );
    // The grandchild was killed with the shell, as fast (it may linger as a zombie until
    // reaped; unmapping its memory takes a few ms).
    let python_gone = tokio::time::timeout(Duration::from_secs(2), async {
        while !is_gone_or_zombie(python) {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    });
    assert!(python_gone.await.is_ok(), "python3 ({python}) still runs");
    let python_after = seen.elapsed();
    assert!(
        python_after < Duration::from_millis(200),
        "python3 exited {python_after:?} after the breach"
    );
    assert!(series
        .peaks
        .process_rss_bytes
        .is_some_and(|p| p > BUDGET_MB * MIB));
}

/// Polls `/proc/<pid>/task/<pid>/children` until `pid` has a child.
async fn first_child_of(pid: u32) -> u32 {
    loop {
        let children =
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        if let Some(child) = children.split_whitespace().find_map(|c| c.parse().ok()) {
            return child;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn is_gone_or_zombie(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return true;
    };
    let state = stat
        .rsplit(')')
        .next()
        .and_then(|r| r.split_whitespace().next());
    matches!(state, None | Some("Z") | Some("X"))
}
