"""Real multi-process runs through the launch scripts: 2 CPU processes (gloo)
started by tools/dist_train.sh / tools/dist_test.sh with torchrun, and the
Slurm scripts' command lines."""
import glob
import json
import os
import os.path as osp
import re
import socket
import subprocess
import sys
import textwrap

import pytest
import torch

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEMO = osp.join(
    ROOT, 'configs/mixedae/mixedae_vit-tiny-p4_1xb128-coslr-3e_'
    'fashion-mnist-32px.py')
# the demo plus HomoCon: every loss term the model has
FEATURE_HOMOCON = DEMO.replace('mixedae_vit-tiny',
                               'mixedae-feature-homocon_vit-tiny')
DATA = osp.join(ROOT, 'data/fashion_mnist')

# Registered into the run through custom_imports: records, per rank, what
# the real model sees and does (the model's loss is wrapped, not replaced).
PROBE = '''
import json, os.path as osp
import torch
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmpretrain.registry import HOOKS


@HOOKS.register_module()
class RankProbeHook(Hook):
    priority = 'LOWEST'

    def before_train(self, runner):
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        self.rec = dict(batch=[], samples=[], masks=[], local=[], logged=[])
        model.backbone.register_forward_hook(
            lambda m, args, out: self.rec['masks'].append(list(out[1].shape)))
        model_loss = model.loss

        def loss(*args, **kwargs):
            losses = model_loss(*args, **kwargs)
            self.rec['local'].append({k: v.item() for k, v in losses.items()})
            return losses
        model.loss = loss

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        self.rec['batch'].append(len(data_batch['inputs']))
        self.rec['samples'] += [
            s.sample_idx for s in data_batch['data_samples']]
        self.rec['logged'].append({k: float(v) for k, v in outputs.items()})

    def after_train(self, runner):
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        rank = get_rank()
        torch.save(model.state_dict(),
                   osp.join(runner.work_dir, f'weights_rank{rank}.pth'))
        with open(osp.join(runner.work_dir, f'probe_rank{rank}.json'),
                  'w') as f:
            json.dump(self.rec, f)
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def launch_env(tmp_path):
    env = dict(os.environ, PYTHON=sys.executable, PORT=str(free_port()),
               MASTER_ADDR='127.0.0.1')
    env['PYTHONPATH'] = os.pathsep.join(
        [str(tmp_path), ROOT, env.get('PYTHONPATH', '')])
    env.pop('GPUS', None)
    return env


def write_config(tmp_path, batch_size=8, num_images=32, config=DEMO):
    """The demo config, shrunken: 32 images, 2 ranks x 8 = 2 iterations."""
    (tmp_path / 'rank_probe.py').write_text(PROBE)
    cfg = tmp_path / 'cfg.py'
    cfg.write_text(textwrap.dedent(f'''\
        _base_ = [{config!r}]
        custom_imports = dict(imports=['mixedae', 'rank_probe'],
                              allow_failed_imports=False)
        train_dataloader = dict(
            batch_size={batch_size}, num_workers=0, persistent_workers=False,
            dataset=dict(indices={num_images}, data_root={DATA!r}))
        train_cfg = dict(max_epochs=1)
        param_scheduler = [dict(type='ConstantLR', factor=1.0)]
        default_hooks = dict(logger=dict(interval=1))
        log_processor = dict(window_size=1)
        custom_hooks = [dict(type='ThroughputHook', window_size=1),
                        dict(type='RankProbeHook')]
        '''))
    return str(cfg)


def run_script(args, env, timeout=180):
    return subprocess.run(['bash'] + args, cwd=ROOT, env=env, timeout=timeout,
                          capture_output=True, text=True)


def test_dist_train_two_cpu_processes(tmp_path):
    if not osp.exists(osp.join(DATA, 'train-images-idx3-ubyte')):
        pytest.fail(f'Fashion-MNIST is missing in {DATA}: run `make data`')
    work_dir = tmp_path / 'work'
    proc = run_script([
        'tools/dist_train.sh',
        write_config(tmp_path, config=FEATURE_HOMOCON), '2', '--work-dir',
        str(work_dir)
    ], launch_env(tmp_path))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    probes = [
        json.load(open(work_dir / f'probe_rank{r}.json')) for r in range(2)
    ]
    for p in probes:
        # each rank loads its own 8 images and mixes them as 2 groups of 4
        assert p['batch'] == [8, 8]
        assert p['masks'] == [[2, 1, 64], [2, 1, 64]]
    # the sampler splits the 32 images between the ranks
    assert set(probes[0]['samples']).isdisjoint(probes[1]['samples'])
    assert sorted(probes[0]['samples'] + probes[1]['samples']) == list(
        range(32))

    # logged values are the mean over ranks of the local ones
    log = glob.glob(str(work_dir / '*' / 'vis_data' / 'scalars.json'))
    records = [json.loads(line) for line in open(log[0])]
    assert [r['iter'] for r in records] == [1, 2]
    for it, record in enumerate(records):
        local = [p['local'][it] for p in probes]
        assert local[0]['loss_rec'] != local[1]['loss_rec']
        for key in ('loss_rec', 'loss_homocon', 'loss_recog'):
            mean = (local[0][key] + local[1][key]) / 2
            assert probes[0]['logged'][it][key] == pytest.approx(mean)
            assert probes[1]['logged'][it][key] == pytest.approx(mean)
            assert record[key] == pytest.approx(mean)
        assert record['loss'] == pytest.approx(
            record['loss_rec'] + record['loss_homocon'] +
            record['loss_recog'])
        # img_per_sec counts both ranks' images
        assert record['img_per_sec'] == pytest.approx(16 / record['time'])

    # DDP kept the replicas identical
    w0, w1 = (torch.load(work_dir / f'weights_rank{r}.pth') for r in range(2))
    assert w0.keys() == w1.keys()
    for key in w0:
        assert torch.equal(w0[key], w1[key]), key
    ckpt = torch.load(work_dir / 'epoch_1.pth', map_location='cpu')
    assert ckpt['state_dict'].keys() == w0.keys()
    for key in w0:
        assert torch.equal(ckpt['state_dict'][key], w0[key]), key


def test_dist_train_batch_not_multiple_of_group_size_fails_clearly(tmp_path):
    proc = run_script([
        'tools/dist_train.sh',
        write_config(tmp_path, batch_size=6, num_images=24), '1',
        '--work-dir',
        str(tmp_path / 'work')
    ], launch_env(tmp_path))
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    # MixedAEHook (a guard: present whatever `custom_hooks` says) stops
    # it before the first iteration
    assert ('`train_dataloader.batch_size`=6 (per GPU) is not a multiple '
            'of the group size G=4') in out


def test_dist_test_evaluates_a_downstream_config(tmp_path):
    """tools/dist_test.sh -> tools/test.py -> runner.test() on 2 ranks,
    with a small mmpretrain classifier config."""
    cfg = tmp_path / 'cls.py'
    cfg.write_text(textwrap.dedent(f'''\
        default_scope = 'mmpretrain'
        custom_imports = dict(imports=['mixedae'], allow_failed_imports=False)
        model = dict(
            type='ImageClassifier',
            data_preprocessor=dict(mean=[72.94], std=[90.02], to_rgb=False),
            backbone=dict(
                type='VisionTransformer',
                arch=dict(embed_dims=32, num_layers=1, num_heads=2,
                          feedforward_channels=64),
                img_size=32, patch_size=4, in_channels=1),
            neck=None,
            head=dict(type='VisionTransformerClsHead', num_classes=10,
                      in_channels=32))
        test_dataloader = dict(
            batch_size=8, num_workers=0,
            sampler=dict(type='DefaultSampler', shuffle=False),
            dataset=dict(type='FashionMNIST', data_root={DATA!r},
                         test_mode=True, indices=32,
                         pipeline=[dict(type='Resize', scale=32),
                                   dict(type='PackInputs')]))
        test_evaluator = dict(type='Accuracy', topk=(1, ))
        test_cfg = dict()
        env_cfg = dict(dist_cfg=dict(backend='gloo'))
        '''))
    from mmengine.config import Config
    from mmpretrain.registry import MODELS
    import mixedae  # noqa: F401
    model = MODELS.build(Config.fromfile(str(cfg)).model)
    ckpt = tmp_path / 'cls.pth'
    torch.save({'state_dict': model.state_dict()}, ckpt)

    work_dir = tmp_path / 'work'
    proc = run_script([
        'tools/dist_test.sh',
        str(cfg),
        str(ckpt), '2', '--work-dir',
        str(work_dir), '--out',
        str(tmp_path / 'preds.pkl')
    ], launch_env(tmp_path))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # rank 0's text log: mmengine's LoggerHook dumps the test metrics to
    # <timestamp>.json on every rank, and two ranks writing one file can
    # leave it garbled
    log = open(glob.glob(str(work_dir / '*' / '*.log'))[0]).read()
    top1 = float(re.search(r'Epoch\(test\).*accuracy/top1: ([0-9.]+)',
                           log).group(1))
    import pickle
    preds = pickle.load(open(tmp_path / 'preds.pkl', 'rb'))
    assert len(preds) == 32  # both ranks' predictions, gathered

    # the same checkpoint evaluated here, in one process: the same
    # prediction for every image and the same accuracy (the model is
    # untrained: its accuracy is whatever it is, but a run that evaluated
    # other weights or lost a rank's half would not match)
    from mmengine.dataset import pseudo_collate
    from mmpretrain.registry import DATASETS
    dataset = DATASETS.build(Config.fromfile(str(cfg)).test_dataloader.dataset)
    model.eval()
    with torch.no_grad():
        outs = model.test_step(
            pseudo_collate([dataset[i] for i in range(len(dataset))]))
    expected = {o.sample_idx: o.pred_label.item() for o in outs}
    assert {p['sample_idx']: p['pred_label'].item() for p in preds} == \
        expected
    correct = sum(o.pred_label.item() == o.gt_label.item() for o in outs)
    assert top1 == pytest.approx(100 * correct / 32)


def test_test_py_refuses_a_pretraining_config(tmp_path):
    ckpt = tmp_path / 'x.pth'
    torch.save({}, ckpt)
    proc = subprocess.run(
        [sys.executable, 'tools/test.py', DEMO,
         str(ckpt)],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert 'has no test_dataloader, test_evaluator, test_cfg' in proc.stderr


@pytest.mark.parametrize('script', ['dist_train.sh', 'dist_test.sh',
                                    'slurm_train.sh', 'slurm_test.sh'])
def test_scripts_print_usage(script):
    path = osp.join(ROOT, 'tools', script)
    assert os.access(path, os.X_OK)
    help_ = run_script([path, '-h'], dict(os.environ))
    assert help_.returncode == 0 and help_.stdout.startswith('Usage:')
    wrong = run_script([path], dict(os.environ, GPUS=''))
    assert wrong.returncode != 0 and 'Usage:' in wrong.stderr
    assert 'Error:' in wrong.stderr


def test_slurm_train_command_line(tmp_path):
    """srun is not installed here: a stand-in on PATH records its argv, to
    check the scripts' srun/train.py command lines."""
    srun = tmp_path / 'srun'
    srun.write_text('#!/bin/sh\nprintf "%s\\n" "$@" > "$SRUN_LOG"\n')
    srun.chmod(0o755)
    log = tmp_path / 'argv.txt'
    env = dict(os.environ, PATH=f'{tmp_path}:{os.environ["PATH"]}',
               SRUN_LOG=str(log), GPUS='16', CPUS_PER_TASK='4',
               SRUN_ARGS='--quotatype=auto --exclusive')
    proc = run_script([
        'tools/slurm_train.sh', 'dev', 'mixedae', DEMO, 'work_dirs/x',
        '--resume', '--cfg-options', 'train_dataloader.batch_size=64'
    ], env)
    assert proc.returncode == 0, proc.stderr
    argv = log.read_text().splitlines()
    assert argv[:8] == [
        '-p', 'dev', '--job-name=mixedae', '--gres=gpu:8', '--ntasks=16',
        '--ntasks-per-node=8', '--cpus-per-task=4', '--kill-on-bad-exit=1'
    ]
    assert argv[8:10] == ['--quotatype=auto', '--exclusive']
    assert argv[11] == '-u' and argv[12].endswith('tools/train.py')
    assert argv[13:] == [DEMO,
        '--work-dir=work_dirs/x', '--launcher=slurm', '--resume',
        '--cfg-options', 'train_dataloader.batch_size=64'
    ]

    proc = run_script([
        'tools/slurm_test.sh', 'dev', 'eval', DEMO, DEMO
    ], dict(env, GPUS='2'))
    assert proc.returncode == 0, proc.stderr
    argv = log.read_text().splitlines()
    assert '--ntasks=2' in argv and '--gres=gpu:2' in argv
    assert argv[-4].endswith('tools/test.py')
    assert argv[-3:] == [DEMO, DEMO, '--launcher=slurm']
