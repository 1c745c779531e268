//! `ozone fleet submit|status|report|manifest`: tune every node of a cluster through its
//! scheduler and compare them. The work is in `crate::fleet`; this file is flags and
//! printing.

use std::path::{Path, PathBuf};

use clap::Parser;

use super::{Cli, CliError, Exit, ResultExt};
use crate::fleet::slurm::{self, Placement, SlurmPlan};
use crate::fleet::{k8s, layout, report, status, FleetError};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Write a Slurm batch script that tunes MODEL on every node (a job array, one task
    /// per node, each alone on its node) and submit it with sbatch.
    #[command(after_long_help = SUBMIT_EXAMPLES)]
    Submit(SubmitArgs),
    /// Per task: queued, running (phase and trial), done or failed (and why).
    Status(StatusArgs),
    /// Compare every node's results: a table and one HTML page, nodes grouped by
    /// hardware, groups whose limits disagree beyond noise flagged.
    Report(ReportArgs),
    /// Write the same run as a Kubernetes Indexed Job, one pod per node, for
    /// `kubectl apply -f`.
    #[command(after_long_help = MANIFEST_EXAMPLES)]
    Manifest(ManifestArgs),
}

/// Which scheduler `submit` writes for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scheduler {
    Slurm,
}

#[derive(Debug, clap::Args)]
pub struct SubmitArgs {
    /// Models to tune on every node: paths every node sees, or Ollama tags.
    #[arg(required = true, value_name = "MODEL")]
    pub models: Vec<String>,
    /// Flags for `ozone tune` on every node, after `--` (e.g. `-- --memory-budget-mb 8192
    /// --skip-concurrency`). Paths in them must exist on every node.
    #[arg(last = true, value_name = "TUNE FLAGS")]
    pub tune_flags: Vec<String>,

    /// The scheduler to submit to.
    #[arg(long, value_enum, default_value_t = Scheduler::Slurm)]
    pub scheduler: Scheduler,
    /// Results directory: each node writes `DIR/<node>/`. It must be on a filesystem
    /// every node sees (NFS, Lustre, GPFS, a shared home).
    #[arg(long, value_name = "DIR")]
    pub results: PathBuf,
    /// Slurm partition (default: the cluster's default partition).
    #[arg(long, value_name = "P")]
    pub partition: Option<String>,
    /// Tune this many nodes, wherever Slurm has them free.
    #[arg(
        long,
        value_name = "N",
        conflicts_with = "nodelist",
        required_unless_present = "nodelist"
    )]
    pub nodes: Option<u32>,
    /// Tune exactly these nodes (`gpu01,gpu02` or `gpu[01-08]`), one task pinned to each.
    #[arg(long, value_name = "LIST")]
    pub nodelist: Option<String>,
    /// Generic resources per task, e.g. `gpu:1` (Slurm's --gres).
    #[arg(long, value_name = "SPEC")]
    pub gres: Option<String>,
    /// Slurm account to charge.
    #[arg(long, value_name = "A")]
    pub account: Option<String>,
    /// Time limit per task (Slurm's --time, e.g. `04:00:00`).
    #[arg(long, value_name = "T")]
    pub time: Option<String>,
    /// Run at most K tasks at once. With --shared-warm-start, later nodes start from
    /// the limits earlier ones found.
    #[arg(long, value_name = "K")]
    pub max_running: Option<u32>,
    /// Each node starts from the results of finished nodes with the same hardware and
    /// model (`ozone tune --warm-start-from DIR`).
    #[arg(long)]
    pub shared_warm_start: bool,
    /// The `ozone` binary the nodes run (default: this one; it must exist on every node).
    #[arg(long, value_name = "PATH")]
    pub ozone: Option<PathBuf>,
    /// Print the script and the sbatch command; submit nothing, write nothing.
    #[arg(long)]
    pub dry_run: bool,
}

const SUBMIT_EXAMPLES: &str = "\
Examples:
  ozone fleet submit --partition gpu --nodes 8 --gres gpu:1 --results /shared/ozone \\
      /shared/models/qwen2.5-7b-q4_k_m.gguf -- --skip-concurrency
      Tune the model on 8 GPU nodes; each writes /shared/ozone/<node>/.
  ozone fleet submit --nodelist 'gpu[01-04]' --results /shared/ozone --dry-run m.gguf
      Print the script for exactly those four nodes, and how it would be submitted.
  ozone fleet status --results /shared/ozone
  ozone fleet report --results /shared/ozone";

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The fleet's results directory (`submit --results`).
    #[arg(long, value_name = "DIR")]
    pub results: PathBuf,
    /// The Slurm job to show (default: the last one submitted into DIR).
    #[arg(long, value_name = "ID")]
    pub job: Option<String>,
    /// Print the status as JSON.
    #[arg(long)]
    pub json: bool,
    /// Do not ask Slurm; read the results directory only (e.g. away from the cluster).
    #[arg(long)]
    pub no_scheduler: bool,
}

