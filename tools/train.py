"""Train a model from a config (pre-training or a downstream benchmark).

    python tools/train.py CONFIG [--work-dir DIR] [--resume [auto|CKPT]]
        [--amp] [--auto-scale-lr] [--cfg-options k=v ...]
        [--launcher none|pytorch|slurm|mpi]

Multi-GPU / multi-node: ``tools/dist_train.sh``, Slurm:
``tools/slurm_train.sh``. ``--resume`` (alone or ``auto``) continues from the
latest checkpoint in the work dir (a fresh start when there is none).

A config with ``runner_type`` (every MixedAE pre-training:
``MixedAERunner``, which makes sure the guard hooks run) is built through
the ``RUNNERS`` registry, as in mmpretrain's train.py; others by mmengine's
``Runner``. A diverged run (``DivergenceHook``) exits with status 1 and
its one-line message.
"""
import argparse
import os
import os.path as osp
import sys

from mmengine.config import Config, DictAction
from mmengine.dist import is_main_process
from mmengine.runner import Runner


# `python tools/train.py` puts tools/ on the path, not the repository root:
# configs import `projects.*` from there.
sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

# after the path: importable from a checkout that is not pip-installed;
# tools/test.py imports it from here
from mixedae.utils.dist import setup_cpu_distributed  # noqa: E402


def parse_args():
    parser = argparse.ArgumentParser(description='Train a model')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const='auto',
        help='resume from the given checkpoint, or, with no value or "auto", '
        'from the latest checkpoint in the work dir')
    parser.add_argument(
        '--amp', action='store_true', help='mixed precision training')
    parser.add_argument(
        '--auto-scale-lr',
        action='store_true',
        help='scale the lr by the actual global batch against the config\'s '
        '`auto_scale_lr.base_batch_size`')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config settings, key=value (e.g. '
        'model.backbone.mix_ratio=0.5)')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def merge_args(cfg, args):
    cfg.launcher = args.launcher
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])
    if args.amp:
        optim_wrapper = cfg.optim_wrapper.get('type', 'OptimWrapper')
        if optim_wrapper != 'AmpOptimWrapper':
            cfg.optim_wrapper.type = 'AmpOptimWrapper'
            cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    if args.auto_scale_lr:
        if 'base_batch_size' not in cfg.get('auto_scale_lr', {}):
            raise ValueError('--auto-scale-lr needs `auto_scale_lr.'
                             'base_batch_size` in the config.')
        cfg.auto_scale_lr.enable = True
    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume
    return cfg


def main():
    args = parse_args()
    cfg = Config.fromfile(args.config)
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    cfg = merge_args(cfg, args)
    setup_cpu_distributed(cfg)
    if 'runner_type' in cfg:
        from mmpretrain.registry import RUNNERS
        runner = RUNNERS.build(cfg)
    else:
        runner = Runner.from_cfg(cfg)
    from mixedae.engine import TrainingDiverged
    try:
        runner.train()
    except TrainingDiverged as e:
        # an expected stop, already in the log: its line, not a traceback
        sys.exit(f'TrainingDiverged: {e}' if is_main_process() else 1)


if __name__ == '__main__':
    main()
