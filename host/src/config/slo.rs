//! The service-level objective as users write it, in `--slo` and in `ozone.slo`:
//! `ttft-p95=2000ms,tpot-p95=100ms,decode-min=10` — any subset of the contract's
//! metrics (`ozone_sdk::SloMetric`), latencies in `ms` or `s`, `decode-min` in tokens/s
//! (`10` or `10tok/s`). An empty text is no objective. Each error names the bad part.

use ozone_sdk::{Slo, SloBound, SloMetric};

/// Parses an objective (see the module documentation).
///
/// ```
/// let slo = ozone::config::parse_slo("ttft-p95=2s, decode-min=10tok/s").unwrap();
/// assert_eq!(slo.bounds[0].value, 2000.0);
/// assert_eq!(ozone::config::slo_text(&slo), "ttft-p95=2000ms,decode-min=10tok/s");
/// ```
pub fn parse_slo(text: &str) -> Result<Slo, String> {
    let mut slo = Slo::default();
    if text.trim().is_empty() {
        return Ok(slo);
    }
    for part in text.split(',').map(str::trim) {
        if part.is_empty() {
            return Err(format!(
                "empty part in `{text}`: bounds are METRIC=VALUE separated by commas"
            ));
        }
        let Some((name, value)) = part.split_once('=') else {
            return Err(format!(
                "`{part}` is not METRIC=VALUE (for example ttft-p95=2000ms)"
            ));
        };
        let (name, value) = (name.trim(), value.trim());
        let metric = SloMetric::ALL
            .into_iter()
            .find(|m| m.name() == name)
            .ok_or_else(|| {
                format!(
                    "unknown metric `{name}` in `{part}` (one of {})",
                    SloMetric::ALL.map(SloMetric::name).join(", ")
                )
            })?;
        if slo.bounds.iter().any(|b| b.metric == metric) {
            return Err(format!("`{name}` is given twice"));
        }
        slo.bounds.push(SloBound {
            metric,
            value: parse_value(metric, value, part)?,
        });
    }
    Ok(slo)
}

/// A bound's value in the contract's unit: milliseconds, or tokens/s for `decode-min`.
fn parse_value(metric: SloMetric, value: &str, part: &str) -> Result<f64, String> {
    let split = value
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+'))
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    if number.is_empty() {
        return Err(format!("`{value}` in `{part}` is not a number"));
    }
    let scale = match (metric.is_floor(), unit.trim()) {
        (true, "" | "tok/s") => 1.0,
        (true, unit) => {
            return Err(format!(
                "bad unit `{unit}` in `{part}`: {metric} is in tokens per second (10 or 10tok/s)"
            ))
        }
        (false, "ms") => 1.0,
        (false, "s") => 1000.0,
        (false, "") => {
            return Err(format!(
                "`{part}` needs a unit: {metric} is a latency, in ms or s (for example {metric}=2000ms)"
            ))
        }
        (false, unit) => {
            return Err(format!(
                "bad unit `{unit}` in `{part}`: {metric} is a latency, in ms or s"
            ))
        }
    };
    let number: f64 = number
        .parse()
        .map_err(|_| format!("`{value}` in `{part}` is not a number"))?;
    if number <= 0.0 || !number.is_finite() {
        return Err(format!(
            "{metric} must be above 0, got `{value}` in `{part}`"
        ));
    }
    Ok(number * scale)
}

/// The objective as users write it (latencies in ms): `ttft-p95=2000ms,decode-min=10tok/s`;
/// empty for no objective.
pub fn slo_text(slo: &Slo) -> String {
    slo.bounds
        .iter()
        .map(|b| {
            let unit = if b.metric.is_floor() { "tok/s" } else { "ms" };
            format!("{}={}{unit}", b.metric, b.value)
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// `#[serde(with = "…")]` for a config field: the objective is written as its text.
pub(super) mod as_text {
    use ozone_sdk::Slo;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(slo: &Slo, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&super::slo_text(slo))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Slo, D::Error> {
        let text = Option::<String>::deserialize(deserializer)?.unwrap_or_default();
        super::parse_slo(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_and_unit_reads() {
        let slo = parse_slo(
            "ttft-p50=300ms,ttft-p95=2s,ttft-p99=2.5s,tpot-p50=50ms,tpot-p95=0.1s,\
             e2e-p95=20s,decode-min=10tok/s",
        )
        .unwrap();
        let values: Vec<f64> = slo.bounds.iter().map(|b| b.value).collect();
        assert_eq!(values, [300.0, 2000.0, 2500.0, 50.0, 100.0, 20_000.0, 10.0]);
        assert_eq!(parse_slo("decode-min=7.5").unwrap().bounds[0].value, 7.5);
        assert_eq!(parse_slo(" ").unwrap(), Slo::default());
        let text = slo_text(&slo);
        assert_eq!(parse_slo(&text).unwrap(), slo, "{text}");
    }

    #[test]
    fn each_mistake_is_named() {
        for (text, expect) in [
            ("ttft-p90=2s", "unknown metric `ttft-p90`"),
            ("ttft-p95=2000", "needs a unit"),
            ("ttft-p95=2000us", "bad unit `us`"),
            ("decode-min=10ms", "bad unit `ms`"),
            ("tpot-p95=0ms", "must be above 0"),
            ("tpot-p95=-5ms", "must be above 0"),
            ("e2e-p95=abc", "not a number"),
            ("ttft-p95=1s,ttft-p95=2s", "`ttft-p95` is given twice"),
            ("ttft-p95", "is not METRIC=VALUE"),
            ("ttft-p95=1s,", "empty part"),
        ] {
            let err = parse_slo(text).expect_err(text);
            assert!(err.contains(expect), "{text}: {err}");
            assert!(!err.contains('\n'), "{text}: one line: {err}");
        }
    }
}
