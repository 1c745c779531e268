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
    fn blank_and_short_lines_are_skipped() {
        assert!(parse("\n\nNVIDIA-SMI has failed\n").is_empty());
    }
}
