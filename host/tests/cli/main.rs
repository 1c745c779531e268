//! The commands' contract, as a user meets it, with no server to run: exit codes and
//! one-line errors (`exit_codes`, `inputs`), the configuration (`config`), the probe
//! (`probe`) and the GPU check script on a machine without a GPU (`gpu_check`).

#[path = "../common/mod.rs"]
mod common;

mod config;
mod exit_codes;
mod gpu_check;
mod inputs;
mod probe;
