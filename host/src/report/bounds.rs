//! Limits and verdicts in words: what bound a limit, why a trial got its verdict.

use crate::record::{Bound, Reason, SpreadCheck};

/// `GPU memory` where a GPU's memory bound it, else `memory`.
fn memory_word(
    metric: Option<crate::record::Metric>,
    device: Option<&crate::record::DeviceFree>,
) -> &'static str {
    use crate::record::Metric;
    match metric {
        Some(Metric::Vram | Metric::GpuMemoryBudget) => "GPU memory",
        None if device.is_some() => "GPU memory",
        _ => "memory",
    }
}

/// ` (Vulkan0: 2048 MiB free of 2048 MiB at load)`, where the device is known.
fn device_words(device: Option<&crate::record::DeviceFree>) -> String {
    device.map_or(String::new(), |d| format!(" ({d} at load)"))
}

/// One plain sentence: what stopped a limit, with its evidence.
pub fn describe(bound: &Bound) -> String {
    const MIB: f64 = 1048576.0;
    let mib = |b: Option<u64>| b.map(|b| format!("{:.0} MiB", b as f64 / MIB));
    match bound {
        Bound::Memory {
            at,
            threshold: Some(metric),
            peak_bytes,
            limit_bytes,
            device,
            ..
        } => format!(
            "{}: at {at} the {metric} threshold was crossed ({} against a limit of {}){}",
            memory_word(Some(*metric), device.as_ref()),
            mib(*peak_bytes).unwrap_or_else(|| "peak unknown".into()),
            mib(*limit_bytes).unwrap_or_else(|| "unknown".into()),
            device_words(device.as_ref())
        ),
        Bound::Memory {
            at,
            threshold: None,
            peak_bytes,
            device,
            ..
        } => format!(
            "{}: at {at} the server ran out of memory{}{}",
            memory_word(None, device.as_ref()),
            mib(*peak_bytes)
                .map(|p| format!(" (peak {p})"))
                .unwrap_or_default(),
            device_words(device.as_ref())
        ),
        Bound::Time { at, message, .. } => format!(
            "time: at {at} {message} — the machine is too slow to fill it, not out of memory"
        ),
        Bound::Threshold {
            at,
            threshold,
            peak,
            limit,
            ..
        } => {
            let figure = |v: &Option<f64>| v.map_or("?".into(), |v| format!("{v:.0}"));
            format!(
                "threshold: at {at} {threshold} reached {}, limit {}",
                figure(peak),
                figure(limit)
            )
        }
        Bound::Instability {
            at,
            success_rate,
            cv,
            reason,
            ..
        } => match reason {
            Some(reason) => format!("instability: at {at} {}", reason_words(reason)),
            None => format!(
                "instability: at {at} {:.0} % of the samples succeeded{}",
                success_rate * 100.0,
                cv.map(|c| format!(", throughput varied {:.0} %", c * 100.0))
                    .unwrap_or_default()
            ),
        },
        Bound::TrainedContext { trained_context } => format!(
            "trained context: the model's own maximum ({trained_context}) runs; nothing failed"
        ),
        Bound::ServerError { at, message, .. } => {
            format!("server error: at {at} {message}")
        }
        Bound::Throughput {
            at,
            best_tps,
            next_tps,
            ..
        } => format!(
            "throughput: {at} decoded {next_tps:.1} tok/s, not more than the best {best_tps:.1}"
        ),
        Bound::Cap { cap } => format!("cap: the search's upper bound {cap} passed"),
        Bound::Slo {
            at,
            metric,
            measured,
            bound,
            ..
        } => {
            let (unit, sign, digits) = if metric.is_floor() {
                ("tok/s", "<", 1)
            } else {
                ("ms", ">", 0)
            };
            match measured {
                Some(m) => format!(
                    "slo: at {at} {metric} measured {m:.digits$} {unit} {sign} {bound} {unit}"
                ),
                None => {
                    format!("slo: at {at} {metric} could not be measured (bound {bound} {unit})")
                }
            }
        }
        Bound::NotRun { reason } => format!("not run: {reason}"),
    }
}

/// Why a trial got its verdict, with its figures ("4 of 5 requests succeeded, 85 %
/// needed", "decode varied 31 % (robust spread), tolerance 15 %").
pub fn reason_words(reason: &Reason) -> String {
    let percent = |v: f64| format!("{:.0} %", v * 100.0);
    match reason {
        Reason::Failure => "it failed".to_string(),
        Reason::Served { of: 1 } => "its request was served whole".to_string(),
        Reason::Served { of } => {
            format!("all {of} requests were served (one decode figure: no spread to judge)")
        }
        Reason::SuccessRate {
            success_rate,
            needed,
            failed,
            timed_out,
        } => {
            let timeouts = match timed_out {
                0 => String::new(),
                t if t == failed => ", every failure a timeout".to_string(),
                t => format!(", {t} of them timeouts"),
            };
            format!(
                "{} of the requests succeeded ({failed} failed{timeouts}), {} needed",
                percent(*success_rate),
                percent(*needed)
            )
        }
        Reason::Level {
            success_rate,
            needed,
        } => format!(
            "{} of the requests succeeded ({} needed; at several streams the spread of \
             per-request speed is the load, not judged)",
            percent(*success_rate),
            percent(*needed)
        ),
        Reason::Steady(c) => format!(
            "decode throughput varied {}{}",
            spread_words(c),
            floor_words(c)
        ),
        Reason::Unsteady(c) => format!(
            "decode throughput varied {}{}",
            spread_words(c),
            match c.floor {
                Some(_) => format!("{}: the configuration's own", floor_words(c)),
                None => String::new(),
            }
        ),
        Reason::WithinNoise(c) => format!(
            "decode throughput varied {}{}: the machine was noisy, not the configuration",
            spread_words(c),
            floor_words(c)
        ),
        Reason::ObjectiveMissed { miss } => match miss.measured {
            Some(m) => format!(
                "{} was {m:.0} ms over its requests, above the objective's {:.0} ms",
                miss.metric, miss.bound
            ),
            None => format!(
                "{} could not be measured (the objective misses)",
                miss.metric
            ),
        },
        Reason::NearTimeout {
            slowest_ms,
            timeout_ms,
            margin,
        } => format!(
            "its slowest request took {:.1} s, {} of its {:.0} s timeout (a published context \
             keeps its requests within {})",
            slowest_ms / 1000.0,
            percent(slowest_ms / timeout_ms),
            timeout_ms / 1000.0,
            percent(*margin)
        ),
    }
}