#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// The fleet's results directory (`submit --results`).
    #[arg(long, value_name = "DIR")]
    pub results: PathBuf,
    /// Print the report as JSON instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Where to write the HTML page (default: DIR/fleet-report.html).
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct ManifestArgs {
    /// Models to tune on every node: paths inside the container (e.g. on the results
    /// volume), or Ollama tags.
    #[arg(required = true, value_name = "MODEL")]
    pub models: Vec<String>,
    /// Flags for `ozone tune` in every pod, after `--`.
    #[arg(last = true, value_name = "TUNE FLAGS")]
    pub tune_flags: Vec<String>,
    /// Write a Kubernetes manifest (the only kind so far).
    #[arg(long, required = true)]
    pub k8s: bool,
    /// The nodes to tune, by their `kubernetes.io/hostname` label, comma-separated.
    #[arg(long, value_name = "LIST")]
    pub nodelist: String,
    /// Container image with `ozone` and llama-server (or access to Ollama).
    #[arg(long, value_name = "IMAGE")]
    pub image: String,
    /// The PersistentVolumeClaim results go to (ReadWriteMany: every node writes to it).
    #[arg(long, value_name = "NAME")]
    pub results_claim: String,
    /// Where the claim is mounted in each pod; each node writes `<mount>/<node>/`.
    #[arg(long, value_name = "PATH", default_value = "/results")]
    pub mount_path: String,
    /// The Job's name.
    #[arg(long, default_value = "ozone-fleet")]
    pub name: String,
    #[arg(long)]
    pub namespace: Option<String>,
    /// GPUs per pod (0: none, CPU inference).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub gpus: u32,
    /// The GPU's extended resource name.
    #[arg(long, value_name = "NAME", default_value = "nvidia.com/gpu")]
    pub gpu_resource: String,
    /// The `ozone` command inside the image.
    #[arg(long, value_name = "CMD", default_value = "ozone")]
    pub ozone: String,
    /// Each pod starts from finished pods' results (`--warm-start-from <mount>`).
    #[arg(long)]
    pub shared_warm_start: bool,
    /// Write the manifest here (default: stdout).
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

const MANIFEST_EXAMPLES: &str = "\
Example:
  ozone fleet manifest --k8s --nodelist gpu-a1,gpu-a2 --image registry/ozone:0.1 \\
      --results-claim ozone-results /results/models/m.gguf -- --skip-concurrency > job.yaml
  kubectl apply -f job.yaml
  ozone fleet report --results <a copy of the claim's contents>";

pub fn run(command: Command) -> Result<(), CliError> {
    match command {
        Command::Submit(args) => submit(args),
        Command::Status(args) => show_status(args),
        Command::Report(args) => show_report(args),
        Command::Manifest(args) => manifest(args),
    }
}

fn fail(error: FleetError) -> CliError {
    let exit = if error.is_bad_input() {
        Exit::BadInput
    } else if error.is_scheduler_missing() {
        Exit::NoServer
    } else {
        Exit::Internal
    };
    CliError::new(exit, error)
}

fn bad_input(message: String) -> CliError {
    CliError::new(Exit::BadInput, anyhow::anyhow!(message))
}

fn submit(args: SubmitArgs) -> Result<(), CliError> {
    check_tune_flags(&args.tune_flags, &args.models)?;
    let results = absolute(&args.results)?;
    let ozone = match &args.ozone {
        Some(path) => absolute(path)?,
        None => std::env::current_exe()
            .and_then(std::fs::canonicalize)
            .exit(Exit::Internal)?,
    };
    let placement = match (&args.nodelist, args.nodes) {
        (Some(list), _) => Placement::Nodes(slurm::expand_nodelist(list).map_err(fail)?),
        (None, Some(n)) => Placement::Count(n),
        (None, None) => return Err(bad_input("give --nodes N or --nodelist LIST".into())),
    };
    let plan = SlurmPlan {
        results: results.clone(),
        ozone,
        models: args.models.iter().map(|m| model_path(m)).collect(),
        tune_args: args.tune_flags.clone(),
        placement,
        partition: args.partition.clone(),
        gres: args.gres.clone(),
        account: args.account.clone(),
        time: args.time.clone(),
        max_running: args.max_running,
        shared_warm_start: args.shared_warm_start,
        written_at: chrono::Utc::now(),
    };
    if args.dry_run {
        let script = slurm::render(&plan).map_err(fail)?;
        print!("{script}");
        println!(
            "\n# Not submitted (--dry-run). It would be written to {} and submitted with:",
            plan.script_path().display()
        );
        for line in slurm::submission_commands(&plan).map_err(fail)? {
            println!("{line}");
        }
        return Ok(());
    }

    plan.validate().map_err(fail)?;
    slurm::check_results_dir(&results).map_err(fail)?;
    slurm::check_sbatch().map_err(fail)?;
    if let Some(partition) = &plan.partition {
        slurm::check_partition(partition).map_err(fail)?;
    }
    let record = slurm::submit(&plan).map_err(fail)?;
    let shown = shlex::try_quote(&results.to_string_lossy())
        .map(|q| q.into_owned())
        .unwrap_or_else(|_| results.display().to_string());
    println!(
        "submitted job {}: {} task(s), one per node — script {}",
        record.job_id,
        record.tasks,
        record.script.display()
    );
    println!(
        "results go to {}/<node>/ (every node must see this folder)",
        results.display()
    );
    println!("follow:  ozone fleet status --results {shown}");
    println!("compare: ozone fleet report --results {shown}");
    Ok(())
}

/// The tune flags parse as `ozone tune` flags, and leave the output folder to the fleet.
fn check_tune_flags(flags: &[String], models: &[String]) -> Result<(), CliError> {
    for flag in flags {
        let name = flag.split('=').next().unwrap_or(flag);
        if matches!(
            name,
            "-o" | "--output-dir" | "--resume" | "--warm-start-from"
        ) {
            return Err(bad_input(format!(
                "tune flag {name}: the fleet sets it (each node writes DIR/<node>/; \
                 --shared-warm-start passes --warm-start-from)"
            )));
        }
    }
    let argv = ["ozone", "tune"]
        .into_iter()
        .map(String::from)
        .chain(flags.iter().cloned())
        .chain(["--output-dir".into(), "x".into(), "--".into()])
        .chain(models.iter().cloned());
    Cli::try_parse_from(argv).map_err(|e| {
        let text = e.to_string();
        let first = text.lines().next().unwrap_or_default();
        bad_input(format!(
            "tune flags after `--`: {}",
            first.trim_start_matches("error: ")
        ))
    })?;
    Ok(())
}

/// A model that is a file here is passed as an absolute path (the nodes start in DIR);
/// anything else (a tag, a path only the nodes have) as given.
fn model_path(model: &str) -> String {
    match std::fs::canonicalize(model) {
        Ok(path) if path.is_file() => path.display().to_string(),
        _ => {
            if model.ends_with(".gguf") {
                tracing::warn!("{model}: not found here; it must exist on every node");
            }
            model.to_string()
        }
    }
}

fn absolute(path: &Path) -> Result<PathBuf, CliError> {
    if path.is_absolute() {
        return Ok(path.to_path_buf());
    }
    Ok(std::env::current_dir().exit(Exit::Internal)?.join(path))
}

fn show_status(args: StatusArgs) -> Result<(), CliError> {
    let results = absolute(&args.results)?;
    let status = status::status(&results, args.job.as_deref(), !args.no_scheduler).map_err(fail)?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&status).exit(Exit::Internal)?
        );
    } else {
        print!("{}", status::table(&status));
    }
    Ok(())
}

