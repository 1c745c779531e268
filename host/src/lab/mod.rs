//! The strategy lab: evaluates strategies offline, on profiles measured on real
//! machines, by driving them through the same loop as `ozone tune`
//! ([`crate::tune::driver::Driver`]) with trials answered from the profile.
//!
//! [`record`] measures a profile densely (`ozone lab record`); [`profile`] holds,
//! extracts and validates profiles; [`answer`] answers a trial from the measured points
//! without inventing what was not measured; [`executor`] is the replaying
//! `TrialExecutor`; [`compare`] runs strategies over seeds and settings variants and
//! renders the comparison.

pub mod answer;
pub mod compare;
pub mod executor;
pub mod profile;
pub mod record;

pub use answer::{Answer, Answerer, Request, Source};
pub use compare::{
    render_table, replay, replay_blocking, rows, Figures, PluginConfig, Replay, Row, Spread,
    Variant,
};
pub use executor::{ReplayExecutor, ReplayedTrial};
pub use profile::{Decision, Method, Point, Profile, ProfileError, Provenance, PROFILE_VERSION};
pub use record::RecordSettings;
