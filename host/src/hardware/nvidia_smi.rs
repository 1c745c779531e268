//! `nvidia-smi` CSV: the fallback when NVML cannot be loaded. Spawning it costs tens of
//! milliseconds, so the sampler calls it at most once a second.

use super::tool::{stdout_of, TOOL_TIMEOUT};
use super::{GpuInfo, GpuVendor, Measured, Source};

/// The fields asked for, in order. `--format=csv,noheader,nounits`: memory in MiB.
pub const QUERY: &str =
    "index,name,driver_version,memory.total,memory.used,temperature.gpu,utilization.gpu";

/// Runs `nvidia-smi`; `None` when it is absent, fails or hangs.
pub fn run() -> Option<Vec<GpuInfo>> {
    let query = format!("--query-gpu={QUERY}");
    let text = stdout_of(
        "nvidia-smi",
        &[&query, "--format=csv,noheader,nounits"],
        TOOL_TIMEOUT,
    )?;
    Some(parse(&text))
}

/// Parses the CSV produced by [`QUERY`], one GPU per line. Fields are separated by `, `;
/// `[N/A]`, `[Not Supported]` and similar mean absent.
pub fn parse(text: &str) -> Vec<GpuInfo> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .filter_map(|(row, line)| parse_line(row, line))
        .collect()
}

fn parse_line(row: usize, line: &str) -> Option<GpuInfo> {
    let fields: Vec<Option<&str>> = line.split(',').map(field).collect();
    if fields.len() < 7 {
        return None;
    }
    let text = |i: usize| fields[i].map(|s| Measured::new(s.to_owned(), Source::NvidiaSmi));
    let number = |i: usize| fields[i].and_then(|s| s.parse::<f64>().ok());
    let mib = |i: usize| {
        number(i).map(|m| Measured::new((m * 1024.0 * 1024.0) as u64, Source::NvidiaSmi))
    };
    Some(GpuInfo {
        index: fields[0].and_then(|s| s.parse().ok()).unwrap_or(row as u32),
        vendor: GpuVendor::Nvidia,
        name: text(1),
        driver: text(2),
        vram_total_bytes: mib(3),
        vram_used_bytes: mib(4),
        gtt_total_bytes: None,
        gtt_used_bytes: None,
        unified_memory: false,
        temperature_c: number(5).map(|t| Measured::new(t, Source::NvidiaSmi)),
        utilization_percent: number(6).map(|u| Measured::new(u, Source::NvidiaSmi)),
    })
}

/// One process holding GPU memory, as `nvidia-smi --query-compute-apps=…` prints it
/// (NVML's per-process list: `nvmlDeviceGetComputeRunningProcesses`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComputeApp {
    pub pid: u32,
    pub process_name: Option<String>,
    /// `used_gpu_memory`; absent where the driver cannot say (`[N/A]`).
    pub used_bytes: Option<u64>,
}

/// Parses `--query-compute-apps` CSV *with* its header line (`--format=csv` or
/// `csv,nounits`), whatever the columns asked for and their order: the header names the
/// `pid`, `process_name` and `used_gpu_memory [MiB]` columns. Values may carry ` MiB`.
pub fn parse_compute_apps(text: &str) -> Vec<ComputeApp> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let Some(header) = lines.next() else {
        return Vec::new();
    };
    let columns: Vec<String> = header.split(',').map(|c| c.trim().to_owned()).collect();
    let find = |name: &str| columns.iter().position(|c| c.starts_with(name));
    let (Some(pid), Some(used)) = (find("pid"), find("used_gpu_memory").or(find("used_memory")))
    else {
        return Vec::new();
    };
    let name = find("process_name");
    lines
        .filter_map(|line| {
            let fields: Vec<Option<&str>> = line.split(',').map(field).collect();
            let get = |i: usize| fields.get(i).copied().flatten();
            Some(ComputeApp {
                pid: get(pid)?.parse().ok()?,
                process_name: name.and_then(get).map(str::to_owned),
                used_bytes: get(used)
                    .and_then(|v| v.trim_end_matches("MiB").trim().parse::<u64>().ok())
                    .map(|mib| mib << 20),
            })
        })
        .collect()
}

/// A trimmed field, or `None` for nvidia-smi's "no value" markers.
fn field(raw: &str) -> Option<&str> {
    let s = raw.trim();
    let absent = s.is_empty() || s.starts_with('[') || s.eq_ignore_ascii_case("N/A");
    (!absent).then_some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_gpus_with_not_available_fields() {
        let gpus = parse(include_str!(
            "../../tests/fixtures/hardware/nvidia-smi/two-gpus.csv"
        ));
        assert_eq!(gpus.len(), 2);
        let h100 = &gpus[0];
        assert_eq!(
            h100.name.as_ref().map(|m| m.value.as_str()),
            Some("NVIDIA H100 80GB HBM3")
        );
        assert_eq!(
            h100.driver.as_ref().map(|m| m.value.as_str()),
            Some("550.54.15")
        );
        assert_eq!(h100.vram_total_bytes.map(|m| m.value), Some(81559 << 20));
        assert_eq!(h100.vram_used_bytes.map(|m| m.value), Some(1 << 20));
        assert_eq!(h100.temperature_c.map(|m| m.value), Some(31.0));
        assert_eq!(h100.utilization_percent.map(|m| m.value), Some(0.0));
        assert_eq!(
            h100.vram_total_bytes.map(|m| m.source),
            Some(Source::NvidiaSmi)
        );

        let second = &gpus[1];
        assert_eq!(second.index, 1);
        assert_eq!(second.vram_used_bytes.map(|m| m.value), Some(20145 << 20));
        // `[N/A]` and `[Not Supported]`: absent, never 0.
        assert_eq!(second.temperature_c, None);
        assert_eq!(second.utilization_percent, None);
    }

    #[test]
    fn compute_apps_of_a_llama_server_on_an_rtx_3090() {
        let apps = parse_compute_apps(include_str!(
            "../../tests/fixtures/hardware/nvidia-smi/compute-apps-rtx3090-llama-server.csv"
        ));
        assert_eq!(
            apps,
            vec![ComputeApp {
                pid: 1_106_871,
                process_name: Some("/app/llama-server".into()),
                used_bytes: Some(23_342 << 20),
            }]
        );
    }

    #[test]
    fn compute_apps_of_three_processes_in_another_column_order() {
        let apps = parse_compute_apps(include_str!(
            "../../tests/fixtures/hardware/nvidia-smi/compute-apps-l40s-triton.csv"
        ));
        let pids: Vec<u32> = apps.iter().map(|a| a.pid).collect();
        assert_eq!(pids, [44378, 44966, 52114]);
        let total: u64 = apps.iter().filter_map(|a| a.used_bytes).sum();
        assert_eq!(total, (1836 + 974 + 6294) << 20);
        // No header, no columns: nothing rather than a guess.
        assert!(parse_compute_apps("1234, python, 400\n").is_empty());
        assert_eq!(
            parse_compute_apps("pid, used_gpu_memory [MiB]\n7, [N/A]\n")[0].used_bytes,
            None
        );
    }

    #[test]
    fn blank_and_short_lines_are_skipped() {
        assert!(parse("\n\nNVIDIA-SMI has failed\n").is_empty());
    }
}
