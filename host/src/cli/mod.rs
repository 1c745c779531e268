//! The `ozone` command line: clap commands, logging set-up and exit codes.
//!
//! Each subcommand lives in its own file with an `Args` struct and a `run` function.

mod config;
mod demo_model;
mod exit;
mod flags;
mod fleet;
mod lab;
mod plugins;
mod probe;
mod report;
mod tune;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use exit::{CliError, Exit, ResultExt};

/// Finds, by real measurement, how far a local LLM can be pushed on this machine:
/// the largest stable context, the best batch size, the concurrency it sustains —
/// all inside safety thresholds — and writes ready-to-use presets.
#[derive(Debug, Parser)]
#[command(name = "ozone", version, propagate_version = true)]
#[command(after_help = exit::EXIT_CODES_HELP)]
pub struct Cli {
    /// More output (-v: debug, -vv: trace). Also RUST_LOG.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Only errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print this machine's hardware: CPU, RAM, GPUs, and where each reading came from.
    Probe(probe::Args),
    /// Measure a model and write presets, deploy files and a report.
    Tune(Box<tune::Args>),
    /// List, inspect and check strategy plugins (WebAssembly components).
    #[command(subcommand)]
    Plugins(plugins::Command),
    /// Re-render the HTML report from a trial log.
    Report(report::Args),
    /// Show the effective configuration.
    #[command(subcommand)]
    Config(config::Command),
    /// Write a tiny random GGUF model to try Ozone on, with nothing to download.
    DemoModel(demo_model::Args),
    /// Compare strategies offline on profiles recorded by real tunes.
    #[command(subcommand)]
    Lab(lab::Command),
    /// Tune every node of a cluster through Slurm (or Kubernetes) and compare them.
    #[command(subcommand)]
    Fleet(fleet::Command),
}

/// Entry point of the `ozone` binary.
pub fn main() -> ExitCode {
    use clap::{parser::ValueSource, CommandFactory, FromArgMatches};
    let command = Cli::command();
    let matches = command.clone().get_matches();
    let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    if let (Command::Tune(args), Some(("tune", given))) = (&mut cli.command, matches.subcommand()) {
        // Arguments only (clap also reports the group of all of them).
        let tune = command.find_subcommand("tune");
        let is_arg = |id: &str| tune.is_some_and(|t| t.get_arguments().any(|a| a.get_id() == id));
        args.given = given
            .ids()
            .map(|id| id.as_str())
            .filter(|id| is_arg(id) && given.value_source(id) == Some(ValueSource::CommandLine))
            .map(str::to_string)
            .collect();
    }
    init_logging(cli.verbose, cli.quiet);
    let result = match cli.command {
        Command::Probe(args) => probe::run(args),
        Command::Tune(args) => tune::run(*args),
        Command::Plugins(cmd) => plugins::run(cmd),
        Command::Report(args) => report::run(args),
        Command::Config(cmd) => config::run(cmd),
        Command::DemoModel(args) => demo_model::run(args),
        Command::Lab(cmd) => lab::run(cmd),
        Command::Fleet(cmd) => fleet::run(cmd),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => failure.report(),
    }
}

fn init_logging(verbose: u8, quiet: bool) {
    use tracing_subscriber::EnvFilter;
    let default = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn,ozone=info",
        (false, 1) => "info,ozone=debug",
        (false, _) => "debug,ozone=trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .without_time()
        .init();
}
