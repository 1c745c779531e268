//! Sampler cost and period jitter at 100 ms, printed as figures.
//!
//! `cargo bench -p ozone --bench sampler` (OZONE_BENCH_SECS=N to change the 20 s run;
//! OZONE_BENCH_JSON=1 adds one JSON line of the figures, for `.ci/gpu-check`).
//! Targets: CPU time < 1 % of one core per second of sampling; period jitter p99 < 10 ms.
//! The sampler watches this process's tree (with a child), with the default thresholds,
//! so every tick does the full work: RAM, CPU, GPUs found, process-tree RSS, the tree's
//! GPU memory (NVML per process, amdgpu fdinfo: whichever the machine has), guard.

#[cfg(unix)]
use std::process::Command;
#[cfg(unix)]
use std::time::{Duration, Instant};

#[cfg(unix)]
use ozone::guard::{Sampler, SamplerOptions, Thresholds};
#[cfg(unix)]
#[cfg(not(unix))]
fn main() {
    eprintln!("the sampler bench reads CPU time with getrusage: unix only");
}

#[cfg(unix)]
fn cpu_time() -> Duration {
    // SAFETY: getrusage writes into the struct we pass; RUSAGE_SELF is always valid.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

#[cfg(unix)]
fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

#[cfg(unix)]
fn main() {
    let secs: u64 = std::env::var("OZONE_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let mut child = Command::new("sleep")
        .arg((secs + 5).to_string())
        .spawn()
        .expect("sleep runs");

    let cpu_before = cpu_time();
    let wall = Instant::now();
    let sampler = Sampler::start(SamplerOptions {
        thresholds: Some(Thresholds::default()),
        ..SamplerOptions::default()
    })
    .expect("sampler starts");
    sampler.watch_pid(Some(std::process::id()));
    std::thread::sleep(Duration::from_secs(secs));
    let (series, ticks) = sampler.stop_with_ticks();
    let wall = wall.elapsed();
    let cpu = cpu_time() - cpu_before;
    let _ = child.kill();
    let _ = child.wait();

    let mut jitter_us: Vec<u64> = ticks
        .ticks_us
        .windows(2)
        .map(|w| (w[1] - w[0]).abs_diff(ticks.interval_us))
        .collect();
    jitter_us.sort_unstable();
    let mut lateness_us: Vec<u64> = ticks
        .ticks_us
        .iter()
        .enumerate()
        .map(|(n, &t)| t.saturating_sub(n as u64 * ticks.interval_us))
        .collect();
    lateness_us.sort_unstable();

    let cpu_share = cpu.as_secs_f64() / wall.as_secs_f64() * 100.0;
    println!(
        "sampler @ {} ms for {:.1} s",
        series.interval_ms,
        wall.as_secs_f64()
    );
    println!(
        "  ticks            {} ({} skipped)",
        series.points.len(),
        ticks.skipped
    );
    println!(
        "  cpu time         {:.1} ms per second of sampling = {:.3} % of one core (target < 1 %)",
        cpu.as_secs_f64() * 1000.0 / wall.as_secs_f64(),
        cpu_share
    );
    println!(
        "  cost per tick    {:.0} µs",
        cpu.as_secs_f64() * 1e6 / series.points.len().max(1) as f64
    );
    println!(
        "  period jitter    p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms (target p99 < 10 ms)",
        percentile(&jitter_us, 50.0) as f64 / 1000.0,
        percentile(&jitter_us, 99.0) as f64 / 1000.0,
        jitter_us.last().copied().unwrap_or(0) as f64 / 1000.0
    );
    println!(
        "  tick lateness    p50 {:.3} ms, p99 {:.3} ms (vs. the absolute schedule)",
        percentile(&lateness_us, 50.0) as f64 / 1000.0,
        percentile(&lateness_us, 99.0) as f64 / 1000.0
    );
    let gpu = series.points.iter().any(|p| p.gpu_mem_used_bytes.is_some());
    println!(
        "  gpu readings     {}",
        if gpu { "yes" } else { "none (no GPU found)" }
    );
    let per_process = series
        .points
        .iter()
        .any(|p| p.server_gpu_mem_bytes.is_some());
    println!(
        "  per-process gpu  {}",
        if per_process {
            "yes (the watched tree's GPU memory is read every tick)"
        } else {
            "none (no per-process GPU reading here)"
        }
    );
    if std::env::var_os("OZONE_BENCH_JSON").is_some() {
        println!(
            "{{\"interval_ms\":{},\"seconds\":{:.3},\"ticks\":{},\"skipped\":{},\
             \"cpu_ms_per_s\":{:.3},\"cpu_percent_of_core\":{:.4},\"jitter_p50_ms\":{:.3},\
             \"jitter_p99_ms\":{:.3},\"gpu_readings\":{gpu},\"per_process_gpu\":{per_process}}}",
            series.interval_ms,
            wall.as_secs_f64(),
            series.points.len(),
            ticks.skipped,
            cpu.as_secs_f64() * 1000.0 / wall.as_secs_f64(),
            cpu_share,
            percentile(&jitter_us, 50.0) as f64 / 1000.0,
            percentile(&jitter_us, 99.0) as f64 / 1000.0,
        );
    }
}
