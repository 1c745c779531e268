//! The strategy lab: evaluates context and batch strategies offline, on profiles
//! recorded by real tunes, by driving them through the same loop as `ozone tune`
//! ([`crate::tune::driver::Driver`]) with trials answered from the profile.
//!
//! [`profile`] extracts and validates profiles; [`interpolate`] answers configurations a
//! profile never measured (always flagged); [`executor`] is the replaying
//! `TrialExecutor`; [`compare`] runs strategies and renders the comparison.

pub mod compare;
pub mod executor;
pub mod interpolate;
pub mod profile;

pub use compare::{render_table, replay, replay_blocking, Replay, Row};
pub use executor::{ReplayExecutor, ReplayedTrial};
pub use interpolate::Answer;
pub use profile::{Decision, Profile, ProfileError, PROFILE_VERSION};
