//! Bookkeeping most searches share: the bracket between the largest value that passed
//! and the smallest that failed, its midpoint on a granularity, and the proposal made
//! but not yet observed.
//!
//! ```
//! use ozone_sdk::bisect::Bisection;
//!
//! // Contexts from 2048 in steps of 256; 8192 passed, 16384 failed.
//! let mut search = Bisection::new(2048, 256);
//! assert_eq!(search.propose_with(|_| Some(8192)), Some(8192));
//! assert_eq!(search.propose_with(|_| Some(4096)), Some(8192)); // still pending
//! search.observe(8192, true);
//! search.propose_with(|_| Some(16_384));
//! search.observe(16_384, false);
//! assert_eq!(search.bracket().midpoint(), Some(12_288));
//! assert_eq!(search.bracket().inside(20_000), Some(16_128)); // one step below the failure
//! ```

/// What is known: the largest value that passed and the smallest that failed, over
/// values that are multiples of `granularity` from `floor` up.
///
/// A failure at or below values that passed withdraws those passes (the later
/// measurement wins, and whatever fails at `v` is not trusted above `v`): when the host's
/// verification of a search's `best()` is not stable, the next-largest pass below it
/// becomes the best.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bracket {
    floor: u32,
    granularity: u32,
    /// Every value that passed and was not withdrawn since, ascending.
    passes: Vec<u32>,
    failed: Option<u32>,
}

impl Bracket {
    /// An empty bracket over multiples of `granularity` (at least 1) from `floor`.
    pub fn new(floor: u32, granularity: u32) -> Self {
        Self {
            floor,
            granularity: granularity.max(1),
            passes: Vec::new(),
            failed: None,
        }
    }

    /// Records a trial: a pass may raise the largest pass; a failure lowers the smallest
    /// failure and withdraws the passes at or above it.
    pub fn record(&mut self, value: u32, passed: bool) {
        if passed {
            if let Err(at) = self.passes.binary_search(&value) {
                self.passes.insert(at, value);
            }
        } else {
            self.failed = Some(self.failed.map_or(value, |f| f.min(value)));
            self.passes.retain(|&p| p < value);
        }
    }

    /// The largest value that passed (and was not withdrawn by a failure at or below it).
    pub fn passed(&self) -> Option<u32> {
        self.passes.last().copied()
    }

    /// Every value that passed and was not withdrawn since, ascending.
    pub fn passes(&self) -> &[u32] {
        &self.passes
    }

    /// The smallest value that failed.
    pub fn failed(&self) -> Option<u32> {
        self.failed
    }

    /// `value` aligned down to the granularity and moved strictly inside the bracket
    /// (at least one step above the largest pass — or at `floor` when nothing passed —
    /// and one step below the smallest failure). `None` before any failure, or when no
    /// aligned value is left between them.
    pub fn inside(&self, value: u32) -> Option<u32> {
        let (lo, hi) = self.open_interval()?;
        let g = i64::from(self.granularity);
        let aligned = i64::from(value) / g * g;
        Some(aligned.clamp(lo + g, hi - g) as u32)
    }

    /// The midpoint of the bracket, aligned down and strictly inside it (see
    /// [`Bracket::inside`]); `None` before any failure or once the bracket is closed.
    pub fn midpoint(&self) -> Option<u32> {
        let (lo, hi) = self.open_interval()?;
        let g = i64::from(self.granularity);
        let mid = (lo + (hi - lo) / 2) / g * g;
        Some(mid.clamp(lo + g, hi - g) as u32)
    }

    /// Whether a failure is known and no aligned value is left between it and the
    /// largest pass: the search is done.
    pub fn is_closed(&self) -> bool {
        self.failed.is_some() && self.open_interval().is_none()
    }

    /// `(lo, hi)` with an aligned value strictly between them; `lo` is `floor − step`
    /// while nothing passed, so `floor` itself can still be tried.
    fn open_interval(&self) -> Option<(i64, i64)> {
        let g = i64::from(self.granularity);
        let hi = i64::from(self.failed?);
        let lo = self.passed().map_or(i64::from(self.floor) - g, i64::from);
        (hi - lo > g).then_some((lo, hi))
    }
}

/// A [`Bracket`] plus the proposal made and not yet observed, so that `propose` asked
/// twice answers the same value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bisection {
    bracket: Bracket,
    pending: Option<u32>,
}

impl Bisection {
    /// See [`Bracket::new`].
    pub fn new(floor: u32, granularity: u32) -> Self {
        Self {
            bracket: Bracket::new(floor, granularity),
            pending: None,
        }
    }

    /// The pending proposal; else `next(bracket)` becomes the pending one.
    pub fn propose_with(&mut self, next: impl FnOnce(&Bracket) -> Option<u32>) -> Option<u32> {
        if self.pending.is_none() {
            self.pending = next(&self.bracket);
        }
        self.pending
    }

    /// The proposal made and not yet observed.
    pub fn pending(&self) -> Option<u32> {
        self.pending
    }

    /// Records the outcome of a trial at `value` and clears the pending proposal.
    pub fn observe(&mut self, value: u32, passed: bool) {
        self.pending = None;
        self.bracket.record(value, passed);
    }

    pub fn bracket(&self) -> &Bracket {
        &self.bracket
    }
}
