#!/usr/bin/env bash
# Training on a Slurm cluster with srun: one task per GPU.
set -e

usage() {
    cat <<USAGE
Usage: [GPUS=8] bash $0 PARTITION JOB_NAME CONFIG WORK_DIR [train.py options...]

Runs tools/train.py CONFIG --work-dir WORK_DIR --launcher slurm on GPUS
tasks (one per GPU). Works for pre-training and downstream configs; rerun
with --resume to continue from the latest checkpoint in WORK_DIR.

Environment (defaults in brackets):
  GPUS            total tasks / GPUs [8]
  GPUS_PER_NODE   GPUs (tasks) per node [min(GPUS, 8)]
  CPUS_PER_TASK   CPU cores per task, for data loading [5]
  SRUN_ARGS       extra srun arguments, e.g. "--quotatype=auto" [none]
  PYTHON          python interpreter [python]

Example:
  GPUS=16 bash $0 dev mixedae configs/mixedae/CONFIG.py work_dirs/mixedae
USAGE
}

if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then usage; exit 0; fi
if [[ $# -lt 4 ]]; then
    echo "Error: expected PARTITION JOB_NAME CONFIG WORK_DIR, got $# argument(s)." >&2
    usage >&2; exit 1
fi
PARTITION=$1
JOB_NAME=$2
CONFIG=$3
WORK_DIR=$4
shift 4
if [[ ! -f "$CONFIG" ]]; then
    echo "Error: CONFIG '$CONFIG' is not a file." >&2; usage >&2; exit 1
fi
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-$((GPUS < 8 ? GPUS : 8))}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
SRUN_ARGS=${SRUN_ARGS:-""}
PYTHON=${PYTHON:-python}
for v in GPUS GPUS_PER_NODE CPUS_PER_TASK; do
    if [[ ! "${!v}" =~ ^[1-9][0-9]*$ ]]; then
        echo "Error: $v must be a positive integer, got '${!v}'." >&2; exit 1
    fi
done

set -x
# SRUN_ARGS is split into words on purpose
PYTHONPATH="$(dirname "$0")/..":$PYTHONPATH \
srun -p "$PARTITION" \
    --job-name="$JOB_NAME" \
    --gres=gpu:"$GPUS_PER_NODE" \
    --ntasks="$GPUS" \
    --ntasks-per-node="$GPUS_PER_NODE" \
    --cpus-per-task="$CPUS_PER_TASK" \
    --kill-on-bad-exit=1 \
    $SRUN_ARGS \
    "$PYTHON" -u "$(dirname "$0")/train.py" "$CONFIG" --work-dir="$WORK_DIR" \
    --launcher=slurm "$@"
