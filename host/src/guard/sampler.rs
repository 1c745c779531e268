//! The 100 ms sampler: its own OS thread reads RAM, CPU, GPU memory and temperature
//! and the watched process tree's resident and GPU memory every tick, keeps the series and its
//! peaks, and runs the guard on every point.
//!
//! Ticks are scheduled on absolute deadlines (`start + n × interval`), so one slow read
//! does not shift every later tick; a tick that is more than a whole interval late is
//! skipped rather than bunched. On a breach the guard publishes it on a
//! `tokio::sync::watch` channel and, with `kill_on_breach`, SIGKILLs the watched process
//! tree right after, so a trial's in-flight requests fail at once.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::{kill_tree, Capacity, Guard, SamplerError, Thresholds};
use crate::hardware::gpu_monitor::{self, GpuMonitor};
use crate::hardware::process_gpu::{ProcessGpuReader, ProcessGpuSource};
use crate::hardware::process_tree;
use crate::hardware::system::SystemReader;
use crate::record::{Breach, Peaks, SamplePoint, SampleSeries};

/// How the sampler runs.
#[derive(Debug, Clone)]
pub struct SamplerOptions {
    /// Tick period (`peak_detection.sampling_interval_ms`, 100 ms).
    pub interval: Duration,
    /// Where sysfs is mounted (`/sys`); tests point it at a fixture tree.
    pub sysfs_root: PathBuf,
    /// Where procfs is mounted (`/proc`).
    pub proc_root: PathBuf,
    /// Limits checked on every point; `None`: record only, never breach.
    pub thresholds: Option<Thresholds>,
    /// SIGKILL the watched process tree on the first breach.
    pub kill_on_breach: bool,
    /// Where the watched tree's GPU memory is read (NVML, amdgpu fdinfo, a recording).
    pub process_gpu: ProcessGpuSource,
}

impl Default for SamplerOptions {
    fn default() -> Self {
        Self {
            interval: Duration::from_millis(100),
            sysfs_root: PathBuf::from("/sys"),
            proc_root: PathBuf::from("/proc"),
            thresholds: None,
            kill_on_breach: false,
            process_gpu: ProcessGpuSource::Detect,
        }
    }
}

/// Actual start time of every tick, in µs since the sampler started (for the jitter
/// benchmark and diagnostics).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TickTimes {
    pub interval_us: u64,
    pub ticks_us: Vec<u64>,
    /// Scheduled ticks skipped because the previous one overran a whole interval.
    pub skipped: u64,
}

/// A running sampler. Dropping it stops the thread (the series is lost); call
/// [`Sampler::stop`] to keep it.
pub struct Sampler {
    watched: Arc<AtomicU32>,
    breach_tx: Arc<watch::Sender<Option<Breach>>>,
    stop_tx: mpsc::Sender<()>,
    thread: Option<JoinHandle<(SampleSeries, TickTimes)>>,
    interval: Duration,
}

impl Sampler {
    /// Starts sampling on a new thread. The first point is taken at once.
    pub fn start(opts: SamplerOptions) -> Result<Sampler, SamplerError> {
        if opts.interval.is_zero() {
            return Err(SamplerError::ZeroInterval);
        }
        let watched = Arc::new(AtomicU32::new(0));
        let (breach_tx, _) = watch::channel(None);
        let breach_tx = Arc::new(breach_tx);
        let (stop_tx, stop_rx) = mpsc::channel();
        let interval = opts.interval;
        let worker = Worker {
            opts,
            watched: Arc::clone(&watched),
            breach_tx: Arc::clone(&breach_tx),
            stop_rx,
        };
        let thread = std::thread::Builder::new()
            .name("ozone-sampler".into())
            .spawn(move || worker.run())
            .map_err(SamplerError::SpawnThread)?;
        Ok(Sampler {
            watched,
            breach_tx,
            stop_tx,
            thread: Some(thread),
            interval,
        })
    }

    /// Sets the root of the process tree to measure (and kill on a breach): the
    /// inference server. `None` stops measuring process memory.
    pub fn watch_pid(&self, pid: Option<u32>) {
        self.watched.store(pid.unwrap_or(0), Ordering::SeqCst);
    }

    /// The first breach, once it happens; it stays set until the sampler stops. A trial
    /// `select!`s on `receiver.wait_for(Option::is_some)` next to its requests
    /// (`wait_for` also sees a breach raised before the receiver was made; `changed()`
    /// would not).
    pub fn breaches(&self) -> watch::Receiver<Option<Breach>> {
        self.breach_tx.subscribe()
    }

    /// Stops the thread and returns every point with the peaks.
    pub fn stop(self) -> SampleSeries {
        self.stop_with_ticks().0
    }

