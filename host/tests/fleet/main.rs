//! `ozone fleet`: without a cluster (`cli`), and on a real single-node Slurm cluster
//! where one can run (`slurm`).

#[path = "../common/mod.rs"]
mod common;

mod cli;
mod slurm;
