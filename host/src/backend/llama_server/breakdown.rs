//! llama.cpp's per-device memory breakdown, read from a server's log.
//!
//! The table, in the formats its versions printed (the function's name changed from
//! `llama_print_memory_breakdown` to `llama_memory_breakdown_print` to
//! `common_memory_breakdown_print`; the columns stayed):
//!
//! ```text
//! | memory breakdown [MiB]   | total   free    self   model   context   compute    unaccounted |
//! |   - ROCm0 ((TM) Pro VII) | 16368 =  233 + (8404 =  6078 +    1904 +     422) +        7729 |
//! |   - Host                 |                  694 =   552 +       0 +     142                |
//! ```
//!
//! and, in the first builds, without the pipes: `  - CUDA0 (RTX 4090):  24080 = 9436 +
//! (14193 = 13169 + 38 + 985) + 451`, the CPU a row of its own with its total and no free.
//!
//! llama-server prints it when it stops (at verbosity 4 and above), after `cleaning up
//! before exit`; with `-fit on` it also prints one for each of fit's dry runs while it
//! loads — projections, not what the server took. [`exit_breakdown`] is the one printed
//! at exit; [`parse_breakdowns`] reads every table.

use crate::record::{DeviceFree, DeviceMemory, HostMemory, MemoryBreakdown};

/// Where a table was printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakdownWhen {
    /// While the server loaded: one of fit's dry runs, or an estimate of a draft
    /// context — llama.cpp's projection.
    Projected,
    /// After the server (or llama-cli) said it was exiting: what it had allocated.
    AtExit,
}

/// One table as printed, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakdownTable {
    pub when: BreakdownWhen,
    pub breakdown: MemoryBreakdown,
}

/// Markers of an exit: the server's shutdown line, llama-cli's and the older
/// binaries' performance report (printed just before the table).
const EXIT_MARKERS: &[&str] = &[
    "cleaning up before exit",
    "llama_perf_context_print:",
    "common_perf_print:",
];

/// The function names the table was printed by, over llama.cpp's versions.
const TABLE_MARKERS: &[&str] = &["memory_breakdown_print:", "llama_print_memory_breakdown:"];

/// The breakdown llama-server printed when it stopped, if it did (a server that was
/// killed, never came up, or runs below verbosity 4 prints none; a CPU-only server one
/// without devices).
pub fn exit_breakdown(lines: &[String]) -> Option<MemoryBreakdown> {
    parse_breakdowns(lines)
        .into_iter()
        .rev()
        .find(|t| t.when == BreakdownWhen::AtExit)
        .map(|t| t.breakdown)
}

/// The device memory llama-server allocated as it loaded, by its own account: the sum,
/// over the devices that are not the host, of its `<device> model|KV|compute|output
/// buffer size = N MiB` lines (the last of each, where a line repeats), MiB. `None` when
/// no device buffer was printed (a CPU-only server, or one below verbosity 3). Unlike the
/// breakdown table it is there as soon as the server is up, so a GPU-memory budget can
/// be held against it where nothing reads a process's GPU memory live.
pub fn device_buffers_mib(lines: &[String]) -> Option<f64> {
    let mut buffers: Vec<(String, String, f64)> = Vec::new();
    for line in lines {
        let Some((head, size)) = line.split_once(" buffer size =") else {
            continue;
        };
        let Some(mib) = size
            .trim()
            .strip_suffix("MiB")
            .and_then(|n| n.trim().parse::<f64>().ok())
        else {
            continue;
        };
        let mut words = head.split_whitespace().rev();
        let (Some(kind), Some(device)) = (words.next(), words.next()) else {
            continue;
        };
        let host = device.contains("CPU") || device.to_ascii_lowercase().contains("host");
        if host || !matches!(kind, "model" | "KV" | "compute" | "output" | "RS") {
            continue;
        }
        match buffers
            .iter_mut()
            .find(|(d, k, _)| d == device && k == kind)
        {
            Some(entry) => entry.2 = mib,
            None => buffers.push((device.to_owned(), kind.to_owned(), mib)),
        }
    }
    (!buffers.is_empty()).then(|| buffers.iter().map(|(_, _, mib)| mib).sum())
}

