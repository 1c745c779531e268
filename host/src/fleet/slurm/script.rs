//! The batch script: plain bash a person can read, edit and submit again by hand.
//!
//! Every value that comes from the user (paths, models, tune flags) is quoted for the
//! shell with `shlex`; values that go into `#SBATCH` lines were checked by
//! [`SlurmPlan::validate`] and need no quoting.

use std::fmt::Write;
use std::path::Path;

use super::{FleetError, Placement, SlurmPlan};

/// The script for `plan`.
pub fn render(plan: &SlurmPlan) -> Result<String, FleetError> {
    plan.validate()?;
    let results = path_word(&plan.results)?;
    let ozone = path_word(&plan.ozone)?;
    let tasks = plan.tasks();
    let mut s = String::new();

    s.push_str("#!/bin/bash\n");
    let mut header = vec![
        format!(
            "ozone fleet: tunes {} on {tasks} node{} of a Slurm job array, one task per node,",
            plural(plan.models.len(), "model"),
            if tasks == 1 { "" } else { "s" },
        ),
        format!(
            "each task alone on its node. Written by ozone {} on {}.",
            env!("CARGO_PKG_VERSION"),
            plan.written_at.format("%Y-%m-%d %H:%M UTC")
        ),
        String::new(),
        format!(
            "Results: {}/<node>/. That folder must be on a filesystem every node sees.",
            plan.results.display()
        ),
        format!(
            "Each task's own output: {}/.fleet/slurm-<job>_<task>.out",
            plan.results.display()
        ),
        String::new(),
        "Submit it again by hand:".into(),
    ];
    header.extend(
        submission_commands(plan)?
            .into_iter()
            .map(|line| format!("  {line}")),
    );
    header.push(String::new());
    for line in header {
        let _ = writeln!(s, "{}", comment(&line));
    }

    s.push_str("#SBATCH --job-name=ozone-fleet\n");
    let throttle = plan
        .max_running
        .map(|k| format!("%{k}"))
        .unwrap_or_default();
    let _ = writeln!(s, "#SBATCH --array=0-{}{throttle}", tasks - 1);
    s.push_str("#SBATCH --nodes=1\n#SBATCH --ntasks=1\n#SBATCH --exclusive\n");
    for (option, value) in [
        ("partition", &plan.partition),
        ("account", &plan.account),
        ("gres", &plan.gres),
        ("time", &plan.time),
    ] {
        if let Some(v) = value {
            let _ = writeln!(s, "#SBATCH --{option}={v}");
        }
    }
    // Relative to the submission folder, DIR (Slurm creates no folders: .fleet exists).
    s.push_str("#SBATCH --output=.fleet/slurm-%A_%a.out\n");
    s.push_str("set -e\n\n");

    let _ = writeln!(s, "results={results}");
    s.push_str("node=${SLURMD_NODENAME:-$(hostname -s)}\n");
    s.push_str("job=${SLURM_ARRAY_JOB_ID:-${SLURM_JOB_ID:-by-hand}}\n");
    s.push_str("task=${SLURM_ARRAY_TASK_ID:-0}\n");
    s.push_str("out=$results/$node\n");
    s.push_str("claim=$out/.fleet/job-$job\n\n");
    s.push_str("if [ ! -d \"$results\" ]; then\n");
    s.push_str(
        "    echo \"error: $results is not visible on $node: the results directory must be \
         on a filesystem every node sees\" >&2\n",
    );
    s.push_str("    exit 2\nfi\n\n");

    s.push_str(
        "# A job array does not promise distinct nodes: when fewer nodes are free than\n\
         # tasks, a later task can land on a node an earlier one took. It leaves it alone.\n",
    );
    s.push_str("mkdir -p \"$out/.fleet\"\n");
    s.push_str("if ! mkdir \"$claim\" 2>/dev/null; then\n");
    s.push_str(
        "    echo \"ozone fleet: task $task skipped: $node was taken by task \
         $(cat \"$claim/task\" 2>/dev/null) of job $job\"\n",
    );
    s.push_str("    exit 0\nfi\n");
    s.push_str("echo \"$task\" >\"$claim/task\"\n\n");

    s.push_str("echo \"ozone fleet: task $task of job $job tunes on $node into $out\"\n");
    s.push_str("status=0\n");
    // The user's command, then what the fleet adds, then the models.
    let mut command = vec![ozone, "tune".to_string()];
    for arg in &plan.tune_args {
        command.push(word(arg)?);
    }
    let mut fleet = Vec::new();
    if plan.shared_warm_start {
        fleet.push("--warm-start-from \"$results\"");
    }
    fleet.push("--output-dir \"$out\"");
    let mut models = vec!["--".to_string()];
    for model in &plan.models {
        models.push(word(model)?);
    }
    let _ = writeln!(
        s,
        "{} \\\n    {} \\\n    {} || status=$?",
        command.join(" "),
        fleet.join(" "),
        models.join(" ")
    );
    s.push_str("echo \"$status\" >\"$claim/exit\"\n");
    s.push_str("exit \"$status\"\n");
    Ok(s)
}

