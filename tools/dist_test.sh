#!/usr/bin/env bash
# Distributed evaluation with torchrun: one process per GPU on this node.
set -e

usage() {
    cat <<USAGE
Usage: bash $0 CONFIG CHECKPOINT GPUS [test.py options...]

Launches GPUS processes of tools/test.py on this node with torchrun
(--launcher pytorch) to evaluate CHECKPOINT with the config's test loop
(downstream configs: the ones with test_dataloader / test_evaluator).

Environment (defaults in brackets):
  GPUS          processes per node if not given as 3rd argument
  NNODES        number of nodes [1]
  NODE_RANK     rank of this node [0]
  MASTER_ADDR   address of node 0 [127.0.0.1]
  PORT          rendezvous port on node 0 [29500]
  PYTHON        python interpreter [python]

Example:
  bash $0 configs/benchmarks/mmpretrain/CONFIG.py work_dirs/ft/epoch_100.pth 8
USAGE
}

if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then usage; exit 0; fi
if [[ $# -lt 2 ]]; then
    echo "Error: expected CONFIG CHECKPOINT [GPUS], got $# argument(s)." >&2
    usage >&2; exit 1
fi
CONFIG=$1
CHECKPOINT=$2
shift 2
if [[ $# -ge 1 && "$1" =~ ^[0-9]+$ ]]; then
    GPUS=$1
    shift
fi
if [[ ! "${GPUS:-}" =~ ^[1-9][0-9]*$ ]]; then
    echo "Error: GPUS must be a positive integer (3rd argument or \$GPUS)," \
        "got '${GPUS:-}'." >&2
    usage >&2; exit 1
fi
for f in "$CONFIG" "$CHECKPOINT"; do
    if [[ ! -f "$f" ]]; then
        echo "Error: '$f' (CONFIG / CHECKPOINT) is not a file." >&2
        usage >&2; exit 1
    fi
done
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}
PYTHON=${PYTHON:-python}

PYTHONPATH="$(dirname "$0")/..":$PYTHONPATH \
exec "$PYTHON" -m torch.distributed.run \
    --nnodes="$NNODES" \
    --node_rank="$NODE_RANK" \
    --master_addr="$MASTER_ADDR" \
    --nproc_per_node="$GPUS" \
    --master_port="$PORT" \
    "$(dirname "$0")/test.py" \
    "$CONFIG" \
    "$CHECKPOINT" \
    --launcher pytorch "$@"