/// The first GPU llama-server loaded on and its free memory then (`using device Vulkan0
/// (…) - 2048 MiB free`), with its total where its device list printed one (`Vulkan0 :
/// llvmpipe (…) (2048 MiB, 2048 MiB free)`).
pub fn loaded_device(lines: &[String]) -> Option<DeviceFree> {
    let (name, free_mib) = lines.iter().find_map(|line| {
        let rest = &line[line.find("using device ")? + "using device ".len()..];
        let name = rest.split_whitespace().next()?.to_owned();
        let free = rest.rsplit_once(" - ")?.1.strip_suffix(" MiB free")?;
        Some((name, free.trim().parse::<u64>().ok()?))
    })?;
    let total_mib = lines.iter().find_map(|line| {
        let at = line.find(&format!("- {name} :"))?;
        let (_, figures) = line[at..].rsplit_once('(')?;
        figures.split_once(" MiB,")?.0.trim().parse::<u64>().ok()
    });
    Some(DeviceFree {
        name,
        free_mib,
        total_mib,
    })
}

/// Every breakdown table in `lines`, in order. A table starts at its header (or at its
/// first row, where an excerpt lost the header) and takes the rows that follow until a
/// line that is neither (lines a user elided as `[skip]` do not end it).
pub fn parse_breakdowns(lines: &[String]) -> Vec<BreakdownTable> {
    let mut tables = Vec::new();
    let mut current: Option<BreakdownTable> = None;
    let mut exiting = false;
    for line in lines {
        if EXIT_MARKERS.iter().any(|m| line.contains(m)) {
            exiting = true;
        }
        let when = if exiting {
            BreakdownWhen::AtExit
        } else {
            BreakdownWhen::Projected
        };
        match classify(line) {
            Line::Header => {
                tables.extend(current.take());
                current = Some(BreakdownTable {
                    when,
                    breakdown: MemoryBreakdown::default(),
                });
            }
            Line::Row(row) => {
                let table = current.get_or_insert_with(|| BreakdownTable {
                    when,
                    breakdown: MemoryBreakdown::default(),
                });
                match row {
                    Row::Device(d) => table.breakdown.devices.push(d),
                    Row::Host(h) => table.breakdown.host.push(h),
                }
            }
            Line::Elided => {}
            Line::Other => tables.extend(current.take()),
        }
    }
    tables.extend(current);
    tables
        .into_iter()
        .filter(|t| !t.breakdown.devices.is_empty() || !t.breakdown.host.is_empty())
        .collect()
}

enum Line {
    Header,
    Row(Row),
    /// `[skip]`, `...`: what a user cut from a pasted table.
    Elided,
    Other,
}

enum Row {
    Device(DeviceMemory),
    Host(HostMemory),
}

fn classify(line: &str) -> Line {
    let body = match TABLE_MARKERS
        .iter()
        .find_map(|m| line.find(m).map(|i| &line[i + m.len()..]))
    {
        Some(body) => body,
        // Tables pasted without their prefix still start with `|` or `-`.
        None if line.contains("memory breakdown") => line,
        None if line.trim_start().starts_with("|   - ") => line,
        None => {
            let t = line.trim();
            return if t == "[skip]" || t == "..." || t == "[...]" {
                Line::Elided
            } else {
                Line::Other
            };
        }
    };
    if body.contains("memory breakdown") {
        return Line::Header;
    }
    parse_row(body).map_or(Line::Other, Line::Row)
}