/// The shell commands that submit the script, run from anywhere: `sbatch`, plus, with
/// `--nodelist`, a hold, one `scontrol update` per task pinning it to its node, and the
/// release.
pub fn submission_commands(plan: &SlurmPlan) -> Result<Vec<String>, FleetError> {
    let results = path_word(&plan.results)?;
    let script = path_word(&plan.script_relative())?;
    Ok(match &plan.placement {
        Placement::Count(_) => vec![format!("cd {results} && sbatch {script}")],
        Placement::Nodes(nodes) => {
            let mut lines = vec![
                format!("cd {results}"),
                format!("job=$(sbatch --parsable --hold {script})"),
            ];
            for (task, node) in nodes.iter().enumerate() {
                lines.push(format!(
                    "scontrol update JobId=\"${{job}}_{task}\" ReqNodeList={node}"
                ));
            }
            lines.push("scontrol release \"$job\"".into());
            lines
        }
    })
}

/// One shell word holding `value` exactly.
fn word(value: &str) -> Result<String, FleetError> {
    shlex::try_quote(value)
        .map(|q| q.into_owned())
        .map_err(|_| {
            FleetError::BadInput(format!(
                "{value:?}: a NUL byte cannot go into a shell script"
            ))
        })
}

fn path_word(path: &Path) -> Result<String, FleetError> {
    let text = path
        .to_str()
        .ok_or_else(|| FleetError::BadInput(format!("{}: not valid UTF-8", path.display())))?;
    word(text)
}

/// A comment line. A control character (a newline in a path) is written escaped: raw,
/// it would end the comment and run the rest as a command.
fn comment(text: &str) -> String {
    let mut line = String::from("#");
    if !text.is_empty() {
        line.push(' ');
    }
    for c in text.chars() {
        if c.is_control() {
            line.extend(c.escape_default());
        } else {
            line.push(c);
        }
    }
    line
}

fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::DateTime;
    use std::path::PathBuf;

    fn plan(placement: Placement) -> SlurmPlan {
        SlurmPlan {
            results: PathBuf::from("/shared/ozone results"),
            ozone: PathBuf::from("/opt/ozone/bin/ozone"),
            models: vec!["/models/qwen2.5-7b-q4_k_m.gguf".into()],
            tune_args: vec![
                "--memory-budget-mb".into(),
                "8192".into(),
                "--skip-concurrency".into(),
            ],
            placement,
            partition: Some("gpu".into()),
            gres: Some("gpu:1".into()),
            account: None,
            time: Some("04:00:00".into()),
            max_running: None,
            shared_warm_start: true,
            written_at: DateTime::from_timestamp(1_796_133_600, 0).unwrap(),
        }
    }

    /// The whole script for `--nodes 4`: what a user reads before submitting.
    #[test]
    fn golden_script_for_four_nodes() {
        let script = render(&plan(Placement::Count(4))).unwrap();
        let golden = include_str!("../../../tests/fixtures/slurm/nodes4.sh");
        let golden = golden.replace("{version}", env!("CARGO_PKG_VERSION"));
        assert_eq!(script, golden, "\n--- rendered ---\n{script}");
    }

    #[test]
    fn a_nodelist_pins_each_task_to_its_node() {
        let p = plan(Placement::Nodes(vec!["gpu01".into(), "gpu07".into()]));
        let lines = submission_commands(&p).unwrap();
        assert_eq!(
            lines,
            [
                "cd '/shared/ozone results'",
                "job=$(sbatch --parsable --hold .fleet/submit-20261201_140000.sh)",
                "scontrol update JobId=\"${job}_0\" ReqNodeList=gpu01",
                "scontrol update JobId=\"${job}_1\" ReqNodeList=gpu07",
                "scontrol release \"$job\"",
            ]
        );
        let script = render(&p).unwrap();
        assert!(script.contains("#SBATCH --array=0-1\n"), "{script}");
        assert!(
            script.contains("#   scontrol release \"$job\"\n"),
            "{script}"
        );
    }

    #[test]
    fn values_slurm_reads_unquoted_are_checked() {
        let mut p = plan(Placement::Count(2));
        p.partition = Some("gpu\n#SBATCH --uid=0".into());
        let err = render(&p).unwrap_err();
        assert!(err.is_bad_input());
        assert!(err.to_string().starts_with("--partition"), "{err}");
        let mut p = plan(Placement::Nodes(vec!["gpu01;reboot".into()]));
        p.partition = None;
        assert!(render(&p).unwrap_err().to_string().contains("gpu01;reboot"));
        assert!(render(&plan(Placement::Count(0))).is_err());
        let mut p = plan(Placement::Count(2));
        p.max_running = Some(1);
        assert!(render(&p).unwrap().contains("#SBATCH --array=0-1%1\n"));
    }

    #[test]
    fn a_nul_byte_is_refused() {
        let mut p = plan(Placement::Count(1));
        p.models = vec!["a\0b".into()];
        assert!(render(&p).unwrap_err().is_bad_input());
    }
}
