"""ResumeConfigCheckHook: a run resumed under a changed config stops with
an error naming the changed keys (real two-run sequences on Fashion-MNIST,
through tools/train.py and mmengine's Runner)."""
import glob
import os.path as osp
import subprocess
import sys
import textwrap

from mmengine.config import Config
from mmengine.runner import Runner

from conftest import DATA, DEMO, ROOT, SMALL_MODEL, require_fashion_mnist
from mixedae.engine.hooks.resume_config_check_hook import config_differences
from mixedae.engine.runner import hook_type

CONFIGS = osp.join(ROOT, 'configs')


def write_config(tmp_path):
    """The demo, tiny (2 iterations of 8 test images), auto-resuming like
    the ViT-B configs (``resume = True``), with the check."""
    cfg = tmp_path / 'cfg.py'
    cfg.write_text(textwrap.dedent(f'''\
        _base_ = [{DEMO!r}]
        model = {SMALL_MODEL!r}
        train_dataloader = dict(
            batch_size=4, num_workers=0, persistent_workers=False,
            dataset=dict(data_root={DATA!r}, test_mode=True, indices=8))
        train_cfg = dict(max_epochs=1)
        param_scheduler = [dict(type='ConstantLR', factor=1.0)]
        # replaces the list; the check is a guard, in default_hooks
        custom_hooks = [dict(type='ThroughputHook')]
        resume = True
        '''))
    return str(cfg)


def run(cfg_file, work_dir, name, **options):
    """Train with mmengine's Runner; returns that run's log text."""
    cfg = Config.fromfile(cfg_file)
    cfg.merge_from_dict(options)
    cfg.work_dir = str(work_dir)
    cfg.experiment_name = name  # a fresh logger per run in this process
    runner = Runner.from_cfg(cfg)
    runner.train()
    return open(osp.join(runner.log_dir, f'{runner.timestamp}.log')).read()


def test_resume_with_changed_config_stops_naming_the_keys(tmp_path):
    require_fashion_mnist()
    cfg = write_config(tmp_path)
    work = tmp_path / 'work'
    run(cfg, work, 'first')
    ckpt = str(work / 'epoch_1.pth')
    assert osp.exists(ckpt)

    # the case: same work dir, new --cfg-options, through train.py
    proc = subprocess.run([
        sys.executable, 'tools/train.py', cfg, '--work-dir',
        str(work), '--cfg-options', 'model.backbone.homo_topk=8',
        'optim_wrapper.optimizer.lr=0.01'
    ], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    err = proc.stderr
    assert 'RuntimeError: Refusing to resume ' + ckpt in err, err[-3000:]
    assert 'model.backbone.homo_topk: None in the checkpoint, 8 now' in err
    assert 'optim_wrapper.optimizer.lr: 0.001 in the checkpoint, 0.01' in err
    assert '--work-dir DIR' in err
    assert '--cfg-options resume_config_check=False' in err
    assert 'data_root' not in err  # only what changed
    # stopped before training: nothing new written
    assert sorted(osp.basename(f) for f in glob.glob(str(work / '*.pth'))) \
        == ['epoch_1.pth']

    # the same config resumes, and says from which checkpoint
    log = run(cfg, work, 'same')
    assert f'Resuming {ckpt} (epoch 1, iter 2' in log
    assert 'resumed epoch: 1, iter: 2' in log

    # the explicit override resumes, warning with the differences
    log = run(cfg, work, 'override', resume_config_check=False,
              **{'model.backbone.homo_topk': 8})
    assert 'resumed epoch: 1, iter: 2' in log
    assert 'model.backbone.homo_topk: None in the checkpoint, 8 now' in log

    # load_from without resume (fine-tuning) is not a resume: no check
    log = run(cfg, tmp_path / 'other', 'load', resume=False, load_from=ckpt,
              **{'model.backbone.homo_topk': 8})
    assert 'Resuming' not in log and 'Load checkpoint from' in log


def test_config_differences():
    old = Config(dict(
        model=dict(backbone=dict(homo_layers=[0, 1], arch='b')),
        train_dataloader=dict(batch_size=8, num_workers=2,
                              dataset=dict(pipeline=[dict(scale=(32, 32))])),
        param_scheduler=[dict(end=3)], work_dir='a', resume=True))
    same = Config(dict(
        model=dict(backbone=dict(homo_layers=(0, 1), arch='b')),  # tuple
        train_dataloader=dict(batch_size=8, num_workers=8,  # loader only
                              dataset=dict(pipeline=[dict(scale=[32, 32])])),
        param_scheduler=[dict(end=3)], work_dir='b', resume=False))
    assert config_differences(old, same) == []
    new = Config(dict(
        model=dict(backbone=dict(homo_layers=[0], arch='b', topk=4)),
        train_dataloader=dict(batch_size=4,
                              dataset=dict(pipeline=[dict(scale=(32, 32))])),
        param_scheduler=[dict(end=3), dict(end=5)],
        optim_wrapper=dict(type='AmpOptimWrapper')))
    assert config_differences(old, new) == [
        ('model.backbone.homo_layers.1', 1, '<absent>'),
        ('model.backbone.topk', '<absent>', 4),
        ('optim_wrapper.type', '<absent>', 'AmpOptimWrapper'),
        ('param_scheduler.1.end', '<absent>', 5),
        ('train_dataloader.batch_size', 8, 4),
    ]


def _hook_types(cfg):
    """The hooks a config registers: its `default_hooks` (None turns one
    off) and `custom_hooks`."""
    hooks = [h for h in cfg.get('default_hooks', {}).values() if h]
    return [hook_type(h) for h in hooks + list(cfg.get('custom_hooks', []))]


def test_auto_resuming_configs_check_the_config():
    """Every pre-training config that resumes by itself (``resume = True``,
    the mmpretrain MAE convention, for Slurm requeue) has the check, and so
    do the MixedAE runtime defaults and the demo (resumed with --resume);
    in `default_hooks`, where a derived `custom_hooks` cannot drop it."""
    files = glob.glob(osp.join(CONFIGS, 'mixedae', '*.py')) + glob.glob(
        osp.join(CONFIGS, 'mae', '*.py'))
    resuming = []
    for path in files:
        cfg = Config.fromfile(path)
        if cfg.get('resume') is True:
            resuming.append(path)
            assert cfg.default_hooks.resume_check.type == \
                'ResumeConfigCheckHook', path
            assert _hook_types(cfg).count('ResumeConfigCheckHook') == 1, path
    assert any('vit-base' in p for p in resuming)
    assert any('/mae/' in p for p in resuming)
    for path in (osp.join(CONFIGS, '_base_/mixedae_runtime.py'), DEMO):
        cfg = Config.fromfile(path)
        assert cfg.default_hooks.resume_check.type == \
            'ResumeConfigCheckHook', path
        assert _hook_types(cfg).count('ResumeConfigCheckHook') == 1, path