/// `|   - CUDA0 (RTX 5090)   | 32111 = 31605 + (18058 = 16386 + 1024 + 648) + -17552 |`,
/// `|   - Host | 1234 = 682 + 0 + 552 |`, or the first builds' `  - CUDA0 (RTX 4090):
/// 24080 = …` and `  - CPU (EPYC 7742):  515628   72 = 0 + 57 + 15`.
fn parse_row(body: &str) -> Option<Row> {
    let body = body
        .trim()
        .trim_start_matches('|')
        .trim_end_matches('|')
        .trim();
    let body = body.strip_prefix("- ")?;
    let (label, figures) = match body.split_once('|') {
        Some((label, figures)) => (label.trim(), figures),
        None => split_colon(body)?,
    };
    let (name, description) = name_and_description(label);
    let grouped = figures.contains('(');
    let numbers = numbers(figures)?;
    let mib = |i: usize| numbers.get(i).and_then(|&n| u64::try_from(n).ok());
    match (grouped, numbers.len()) {
        // total = free + (self = model + context + compute) + unaccounted: the last is
        // left out (recomputed from the others; some builds printed it wrapped around).
        (true, 7) => Some(Row::Device(DeviceMemory {
            name,
            description,
            total_mib: mib(0)?,
            free_mib: mib(1)?,
            self_mib: mib(2)?,
            model_mib: mib(3)?,
            context_mib: mib(4)?,
            compute_mib: mib(5)?,
        })),
        (false, 4) => Some(Row::Host(HostMemory {
            name,
            description,
            total_mib: None,
            self_mib: mib(0)?,
            model_mib: mib(1)?,
            context_mib: mib(2)?,
            compute_mib: mib(3)?,
        })),
        (false, 5) => Some(Row::Host(HostMemory {
            name,
            description,
            total_mib: Some(mib(0)?),
            self_mib: mib(1)?,
            model_mib: mib(2)?,
            context_mib: mib(3)?,
            compute_mib: mib(4)?,
        })),
        _ => None,
    }
}

/// `CUDA0 (RTX 4090):  24080 = …`: the label ends at the colon that the figures follow
/// (a device name may hold one, `RPC0 (10.0.0.2:50052)`).
fn split_colon(body: &str) -> Option<(&str, &str)> {
    body.match_indices(':').find_map(|(i, _)| {
        let rest = &body[i + 1..];
        rest.trim_start()
            .starts_with(|c: char| c.is_ascii_digit())
            .then(|| (body[..i].trim(), rest))
    })
}

/// `Vulkan0 (llvmpipe (LLVM 15.0.6, 256 bits))` → `Vulkan0`, `llvmpipe (LLVM 15.0.6, 256
/// bits)`; `Host` → `Host`, none.
fn name_and_description(label: &str) -> (String, Option<String>) {
    match label.split_once(" (") {
        Some((name, rest)) => {
            let description = rest.strip_suffix(')').unwrap_or(rest).trim();
            (
                name.trim().to_owned(),
                (!description.is_empty()).then(|| description.to_owned()),
            )
        }
        None => (label.trim().to_owned(), None),
    }
}

