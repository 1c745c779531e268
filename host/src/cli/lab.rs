//! `ozone lab`: extract profiles from tune logs and compare strategies on them offline.

use std::path::{Path, PathBuf};

use super::{CliError, Exit, ResultExt};
use crate::lab::{self, Profile};
use crate::plugin::PluginHost;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Extract a replayable profile from an `ozone tune` trial log.
    Profile(ProfileArgs),
    /// Drive strategies through profiles exactly as `ozone tune` would, and compare them.
    Run(RunArgs),
}

#[derive(Debug, clap::Args)]
pub struct ProfileArgs {
    /// Trial log written by `ozone tune` (`<output dir>/logs/<model>_<ts>.jsonl`).
    #[arg(value_name = "LOG.jsonl")]
    pub log: PathBuf,
    /// Where to write the profile.
    #[arg(short, long, value_name = "NAME.profile.json")]
    pub output: PathBuf,
}

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Example:
  ozone lab run --strategy binary-search --strategy my_policy.wasm \\
      --profile examples/profiles/

Exit codes: 0 all strategies completed; 2 bad profile or flag, or a strategy that does
not fit (unknown built-in, not a component, wrong world, settings it rejects); 4 a
strategy broke its sandbox or contract. The other strategies still run and are shown;
the code is the first failed run's.")]
pub struct RunArgs {
    /// Context strategy: a built-in name (`binary-search`) or a component FILE.wasm.
    /// Repeat to compare several.
    #[arg(long = "strategy", value_name = "NAME|FILE.wasm", required = true)]
    pub strategies: Vec<String>,
    /// A `.profile.json` file, or a folder of them. Repeat for several.
    #[arg(long = "profile", value_name = "FILE|DIR", required = true)]
    pub profiles: Vec<PathBuf>,
    /// Batch strategy for every run (default: the one each profile's run used).
    #[arg(long, value_name = "NAME|FILE.wasm")]
    pub batch_strategy: Option<String>,
    /// Print the comparison as JSON (one object per run, with every trial).
    #[arg(long)]
    pub json: bool,
}

pub fn run(command: Command) -> Result<(), CliError> {
    match command {
        Command::Profile(args) => profile(args),
        Command::Run(args) => compare(args),
    }
}

fn profile(args: ProfileArgs) -> Result<(), CliError> {
    let profile = Profile::from_log(&args.log).exit(Exit::BadInput)?;
    profile.save(&args.output).exit(Exit::Internal)?;
    let stable = profile
        .true_limit()
        .map_or("none".into(), |c| c.to_string());
    println!(
        "{}: {} trials, largest stable context {stable}",
        args.output.display(),
        profile.trials.len()
    );
    Ok(())
}

fn compare(args: RunArgs) -> Result<(), CliError> {
    let mut profiles = Vec::new();
    for path in &args.profiles {
        for file in profile_files(path).exit(Exit::BadInput)? {
            let profile = Profile::load(&file).exit(Exit::BadInput)?;
            profiles.push((Profile::display_name(&file), profile));
        }
    }
    let mut replays = Vec::new();
    for (name, profile) in &profiles {
        // The sandbox the recorded run gave its plugins (`ozone.sandbox`), as `ozone tune`.
        let limits = profile.config.ozone.sandbox.clone();
        let host =
            PluginHost::new(limits, PluginHost::default_cache_dir()).map_err(CliError::plugin)?;
        for strategy in &args.strategies {
            let replay = lab::replay_blocking(
                &host,
                profile,
                name,
                strategy,
                args.batch_strategy.as_deref(),
            )
            .exit(Exit::Internal)?;
            replays.push(replay);
        }
    }
    if args.json {
        let json = serde_json::to_string_pretty(&serde_json::json!({
            "rows": replays.iter().map(|r| r.row()).collect::<Vec<_>>(),
            "runs": replays,
        }))
        .exit(Exit::Internal)?;
        println!("{json}");
    } else {
        let rows: Vec<_> = replays.iter().map(|r| r.row()).collect();
        print!("{}", lab::render_table(&rows));
    }
    let failed: Vec<&lab::Replay> = replays.iter().filter(|r| r.failed()).collect();
    let Some(first) = failed.first() else {
        return Ok(());
    };
    // The first failure's code, by the mapping `tune` and `plugins` use.
    let exit = first
        .plugin_error
        .as_deref()
        .map_or(Exit::Plugin, Exit::of_plugin_error);
    let runs: Vec<String> = failed
        .iter()
        .map(|r| format!("{} on {}", r.strategy, r.profile))
        .collect();
    Err(CliError::new(
        exit,
        anyhow::anyhow!("{} run(s) erred: {}", runs.len(), runs.join(", ")),
    ))
}

/// A profile file, or every `*.profile.json` in a folder (sorted).
fn profile_files(path: &Path) -> anyhow::Result<Vec<PathBuf>> {
    if !path.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let entries = std::fs::read_dir(path)
        .map_err(|e| anyhow::anyhow!("cannot read the folder {}: {e}", path.display()))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".profile.json"))
        .collect();
    files.sort();
    if files.is_empty() {
        anyhow::bail!("{} holds no *.profile.json file", path.display());
    }
    Ok(files)
}