fn spread_words(c: &SpreadCheck) -> String {
    let outliers = match c.outliers {
        0 => String::new(),
        1 => ", 1 outlier".to_string(),
        n => format!(", {n} outliers"),
    };
    format!(
        "{:.0} % over {} samples (robust spread{outliers}; tolerance {:.0} %)",
        c.spread * 100.0,
        c.samples,
        c.tolerance * 100.0
    )
}

fn floor_words(c: &SpreadCheck) -> String {
    let again = c.remeasure_of.map_or(String::new(), |t| {
        format!(", measured again after trial {t}")
    });
    match c.floor {
        Some(f) => format!(
            "{again}; the machine's own noise floor {:.0} % (trial {} at {} tokens)",
            f.spread * 100.0,
            f.trial_id,
            f.ctx
        ),
        None => again,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::NoiseFloor;
    use ozone_sdk::SloMetric;

    #[test]
    fn an_objective_bound_names_the_metric_and_the_figure_missed() {
        let missed = Bound::Slo {
            at: 5,
            trial_id: 12,
            metric: SloMetric::TtftP95,
            measured: Some(2345.6),
            bound: 2000.0,
        };
        assert_eq!(
            describe(&missed),
            "slo: at 5 ttft-p95 measured 2346 ms > 2000 ms"
        );
        let floor = Bound::Slo {
            at: 9,
            trial_id: 3,
            metric: SloMetric::DecodeMin,
            measured: None,
            bound: 10.0,
        };
        assert_eq!(
            describe(&floor),
            "slo: at 9 decode-min could not be measured (bound 10 tok/s)"
        );
    }

    #[test]
    fn each_bound_says_what_stopped_the_limit_with_its_figures() {
        const MIB: u64 = 1 << 20;
        let budget = Bound::Memory {
            at: 32768,
            trial_id: 1,
            threshold: Some(crate::record::Metric::ProcessMemory),
            peak_bytes: Some(1702 * MIB),
            limit_bytes: Some(1536 * MIB),
            device: None,
        };
        assert_eq!(
            describe(&budget),
            "memory: at 32768 the process-memory threshold was crossed (1702 MiB against a \
             limit of 1536 MiB)"
        );
        let time = Bound::Time {
            at: 24576,
            trial_id: 5,
            timeout_s: Some(72.0),
            message: "1 of 2 requests ran past the 72 s timeout".into(),
        };
        assert_eq!(
            describe(&time),
            "time: at 24576 1 of 2 requests ran past the 72 s timeout — the machine is too \
             slow to fill it, not out of memory"
        );
        let unsteady = Bound::Instability {
            at: 24576,
            trial_id: 6,
            success_rate: 1.0,
            cv: Some(0.4),
            reason: Some(Reason::Unsteady(SpreadCheck {
                spread: 0.31,
                tolerance: 0.15,
                samples: 5,
                outliers: 0,
                floor: None,
                remeasure_of: None,
            })),
        };
        assert!(describe(&unsteady)
            .starts_with("instability: at 24576 decode throughput varied 31 % over 5 samples"));
        // A log from before verdicts carried their reason: its figures, as then.
        let old = Bound::Instability {
            at: 24576,
            trial_id: 6,
            success_rate: 1.0,
            cv: Some(0.4),
            reason: None,
        };
        assert_eq!(
            describe(&old),
            "instability: at 24576 100 % of the samples succeeded, throughput varied 40 %"
        );
    }

    #[test]
    fn a_verdict_says_its_rule_and_figures() {
        let check = SpreadCheck {
            spread: 0.31,
            tolerance: 0.15,
            samples: 5,
            outliers: 1,
            floor: Some(NoiseFloor {
                spread: 0.04,
                ctx: 2048,
                trial_id: 3,
            }),
            remeasure_of: Some(7),
        };
        assert_eq!(
            reason_words(&Reason::Unsteady(check.clone())),
            "decode throughput varied 31 % over 5 samples (robust spread, 1 outlier; \
             tolerance 15 %), measured again after trial 7; the machine's own noise floor \
             4 % (trial 3 at 2048 tokens): the configuration's own"
        );
        assert!(reason_words(&Reason::WithinNoise(check))
            .ends_with("the machine was noisy, not the configuration"));
        let low = Reason::SuccessRate {
            success_rate: 0.6,
            needed: 0.85,
            failed: 2,
            timed_out: 2,
        };
        assert_eq!(
            reason_words(&low),
            "60 % of the requests succeeded (2 failed, every failure a timeout), 85 % needed"
        );
    }
}
