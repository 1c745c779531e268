//! `ozone probe --json`, run as the built binary, agrees with what the OS says (Linux:
//! /proc/meminfo and nproc).
#![cfg(target_os = "linux")]

use std::process::Command;

use serde_json::Value;

use crate::common::cli::ozone;

fn probe_json() -> Value {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = ozone(dir.path(), &["probe", "--json"]).run();
    out.ok();
    out.json()
}

fn meminfo_kib(field: &str) -> u64 {
    let text = std::fs::read_to_string("/proc/meminfo").expect("/proc/meminfo");
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.trim().strip_suffix("kB")?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/meminfo"))
}

#[test]
fn probe_json_agrees_with_proc_meminfo_and_nproc() {
    let json = probe_json();

    let total = &json["memory"]["total_bytes"];
    assert_eq!(
        total["value"].as_u64(),
        Some(meminfo_kib("MemTotal") * 1024)
    );
    assert_eq!(total["source"], "procfs");
    // Available memory moves while the tests run: within 5 % of total.
    let available = json["memory"]["available_bytes"]["value"]
        .as_u64()
        .expect("available");
    let now = meminfo_kib("MemAvailable") * 1024;
    let tolerance = meminfo_kib("MemTotal") * 1024 / 20;
    assert!(
        available.abs_diff(now) <= tolerance,
        "available {available} vs /proc/meminfo {now}"
    );

    let nproc = Command::new("nproc")
        .arg("--all")
        .output()
        .expect("nproc runs");
    let nproc: u64 = String::from_utf8_lossy(&nproc.stdout)
        .trim()
        .parse()
        .expect("a number");
    assert_eq!(json["cpu"]["logical_cores"]["value"].as_u64(), Some(nproc));
}

#[test]
fn probe_json_has_every_documented_field() {
    let json = probe_json();
    for key in ["taken_at", "hostname", "os", "cpu", "memory", "gpus"] {
        assert!(json.get(key).is_some(), "missing {key}");
    }
    for key in ["model", "physical_cores", "logical_cores"] {
        assert!(json["cpu"].get(key).is_some(), "missing cpu.{key}");
    }
    assert!(json["gpus"].is_array());
}

#[test]
fn probe_table_reads_a_fixture_sysfs_tree() {
    let root = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/hardware/sysfs/discrete-rx7900xtx"
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let out = ozone(dir.path(), &["probe", "--no-smi", "--sysfs-root", root]).run();
    let table = out.ok();
    assert!(table.contains("AMD Radeon RX 7900 XTX"), "{table}");
    assert!(table.contains("1.3 GiB / 24.0 GiB"), "{table}");
    assert!(table.contains("46°C"), "{table}");
}
