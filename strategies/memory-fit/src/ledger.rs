//! What each context measured came to, and the bracket it makes.

use std::collections::BTreeMap;

use ozone_sdk::bisect::Bracket;

/// The latest word on every context measured: stable or not. A failure wins over the
/// stable screen of the same context (a verification that did not hold).
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    stable: BTreeMap<u32, bool>,
}

impl Ledger {
    pub fn record(&mut self, ctx: u32, stable: bool) {
        self.stable.insert(ctx, stable);
    }

    pub fn is_empty(&self) -> bool {
        self.stable.is_empty()
    }

    /// The smallest context that failed.
    pub fn smallest_failure(&self) -> Option<u32> {
        self.stable
            .iter()
            .find_map(|(&ctx, &stable)| (!stable).then_some(ctx))
    }

    /// The contexts whose latest word is stable, ascending.
    pub fn passes(&self) -> Vec<u32> {
        self.stable
            .iter()
            .filter_map(|(&ctx, &stable)| stable.then_some(ctx))
            .collect()
    }

    /// Whether a context below `ctx` was stable.
    pub fn stable_below(&self, ctx: u32) -> bool {
        self.stable.range(..ctx).any(|(_, &stable)| stable)
    }

    /// The SDK's bracket over these results: the smallest failure, and the largest stable
    /// context *below* it. A stable context above a failure is noise on one side or the
    /// other; it stays out of the bracket until the failure is measured away.
    pub fn bracket(&self, floor: u32, granularity: u32) -> Bracket {
        let mut bracket = Bracket::new(floor, granularity);
        let failure = self.smallest_failure();
        if let Some(failed) = failure {
            bracket.record(failed, false);
        }
        let below = |ctx: &u32| failure.is_none_or(|f| *ctx < f);
        if let Some(passed) = self
            .stable
            .iter()
            .filter(|(ctx, &stable)| stable && below(ctx))
            .map(|(&ctx, _)| ctx)
            .next_back()
        {
            bracket.record(passed, true);
        }
        bracket
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stable_context_above_a_failure_stays_out() {
        let mut ledger = Ledger::default();
        ledger.record(8192, true);
        ledger.record(10_496, true);
        ledger.record(10_240, false);
        let b = ledger.bracket(2048, 256);
        assert_eq!((b.passed(), b.failed()), (Some(8192), Some(10_240)));
    }

    #[test]
    fn a_failed_verification_reopens_the_bracket() {
        let mut ledger = Ledger::default();
        ledger.record(9728, true);
        ledger.record(10_240, true);
        ledger.record(10_496, false);
        assert!(ledger.bracket(2048, 256).is_closed());
        ledger.record(10_240, false);
        let b = ledger.bracket(2048, 256);
        assert_eq!((b.passed(), b.failed()), (Some(9728), Some(10_240)));
        assert_eq!(b.midpoint(), Some(9984));
    }
}