/// The integers of the figures, in order (`-17552` negative); `None` if anything else
/// than integers, `=`, `+`, parentheses and spaces is there.
fn numbers(figures: &str) -> Option<Vec<i64>> {
    let mut out = Vec::new();
    let mut chars = figures.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '=' | '+' | '(' | ')' => {}
            '-' | '0'..='9' => {
                let mut digits = String::from(c);
                while let Some(d) = chars.peek().copied().filter(char::is_ascii_digit) {
                    digits.push(d);
                    chars.next();
                }
                out.push(digits.parse().ok()?);
            }
            _ => return None,
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn lines(name: &str) -> Vec<String> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/llama_server")
            .join(name);
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn device(t: &MemoryBreakdown, i: usize) -> &DeviceMemory {
        &t.devices[i]
    }

    #[test]
    fn lavapipe_prints_its_breakdown_when_the_server_stops() {
        // The pinned wheel on lavapipe, -ngl 5 of 9 layers on the device (captured here).
        let log = lines("breakdown-vulkan-lavapipe.log");
        let tables = parse_breakdowns(&log);
        assert_eq!(tables.len(), 1, "{tables:?}");
        let at_exit = exit_breakdown(&log).expect("a breakdown at exit");
        let vulkan = device(&at_exit, 0);
        assert_eq!(vulkan.name, "Vulkan0");
        assert_eq!(
            vulkan.description.as_deref(),
            Some("llvmpipe (LLVM 15.0.6, 256 bits)")
        );
        assert_eq!((vulkan.total_mib, vulkan.free_mib), (2048, 2048));
        assert_eq!(
            vulkan.self_mib,
            vulkan.model_mib + vulkan.context_mib + vulkan.compute_mib
        );
        assert!(vulkan.model_mib > 0 && vulkan.context_mib > 0, "{vulkan:?}");
        // lavapipe's free memory does not move: the server's buffers are "unaccounted"
        // below zero.
        assert_eq!(vulkan.unaccounted_mib(), -(vulkan.self_mib as i64));
        let host = &at_exit.host[0];
        assert_eq!(host.name, "Host");
        // The layers left on the CPU hold the rest of the model and of the KV cache.
        assert!(host.model_mib > 0 && host.context_mib > 0, "{host:?}");
    }

    #[test]
    fn fits_dry_runs_are_projections_and_the_last_table_is_the_exit() {
        // -fit on at -c 4096 on lavapipe: a table per dry run, then the one at exit.
        let log = lines("fit-ctx-vulkan-lavapipe.log");
        let tables = parse_breakdowns(&log);
        assert!(tables.len() > 2, "{tables:?}");
        let (exit, projected): (Vec<_>, Vec<_>) =
            tables.iter().partition(|t| t.when == BreakdownWhen::AtExit);
        assert_eq!(exit.len(), 1);
        assert!(!projected.is_empty());
        // Fit's first projection: everything on the device.
        let first = device(&projected[0].breakdown, 0);
        assert_eq!(first.name, "Vulkan0");
        let last = device(&exit[0].breakdown, 0);
        assert!(last.self_mib < first.self_mib, "{first:?} {last:?}");
    }

    #[test]
    fn cuda_and_rocm_tables_of_public_runs() {
        // CUDA, 2026 format (`I` prefix), the RTX 5090 of llama.cpp PR #25465: an MTP
        // context estimate, then fit's first projection.
        let rtx = parse_breakdowns(&lines("fit-cuda-rtx5090-pr25465.log"));
        assert_eq!(rtx.len(), 2);
        let d = device(&rtx[1].breakdown, 0);
        assert_eq!(d.name, "CUDA0");
        assert_eq!(d.description.as_deref(), Some("RTX 5090"));
        assert_eq!(
            (
                d.total_mib,
                d.free_mib,
                d.self_mib,
                d.model_mib,
                d.context_mib,
                d.compute_mib
            ),
            (32111, 31153, 33975, 16386, 16832, 756)
        );
        assert_eq!(rtx[1].breakdown.host[0].self_mib, 1234);
        assert!(rtx.iter().all(|t| t.when == BreakdownWhen::Projected));

        // ROCm, two MI50s, fit's dry runs (llama.cpp issue #25487): the excerpt starts
        // mid-table; the next table is whole.
        let rocm = parse_breakdowns(&lines("breakdown-rocm-2gpu-issue25487.log"));
        assert_eq!(rocm.len(), 2, "{rocm:?}");
        let whole = &rocm[1].breakdown;
        assert_eq!(whole.devices.len(), 2);
        assert_eq!(device(whole, 0).name, "ROCm0");
        assert_eq!(device(whole, 0).description.as_deref(), Some("MI60 / MI50"));
        assert_eq!(device(whole, 0).self_mib, 27673);
        assert_eq!(device(whole, 1).model_mib, 8968);
        assert_eq!(whole.host[0].self_mib, 187_960);
        assert_eq!(
            whole.device_self_bytes(),
            Some((27673 + 13100) * 1024 * 1024)
        );

        // CUDA with a wrapped-around unaccounted column and lines the user elided
        // (llama.cpp issue #19437, GTX 1080 Ti): one table, before fit's verdict.
        let wrapped = parse_breakdowns(&lines("breakdown-cuda-gtx1080ti-issue19437.log"));
        assert_eq!(wrapped.len(), 1, "{wrapped:?}");
        let gtx = device(&wrapped[0].breakdown, 0);
        assert_eq!(
            (gtx.total_mib, gtx.free_mib, gtx.self_mib),
            (11165, 8702, 10001)
        );
        assert_eq!(gtx.unaccounted_mib(), 11165 - 8702 - 10001);
        assert_eq!(wrapped[0].breakdown.host[0].self_mib, 197);
    }

    #[test]
    fn the_first_format_without_pipes_three_gpus_and_the_cpu() {
        // llama.cpp PR #15860, which added the table (printed at exit by llama-cli; the
        // excerpt is the table alone, so nothing in it says exit).
        let log = lines("breakdown-cuda-3gpu-pr15860.log");
        let tables = parse_breakdowns(&log);
        assert_eq!(tables.len(), 1);
        let exit = &tables[0].breakdown;
        assert_eq!(exit.devices.len(), 3);
        assert_eq!(
            exit.devices
                .iter()
                .map(|d| d.name.as_str())
                .collect::<Vec<_>>(),
            ["CUDA0", "CUDA1", "CUDA2"]
        );
        assert_eq!(device(exit, 0).self_mib, 14193);
        assert_eq!(device(exit, 0).unaccounted_mib(), 451);
        let cpu = &exit.host[0];
        assert_eq!(cpu.name, "CPU");
        assert_eq!(cpu.description.as_deref(), Some("EPYC 7742"));
        assert_eq!((cpu.total_mib, cpu.self_mib), (Some(515_628), 72));
    }

    #[test]
    fn mtp_projections_of_a_cuda_laptop_gpu() {
        // llama.cpp PR #22673: two of fit's dry runs on an RTX 2000 Ada laptop GPU.
        let t = parse_breakdowns(&lines("fit-moe-cuda-mtp-pr22673.log"));
        assert_eq!(t.len(), 2);
        assert_eq!(
            device(&t[0].breakdown, 0).description.as_deref(),
            Some("RTX 2000 Ada Generation Laptop GPU")
        );
        assert_eq!(device(&t[1].breakdown, 0).self_mib, 24770);
        assert_eq!(exit_breakdown(&lines("fit-moe-cuda-mtp-pr22673.log")), None);
    }

    #[test]
    fn the_device_buffers_at_load_are_summed_without_the_host() {
        // lavapipe, -ngl 5 of 9: 40.21 model + 8 KV + 11 compute on Vulkan0; the CPU's
        // and Vulkan_Host's buffers are the host's.
        let mib = device_buffers_mib(&lines("breakdown-vulkan-lavapipe.log")).expect("buffers");
        assert!((mib - 59.21).abs() < 0.01, "{mib}");
        let cpu = ["llama_kv_cache:        CPU KV buffer size =     8.00 MiB".to_owned()];
        assert_eq!(device_buffers_mib(&cpu), None);
        assert_eq!(
            loaded_device(&lines("breakdown-vulkan-lavapipe.log")),
            Some(DeviceFree {
                name: "Vulkan0".into(),
                free_mib: 2048,
                total_mib: Some(2048)
            })
        );
        let cuda = loaded_device(&lines("breakdown-cuda-gtx1080ti-issue19437.log")).expect("CUDA0");
        assert_eq!((cuda.name.as_str(), cuda.free_mib), ("CUDA0", 8720));
    }

    #[test]
    fn rows_that_are_not_a_breakdown_are_not_read() {
        let log: Vec<String> = [
            "load_tensors:      Vulkan0 model buffer size =    40.21 MiB",
            "common_memory_breakdown_print: |   - Vulkan0 (x) | 2048 = 2048 + ( 91 = 40 + 32 + 19) + -91 |",
            "common_memory_breakdown_print: |   - Host | garbled |",
            "srv    operator(): operator(): cleaning up before exit...",
        ]
        .map(str::to_owned)
        .to_vec();
        let tables = parse_breakdowns(&log);
        assert_eq!(tables.len(), 1);
        assert_eq!(tables[0].when, BreakdownWhen::Projected);
        assert_eq!(exit_breakdown(&log), None);
        assert!(parse_breakdowns(&[]).is_empty());
    }
}