fn show_report(args: ReportArgs) -> Result<(), CliError> {
    let results = absolute(&args.results)?;
    let built = report::build(&results).map_err(fail)?;
    if built.runs.is_empty() {
        return Err(bad_input(format!(
            "{}: no results yet (no DIR/<node>/summaries/*.json); see `ozone fleet status`",
            results.display()
        )));
    }
    let html_path = args
        .html
        .unwrap_or_else(|| results.join("fleet-report.html"));
    layout::write_atomically(&html_path, report::render_html(&built).as_bytes(), false)
        .map_err(fail)?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&built).exit(Exit::Internal)?
        );
    } else {
        print!("{}", report::table(&built));
        println!("report: {}", html_path.display());
    }
    Ok(())
}

fn manifest(args: ManifestArgs) -> Result<(), CliError> {
    check_tune_flags(&args.tune_flags, &args.models)?;
    let plan = k8s::ManifestPlan {
        name: args.name,
        namespace: args.namespace,
        image: args.image,
        ozone: args.ozone,
        nodes: args
            .nodelist
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(String::from)
            .collect(),
        results_claim: args.results_claim,
        mount_path: args.mount_path,
        gpu_resource: args.gpu_resource,
        gpus: args.gpus,
        models: args.models,
        tune_args: args.tune_flags,
        shared_warm_start: args.shared_warm_start,
    };
    let yaml = k8s::manifest_yaml(&plan).map_err(fail)?;
    match &args.output {
        Some(path) => {
            layout::write_atomically(path, yaml.as_bytes(), false).map_err(fail)?;
            eprintln!(
                "wrote {}: kubectl apply -f {}",
                path.display(),
                path.display()
            );
        }
        None => print!("{yaml}"),
    }
    Ok(())
}
