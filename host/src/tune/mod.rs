//! The search itself, apart from the real world: the driver's loop (plugins propose,
//! trials run, outcomes go back), the plan it follows, the limits it finds, the presets
//! derived from its trials and the warm-start store.
//!
//! [`driver`] knows nothing about servers: a [`driver::TrialExecutor`] runs trials
//! (`crate::session` on a real server, `crate::lab` from a recorded profile).

pub mod driver;
mod limits;
pub mod plan;
pub mod presets;
pub mod warm_start;

pub use limits::{Bound, LimitBounds, Limits};
pub use plan::{RunParameters, CONTEXT_GRANULARITY};
pub use warm_start::WarmStartSource;
