"""tools/train.py's command-line options reach the config."""
import os.path as osp
import sys

import pytest
from mmengine.config import Config

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, osp.join(ROOT, 'tools'))
import train  # noqa: E402

CONFIG = osp.join(
    ROOT, 'configs/mixedae/mixedae_vit-base-p16_8xb512-amp-coslr-300e_in1k.py')


def _merge(argv, cfg=None):
    sys_argv, sys.argv = sys.argv, ['train.py', CONFIG] + argv
    try:
        args = train.parse_args()
    finally:
        sys.argv = sys_argv
    return train.merge_args(cfg or Config.fromfile(CONFIG), args)


def test_defaults_and_work_dir():
    cfg = _merge([])
    assert cfg.work_dir.endswith(
        'mixedae_vit-base-p16_8xb512-amp-coslr-300e_in1k')
    assert cfg.launcher == 'none'
    assert _merge(['--work-dir', 'x']).work_dir == 'x'


def test_resume_auto_and_path():
    cfg = _merge(['--resume'])
    assert cfg.resume is True and cfg.load_from is None
    cfg = _merge(['--resume', 'a/epoch_3.pth'])
    assert cfg.resume is True and cfg.load_from == 'a/epoch_3.pth'


def test_amp_and_auto_scale_lr():
    cfg = Config.fromfile(CONFIG)
    cfg.optim_wrapper.type = 'OptimWrapper'
    cfg = _merge(['--amp', '--auto-scale-lr'], cfg)
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
    assert cfg.auto_scale_lr.enable is True


def test_auto_scale_lr_needs_a_base_batch_size():
    cfg = Config.fromfile(CONFIG)
    cfg.auto_scale_lr = dict()
    with pytest.raises(ValueError, match='base_batch_size'):
        _merge(['--auto-scale-lr'], cfg)
