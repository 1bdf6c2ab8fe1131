#!/usr/bin/env bash
# Distributed training with torchrun: one process per GPU on this node.
set -e

usage() {
    cat <<USAGE
Usage: bash $0 CONFIG GPUS [train.py options...]

Launches GPUS processes of tools/train.py on this node with torchrun
(--launcher pytorch). Works for pre-training and downstream configs.
The per-GPU batch is the config's train_dataloader.batch_size; for MixedAE
it must be a multiple of the group size G = 1 / mix_ratio.

Environment (defaults in brackets):
  GPUS          processes per node if not given as 2nd argument
  NNODES        number of nodes [1]
  NODE_RANK     rank of this node [0]
  MASTER_ADDR   address of node 0 [127.0.0.1]
  PORT          rendezvous port on node 0 [29500]
  PYTHON        python interpreter [python]

Examples:
  bash $0 configs/mixedae/mixedae_vit-base-p16_8xb512-amp-coslr-300e_in1k.py 8
  bash $0 CONFIG 8 --resume            # continue from the latest checkpoint
  NNODES=2 NODE_RANK=0 MASTER_ADDR=10.0.0.1 bash $0 CONFIG 8   # on node 0
USAGE
}

if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then usage; exit 0; fi
if [[ $# -lt 1 ]]; then
    echo "Error: CONFIG is missing." >&2; usage >&2; exit 1
fi
CONFIG=$1
shift
# GPUS: the 2nd positional argument (mmpretrain's form) or the environment
if [[ $# -ge 1 && "$1" =~ ^[0-9]+$ ]]; then
    GPUS=$1
    shift
fi
if [[ ! "${GPUS:-}" =~ ^[1-9][0-9]*$ ]]; then
    echo "Error: GPUS must be a positive integer (2nd argument or \$GPUS)," \
        "got '${GPUS:-}'." >&2
    usage >&2; exit 1
fi
if [[ ! -f "$CONFIG" ]]; then
    echo "Error: CONFIG '$CONFIG' is not a file." >&2
    usage >&2; exit 1
fi
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
    "$(dirname "$0")/train.py" \
    "$CONFIG" \
    --launcher pytorch "$@"
