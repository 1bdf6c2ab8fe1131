"""Evaluate a checkpoint with a config's test loop (downstream benchmarks).

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out FILE.pkl]
        [--amp] [--cfg-options k=v ...] [--launcher none|pytorch|slurm|mpi]

Multi-GPU / multi-node: ``tools/dist_test.sh``, Slurm: ``tools/slurm_test.sh``.
Pre-training configs have no test set: this script is for the configs that
define ``test_dataloader``, ``test_evaluator`` and ``test_cfg``.
"""
import argparse
import os
import os.path as osp
import sys

from mmengine.config import Config, DictAction
from mmengine.evaluator import DumpResults
from mmengine.runner import Runner

# tools/ is the script's directory, hence on sys.path (also under torchrun)
from train import setup_cpu_distributed


# `python tools/train.py` puts tools/ on the path, not the repository root:
# configs import `projects.*` from there.
sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))


def parse_args():
    parser = argparse.ArgumentParser(
        description='Evaluate a checkpoint (runner.test())')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file to evaluate')
    parser.add_argument(
        '--work-dir',
        help='the dir for logs and metrics (default: '
        './work_dirs/CONFIG_NAME)')
    parser.add_argument(
        '--out', help='also dump every prediction to this pickle file')
    parser.add_argument(
        '--amp',
        action='store_true',
        help='run the test loop in mixed precision (fp16 autocast)')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config settings, key=value (e.g. '
        'test_dataloader.batch_size=64)')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    if not osp.isfile(args.checkpoint):
        parser.error(f'CHECKPOINT {args.checkpoint!r} is not a file.')
    if args.out is not None and not args.out.endswith(('.pkl', '.pickle')):
        parser.error(f'--out {args.out!r} must end with .pkl or .pickle.')
    return args


def merge_args(cfg, args):
    missing = [
        key for key in ('test_dataloader', 'test_evaluator', 'test_cfg')
        if cfg.get(key) is None
    ]
    if missing:
        raise ValueError(
            f'CONFIG {args.config} has no {", ".join(missing)}: tools/test.py '
            'evaluates downstream configs (configs/benchmarks/...); a '
            'pre-training config has nothing to test.')
    cfg.launcher = args.launcher
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])
    cfg.load_from = args.checkpoint
    cfg.resume = False
    if args.amp:
        cfg.test_cfg.fp16 = True  # TestLoop's autocast switch
    return cfg


def main():
    args = parse_args()
    cfg = Config.fromfile(args.config)
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    cfg = merge_args(cfg, args)
    setup_cpu_distributed(cfg)
    runner = Runner.from_cfg(cfg)
    if args.out is not None:
        runner.test_evaluator.metrics.append(
            DumpResults(out_file_path=args.out))
    runner.test()


if __name__ == '__main__':
    main()
