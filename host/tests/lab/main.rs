//! The strategy lab: replaying strategies on shipped and recorded profiles (`replay`),
//! and recording a profile on a real server (`record`).

#[path = "../common/mod.rs"]
mod common;

mod record;
mod replay;
