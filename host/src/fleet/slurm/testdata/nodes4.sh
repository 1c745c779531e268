#!/bin/bash
# ozone fleet: tunes 1 model on 4 nodes of a Slurm job array, one task per node,
# each task alone on its node. Written by ozone {version} on 2026-12-01 14:00 UTC.
#
# Results: /shared/ozone results/<node>/. That folder must be on a filesystem every node sees.
# Each task's own output: /shared/ozone results/.fleet/slurm-<job>_<task>.out
#
# Submit it again by hand:
#   cd '/shared/ozone results' && sbatch .fleet/submit-20261201_140000.sh
#
#SBATCH --job-name=ozone-fleet
#SBATCH --array=0-3
#SBATCH --nodes=1
#SBATCH --ntasks=1
#SBATCH --exclusive
#SBATCH --partition=gpu
#SBATCH --gres=gpu:1
#SBATCH --time=04:00:00
#SBATCH --output=.fleet/slurm-%A_%a.out
set -e

results='/shared/ozone results'
node=${SLURMD_NODENAME:-$(hostname -s)}
job=${SLURM_ARRAY_JOB_ID:-${SLURM_JOB_ID:-by-hand}}
task=${SLURM_ARRAY_TASK_ID:-0}
out=$results/$node
claim=$out/.fleet/job-$job

if [ ! -d "$results" ]; then
    echo "error: $results is not visible on $node: the results directory must be on a filesystem every node sees" >&2
    exit 2
fi

# A job array does not promise distinct nodes: when fewer nodes are free than
# tasks, a later task can land on a node an earlier one took. It leaves it alone.
mkdir -p "$out/.fleet"
if ! mkdir "$claim" 2>/dev/null; then
    echo "ozone fleet: task $task skipped: $node was taken by task $(cat "$claim/task" 2>/dev/null) of job $job"
    exit 0
fi
echo "$task" >"$claim/task"

echo "ozone fleet: task $task of job $job tunes on $node into $out"
status=0
/opt/ozone/bin/ozone tune --memory-budget-mb 8192 --skip-concurrency \
    --warm-start-from "$results" --output-dir "$out" \
    -- /models/qwen2.5-7b-q4_k_m.gguf || status=$?
echo "$status" >"$claim/exit"
exit "$status"
