//! `rocm-smi` CSV: the AMD fallback when sysfs is not readable.
//!
//! `--showmeminfo vram --csv` prints `device,VRAM Total Memory (B),VRAM Total Used
//! Memory (B)`: field 2 is used *bytes*. (With `--showmemuse` field 2 is a busy
//! percentage instead, which is why columns are found by header name, not position
//! alone.) `--showtemp --csv` prints one column per sensor; the edge sensor is used,
//! as with sysfs' `temp1_input`.

use super::tool::{stdout_of, TOOL_TIMEOUT};
use super::{GpuInfo, GpuVendor, Measured, Source};
use std::collections::BTreeMap;

/// Runs both `rocm-smi` queries; `None` when it is absent or reports no device.
pub fn run() -> Option<Vec<GpuInfo>> {
    let mem = run_csv(&["--showmeminfo", "vram", "--csv"])?;
    let temp = run_csv(&["--showtemp", "--csv"]).unwrap_or_default();
    let gpus = merge(&parse_vram(&mem), &parse_temperature(&temp));
    (!gpus.is_empty()).then_some(gpus)
}

fn run_csv(args: &[&str]) -> Option<String> {
    stdout_of("rocm-smi", args, TOOL_TIMEOUT)
}

/// Rows of a rocm-smi CSV as (device, column name → value). Lines before the header
/// (banners, warnings) are skipped.
fn rows(text: &str) -> Vec<(String, BTreeMap<String, String>)> {
    let mut lines = text.lines().skip_while(|l| !l.starts_with("device,"));
    let Some(header) = lines.next() else {
        return Vec::new();
    };
    let columns: Vec<&str> = header.split(',').map(str::trim).collect();
    lines
        .filter(|l| l.starts_with("card"))
        .map(|line| {
            let values: Vec<&str> = line.split(',').map(str::trim).collect();
            let map = columns
                .iter()
                .zip(&values)
                .skip(1)
                .map(|(c, v)| (c.to_string(), v.to_string()))
                .collect();
            (values[0].to_owned(), map)
        })
        .collect()
}

/// device → (total bytes, used bytes) from `--showmeminfo vram --csv`.
pub fn parse_vram(text: &str) -> BTreeMap<String, (Option<u64>, Option<u64>)> {
    rows(text)
        .into_iter()
        .map(|(device, cols)| {
            let bytes = |name: &str| cols.get(name).and_then(|v| v.parse::<u64>().ok());
            let total = bytes("VRAM Total Memory (B)");
            let used = bytes("VRAM Total Used Memory (B)");
            (device, (total, used))
        })
        .collect()
}

/// device → edge temperature (°C) from `--showtemp --csv`.
pub fn parse_temperature(text: &str) -> BTreeMap<String, f64> {
    rows(text)
        .into_iter()
        .filter_map(|(device, cols)| {
            let edge = cols
                .iter()
                .find(|(c, _)| c.contains("(Sensor edge)"))
                .or_else(|| cols.iter().next())?;
            Some((device, edge.1.parse::<f64>().ok()?))
        })
        .collect()
}

pub fn merge(
    vram: &BTreeMap<String, (Option<u64>, Option<u64>)>,
    temps: &BTreeMap<String, f64>,
) -> Vec<GpuInfo> {
    vram.iter()
        .map(|(device, (total, used))| GpuInfo {
            index: device
                .strip_prefix("card")
                .and_then(|n| n.parse().ok())
                .unwrap_or(0),
            vendor: GpuVendor::Amd,
            name: None,
            driver: None,
            vram_total_bytes: total.map(|v| Measured::new(v, Source::RocmSmi)),
            vram_used_bytes: used.map(|v| Measured::new(v, Source::RocmSmi)),
            gtt_total_bytes: None,
            gtt_used_bytes: None,
            unified_memory: false,
            temperature_c: temps
                .get(device)
                .map(|t| Measured::new(*t, Source::RocmSmi)),
            utilization_percent: None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vram_csv_field_two_is_used_bytes() {
        let vram = parse_vram(include_str!(
            "../../tests/fixtures/hardware/rocm-smi/showmeminfo-vram.csv"
        ));
        assert_eq!(vram.len(), 2);
        assert_eq!(vram["card0"], (Some(25_753_026_560), Some(1_365_958_656)));
        assert_eq!(vram["card1"], (Some(17_163_091_968), Some(10_526_720)));
    }

    #[test]
    fn showmemuse_percentages_are_not_bytes() {
        // Same position, different meaning: no byte column, so nothing is read.
        let vram = parse_vram(include_str!(
            "../../tests/fixtures/hardware/rocm-smi/showmemuse.csv"
        ));
        assert_eq!(vram["card0"], (None, None));
    }

    #[test]
    fn temperatures_use_the_edge_sensor() {
        let temps = parse_temperature(include_str!(
            "../../tests/fixtures/hardware/rocm-smi/showtemp.csv"
        ));
        assert_eq!(temps["card0"], 45.0);
        assert_eq!(temps["card1"], 39.0);
        let gpus = merge(
            &parse_vram(include_str!(
                "../../tests/fixtures/hardware/rocm-smi/showmeminfo-vram.csv"
            )),
            &temps,
        );
        assert_eq!(gpus[1].index, 1);
        assert_eq!(gpus[1].temperature_c.map(|m| m.value), Some(39.0));
        assert_eq!(
            gpus[1].vram_used_bytes.map(|m| m.source),
            Some(Source::RocmSmi)
        );
    }
}