    /// [`Sampler::stop`], plus when each tick actually ran.
    pub fn stop_with_ticks(mut self) -> (SampleSeries, TickTimes) {
        let _ = self.stop_tx.send(());
        let interval_ms = self.interval.as_millis() as u64;
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            _ => {
                tracing::error!("the hardware sampler thread panicked; its series is lost");
                (
                    SampleSeries {
                        interval_ms,
                        ..SampleSeries::default()
                    },
                    TickTimes::default(),
                )
            }
        }
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = self.stop_tx.send(());
            let _ = thread.join();
        }
    }
}

struct Worker {
    opts: SamplerOptions,
    watched: Arc<AtomicU32>,
    breach_tx: Arc<watch::Sender<Option<Breach>>>,
    stop_rx: mpsc::Receiver<()>,
}

impl Worker {
    fn run(self) -> (SampleSeries, TickTimes) {
        let mut system = SystemReader::new(&self.opts.proc_root);
        let mut gpus = GpuMonitor::detect(&self.opts.sysfs_root);
        let mut process_gpu = ProcessGpuReader::open(
            &self.opts.process_gpu,
            &self.opts.sysfs_root,
            &self.opts.proc_root,
        );
        let interval = self.opts.interval;
        let mut series = SampleSeries {
            interval_ms: interval.as_millis() as u64,
            points: Vec::new(),
            peaks: Peaks::default(),
        };
        let mut ticks = TickTimes {
            interval_us: interval.as_micros() as u64,
            ..TickTimes::default()
        };
        let mut guard: Option<Guard> = None;
        let mut watched = WatchedProcess::new(&self.opts.proc_root);
        let start = Instant::now();
        let mut n: u32 = 0;
        loop {
            let now = start.elapsed();
            ticks.ticks_us.push(now.as_micros() as u64);
            let sys = system.read();
            let gpu = gpu_monitor::totals(&gpus.read());
            let requested = self.watched.load(Ordering::SeqCst);
            let pid = watched.current(requested);
            let tree = if pid == 0 {
                Default::default()
            } else {
                system.tree(pid)
            };
            let server_gpu = match &mut process_gpu {
                Some(reader) if !tree.pids.is_empty() => reader.used_bytes(&tree.pids),
                _ => None,
            };
            let point = SamplePoint {
                t_ms: now.as_millis() as u64,
                gpu_mem_used_bytes: gpu.used_bytes,
                ram_used_bytes: sys.ram_used_bytes,
                ram_available_bytes: sys.ram_available_bytes,
                process_rss_bytes: tree.rss_bytes,
                server_gpu_mem_bytes: server_gpu,
                gpu_temp_c: gpu.hottest_c,
                cpu_percent: sys.cpu_percent,
            };
            if let Some(thresholds) = &self.opts.thresholds {
                // Totals are taken from the first tick that has them.
                let capacity = Capacity {
                    gpu_mem_total_bytes: gpu.total_bytes,
                    ram_total_bytes: sys.ram_total_bytes,
                };
                let guard = guard
                    .get_or_insert_with(|| Guard::new(thresholds.clone(), Capacity::default()));
                guard.learn_capacity(capacity);
                if self.breach_tx.borrow().is_none() {
                    if let Some(breach) = guard.check(&point) {
                        // Re-check just before killing: the pid must still be the server.
                        self.raise(breach, watched.current(requested));
                    }
                }
            }
            series.peaks.observe(&point);
            series.points.push(point);

            // Next absolute deadline; skip whole intervals already missed.
            n += 1;
            let elapsed = start.elapsed();
            let mut next = interval * n;
            if elapsed > next + interval {
                let behind = (elapsed.as_nanos() / interval.as_nanos()) as u32;
                ticks.skipped += u64::from(behind + 1 - n);
                n = behind + 1;
                next = interval * n;
            }
            match self.stop_rx.recv_timeout(next.saturating_sub(elapsed)) {
                Err(RecvTimeoutError::Timeout) => {}
                Ok(()) | Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        (series, ticks)
    }

    /// `pid` 0: nothing to kill.
    fn raise(&self, breach: Breach, pid: u32) {
        tracing::debug!("safety limit crossed: {breach}");
        // Publish first so a trial sees why its requests are about to fail.
        self.breach_tx.send_replace(Some(breach));
        if self.opts.kill_on_breach && pid != 0 {
            let killed = kill_tree(&self.opts.proc_root, pid);
            tracing::debug!("killed {killed} process(es) of the tree rooted at pid {pid}");
        }
    }
}

/// The watched pid together with its start time, so that once the server has exited
/// and its pid is reused by an unrelated process, that process is neither measured nor
/// killed. Without `/proc` (not Linux) the pid is trusted as is.
struct WatchedProcess {
    proc_root: PathBuf,
    verify: bool,
    pid: u32,
    started: Option<u64>,
}

impl WatchedProcess {
    fn new(proc_root: &std::path::Path) -> Self {
        Self {
            proc_root: proc_root.to_path_buf(),
            verify: process_tree::start_time(proc_root, std::process::id()).is_some(),
            pid: 0,
            started: None,
        }
    }

    /// `requested` if it is (still) the process first seen under that pid, else 0.
    fn current(&mut self, requested: u32) -> u32 {
        if requested != self.pid {
            self.pid = requested;
            self.started = process_tree::start_time(&self.proc_root, requested);
        }
        if requested == 0 || !self.verify {
            return requested;
        }
        match self.started {
            Some(started)
                if process_tree::start_time(&self.proc_root, requested) == Some(started) =>
            {
                requested
            }
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Metric;
    use std::path::Path;

    fn apu_fixture() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hardware/sysfs/apu-strix-halo")
    }

    #[test]
    fn a_guard_on_the_apu_fixture_sees_gtt_as_gpu_memory() {
        // 19.2 GiB of 64.5 GiB in use: fine at 90 %, a breach at 25 %.
        let t = gpu_monitor::totals(&GpuMonitor::amd_sysfs_only(&apu_fixture()).read());
        let point = SamplePoint {
            gpu_mem_used_bytes: t.used_bytes,
            gpu_temp_c: t.hottest_c,
            ..SamplePoint::default()
        };
        let capacity = Capacity {
            gpu_mem_total_bytes: t.total_bytes,
            ram_total_bytes: None,
        };
        assert_eq!(
            Guard::new(Thresholds::default(), capacity).check(&point),
            None
        );
        let tight = Thresholds {
            max_vram_percent: 25.0,
            ..Thresholds::default()
        };
        let breach = Guard::new(tight, capacity).check(&point).expect("breach");
        assert_eq!(breach.metric, Metric::Vram);
    }

    #[test]
    fn sampler_can_be_shared_between_tasks() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Sampler>();
    }

    #[test]
    fn a_reused_pid_is_neither_measured_nor_killed() {
        let root = std::env::temp_dir().join(format!("ozone-proc-{}", std::process::id()));
        let stat = |pid: u32, started: u64| {
            let dir = root.join(pid.to_string());
            std::fs::create_dir_all(&dir).expect("temp dir");
            let fields = format!("{pid} (x) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 {started} 0 0");
            std::fs::write(dir.join("stat"), fields).expect("stat written");
        };
        stat(std::process::id(), 1);
        stat(42, 1000);
        let mut watched = WatchedProcess::new(&root);
        assert_eq!(watched.current(42), 42);
        assert_eq!(watched.current(42), 42);
        stat(42, 2000); // the server exited and pid 42 now names another process
        assert_eq!(watched.current(42), 0);
        assert_eq!(watched.current(0), 0);
        stat(43, 3000);
        assert_eq!(watched.current(43), 43); // a new server, watched afresh
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn zero_interval_is_refused() {
        let opts = SamplerOptions {
            interval: Duration::ZERO,
            ..SamplerOptions::default()
        };
        assert!(matches!(
            Sampler::start(opts),
            Err(SamplerError::ZeroInterval)
        ));
    }

    #[test]
    fn stop_does_not_wait_for_the_next_tick() {
        let sampler = Sampler::start(SamplerOptions {
            interval: Duration::from_secs(3600),
            ..SamplerOptions::default()
        })
        .expect("starts");
        std::thread::sleep(Duration::from_millis(50));
        let series = sampler.stop();
        // Only the immediate first point: stop woke the thread instead of an hour's wait.
        assert_eq!(series.points.len(), 1);
        assert_eq!(series.interval_ms, 3_600_000);
    }

    #[test]
    fn gpu_readings_come_from_the_configured_sysfs_root() {
        let sampler = Sampler::start(SamplerOptions {
            sysfs_root: apu_fixture(),
            interval: Duration::from_millis(20),
            ..SamplerOptions::default()
        })
        .expect("starts");
        std::thread::sleep(Duration::from_millis(100));
        let series = sampler.stop();
        // VRAM + GTT of the APU fixture (plus any real NVIDIA GPU of the machine).
        let fixture_used = 201_326_592 + 20_401_094_656;
        assert!(series
            .peaks
            .gpu_mem_used_bytes
            .is_some_and(|u| u >= fixture_used));
        assert!(series.peaks.gpu_temp_c.is_some_and(|t| t >= 38.25));
        assert!(series.points.len() >= 2);
        // Nothing watched: no process readings.
        assert!(series.points.iter().all(|p| p.process_rss_bytes.is_none()));
        assert!(series
            .points
            .iter()
            .all(|p| p.server_gpu_mem_bytes.is_none()));
    }
}
