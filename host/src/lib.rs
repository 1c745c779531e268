//! Ozone: finds, by real measurement, how far a local LLM can be pushed on this machine.
//!
//! The modules follow the tuning loop (see `DESIGN.md` at the workspace's shared root):
//! probe the hardware, read the model's facts, let the context plugin search, let the
//! batch plugin scale, climb the concurrency ladder, derive presets, write every output.

pub mod backend;
pub mod cli;
pub mod config;
pub mod fleet;
pub mod guard;
pub mod hardware;
pub mod lab;
pub mod plugin;
pub mod report;
pub mod trial;
pub mod tune;
