//! Statistics of one figure over a trial's successful samples: the summary the log
//! writes for every figure (mean, spread, percentiles), and the robust spread the
//! verdict holds against the variance tolerance.

use serde::{Deserialize, Serialize};

/// Converts a median absolute deviation into an estimate of the standard deviation of
/// normally distributed data (1 / Φ⁻¹(3/4)); hyperfine's `outlier_detection.rs` uses the
/// same factor, after Iglewicz and Hoaglin (1993), "How to Detect and Handle Outliers".
pub const MAD_TO_SIGMA: f64 = 1.4826;

/// A value is an outlier when its modified z-score, (x − median) / MAD, exceeds this:
/// ten robust standard deviations, hyperfine's `OUTLIER_THRESHOLD`.
pub const OUTLIER_Z: f64 = MAD_TO_SIGMA * 10.0;

/// The nearest-rank percentile `p` (0..=1) of `sorted` (ascending): the smallest value
/// with at least `p` of the values at or below it. `None` when empty.
pub fn nearest_rank(sorted: &[f64], p: f64) -> Option<f64> {
    let n = sorted.len();
    (n > 0).then(|| sorted[((p * n as f64).ceil() as usize).clamp(1, n) - 1])
}

/// The median of `values` (the mean of the middle two for an even count); `None` when
/// empty.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}

/// Summary statistics of one figure over the successful samples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    pub n: u32,
    pub mean: f64,
    /// Sample standard deviation; absent for a single value (one sample has no spread;
    /// logs written before this said 0).
    #[serde(default)]
    pub stddev: Option<f64>,
    pub p50: f64,
    pub p95: f64,
    pub min: f64,
    pub max: f64,
}

impl Stats {
    /// Mean, sample standard deviation and nearest-rank percentiles; `None` when empty.
    pub fn from_values(values: &[f64]) -> Option<Self> {
        if values.is_empty() {
            return None;
        }
        let n = values.len();
        let mean = values.iter().sum::<f64>() / n as f64;
        let stddev = (n > 1).then(|| {
            let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
            var.sqrt()
        });
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let rank = |p: f64| nearest_rank(&sorted, p).unwrap_or(0.0);
        Some(Self {
            n: n as u32,
            mean,
            stddev,
            p50: rank(0.50),
            p95: rank(0.95),
            min: sorted[0],
            max: sorted[n - 1],
        })
    }

    /// "mean ± stddev" with `digits` decimals; the mean alone for a single value.
    pub fn mean_pm(&self, digits: usize) -> String {
        match self.stddev {
            Some(sd) => format!("{:.digits$} ± {sd:.digits$}", self.mean),
            None => format!("{:.digits$}", self.mean),
        }
    }

    /// Coefficient of variation (stddev / mean); `None` for one value or a mean of 0.
    pub fn cv(&self) -> Option<f64> {
        self.stddev
            .filter(|_| self.mean != 0.0)
            .map(|s| s / self.mean)
    }
}

/// How much a figure varied over a trial's samples, robustly: one slow sample moves a
/// median and a MAD by little, where it drags a mean and inflates a standard deviation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    /// [`MAD_TO_SIGMA`] × MAD / median: the coefficient of variation normally
    /// distributed figures would have, estimated without being led by an outlier.
    pub value: f64,
    pub median: f64,
    pub samples: u32,
    /// Values further than [`OUTLIER_Z`] robust standard deviations from the median.
    pub outliers: u32,
}

impl Spread {
    /// `None` for fewer than two values (one has no spread) or a median that is not
    /// positive.
    pub fn of(values: &[f64]) -> Option<Self> {
        if values.len() < 2 {
            return None;
        }
        let median = median(values).filter(|m| *m > 0.0)?;
        let deviations: Vec<f64> = values.iter().map(|v| (v - median).abs()).collect();
        let mad = median_of(&deviations);
        // As hyperfine: a MAD of 0 (most values equal) makes any other value an outlier.
        let scale = if mad > 0.0 { mad } else { f64::EPSILON };
        let outliers = deviations
            .iter()
            .filter(|d| **d / scale > OUTLIER_Z)
            .count();
        Some(Self {
            value: MAD_TO_SIGMA * mad / median,
            median,
            samples: values.len() as u32,
            outliers: outliers as u32,
        })
    }
}

fn median_of(values: &[f64]) -> f64 {
    median(values).unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_value_has_no_spread() {
        let one = Stats::from_values(&[42.0]).expect("stats");
        assert_eq!((one.stddev, one.cv()), (None, None));
        assert_eq!(Spread::of(&[42.0]), None);
        let two = Stats::from_values(&[40.0, 44.0]).expect("stats");
        assert!(two.cv().is_some_and(|cv| (cv - 0.0673).abs() < 1e-3));
    }

    #[test]
    fn one_slow_sample_of_five_is_an_outlier_not_a_spread() {
        // The 2-core machine of issue 22: four steady requests and one that shared the
        // cores with a compiler. The plain CV says unstable (0.24 > 0.15); the robust
        // spread sees four steady values and one outlier.
        let decode = [61.0, 60.2, 59.5, 60.8, 31.0];
        let plain = Stats::from_values(&decode)
            .and_then(|s| s.cv())
            .expect("cv");
        assert!(plain > 0.2, "{plain}");
        let robust = Spread::of(&decode).expect("spread");
        assert!(robust.value < 0.02, "{robust:?}");
        assert_eq!((robust.median, robust.outliers), (60.2, 1));
    }

    #[test]
    fn a_spread_of_every_sample_is_a_spread() {
        let robust = Spread::of(&[38.6, 6.2, 9.3, 20.8, 12.8]).expect("spread");
        assert!(robust.value > 0.7, "{robust:?}");
        assert_eq!(robust.outliers, 0);
        assert_eq!(median(&[1.0, 4.0, 2.0, 3.0]), Some(2.5));
    }
}
