"""tools/visualization/vis_mixing.py and MixingVisualizationHook on the
ViT-B ImageNet config (top-level ``data_preprocessor``), on a few images
composed on the fly in mmpretrain's ImageNet layout; the hook draws on rank
0 only (two real gloo processes)."""
import copy
import glob
import importlib.util
import os
import os.path as osp
import socket
import subprocess
import sys
import textwrap

import mmcv
import numpy as np
import torch
from mmengine.config import Config
from mmpretrain.registry import MODELS

from conftest import ROOT, SMALL_MODEL

VITB = osp.join(
    ROOT, 'configs/mixedae/mixedae_vit-base-p16_8xb512-amp-coslr-300e_in1k.py')
SCRIPT = osp.join(ROOT, 'tools/visualization/vis_mixing.py')
# ViT-B's geometry (224 px, patch 16, N = 196, G = 4), tiny widths (ViT-B's
# `arch` is a dict to replace, not to update)
SMALL_MODEL_VITB = copy.deepcopy(SMALL_MODEL)
SMALL_MODEL_VITB['backbone']['arch']['_delete_'] = True
# one uniform RGB colour per image: any crop of it is that colour
COLOURS = [(200, 40, 90), (30, 160, 220), (250, 220, 10), (60, 60, 60),
           (120, 250, 140), (10, 10, 200), (180, 100, 20), (240, 240, 240)]


def imagenet_folder(root):
    """mmpretrain's ImageNet layout: train/<class>/<image> + meta/train.txt.
    """
    os.makedirs(osp.join(root, 'meta'))
    lines = []
    for i, colour in enumerate(COLOURS):
        name = f'n0000000{i % 2}/img_{i}.png'
        img = np.zeros((256, 300, 3), np.uint8) + np.uint8(colour)
        mmcv.imwrite(img[..., ::-1], osp.join(root, 'train', name))  # BGR
        lines.append(f'{name} {i % 2}\n')
    with open(osp.join(root, 'meta', 'train.txt'), 'w') as f:
        f.writelines(lines)


def vitb_config(tmp_path):
    """The ViT-B config as it is (top-level data_preprocessor, ImageNet
    dataset and pipeline), small widths, on the composed folder."""
    data = tmp_path / 'imagenet'
    imagenet_folder(str(data))
    cfg = tmp_path / 'vitb.py'
    cfg.write_text(textwrap.dedent(f'''\
        _base_ = [{VITB!r}]
        model = {SMALL_MODEL_VITB!r}
        train_dataloader = dict(
            batch_size=4, num_workers=0, persistent_workers=False,
            dataset=dict(data_root={str(data)!r}))
        '''))
    assert 'data_preprocessor' not in Config.fromfile(str(cfg)).model
    return str(cfg)


def test_vis_mixing_on_the_vit_base_config(tmp_path, monkeypatch, capsys):
    cfg_file = vitb_config(tmp_path)
    import mixedae  # noqa: F401
    model = MODELS.build(Config.fromfile(cfg_file).model)
    ckpt = tmp_path / 'ckpt.pth'
    torch.save({'state_dict': model.state_dict()}, ckpt)

    spec = importlib.util.spec_from_file_location('vis_mixing', SCRIPT)
    vis_mixing = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(vis_mixing)
    out = tmp_path / 'out'
    monkeypatch.setattr(sys, 'argv', [
        SCRIPT, cfg_file, str(ckpt), '--out-dir', str(out), '--num-images',
        '4', '--start', '2', '--zoom', '1', '--layers', '1'
    ])
    vis_mixing.main()
    printed = capsys.readouterr().out
    assert 'as trained: l0 ' in printed and 'content only: l0 ' in printed

    # sources, in the config's normalisation undone and in RGB order
    recon = mmcv.imread(str(out / 'reconstruction' / 'group_0.png'),
                        channel_order='rgb')
    cell = 224 + 4
    assert recon.shape == (2 * cell, 5 * cell, 3)
    for s in range(4):
        source = recon[2:2 + 224, (1 + s) * cell + 2:(1 + s) * cell + 226]
        assert np.abs(source.astype(int) - COLOURS[2 + s]).max() <= 2, s
    attn = mmcv.imread(str(out / 'attention' / 'group_0_view_0.png'))
    # one layer, answer key + 4 queries, under the legend
    assert attn.shape[0] > cell and attn.shape[1] > 5 * cell
    assert attn.shape[0] - cell < 100


RANK_SCRIPT = '''\
import os, sys
import torch.distributed as dist
from mmengine.config import Config
from mmengine.runner import Runner
sys.path.insert(0, {root!r})
dist.init_process_group('gloo')
rank = dist.get_rank()
cfg = Config.fromfile({cfg!r})
# a work dir per rank, to see which ranks write
cfg.work_dir = os.path.join({out!r}, f'rank{{rank}}')
cfg.train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=1)
cfg.custom_hooks = [dict(type='MixingVisualizationHook', num_images=4,
                         attention=True)]
runner = Runner.from_cfg(cfg)
runner.train_loop  # builds the dataloader (a collective) on every rank
hook = [h for h in runner.hooks if type(h).__name__ ==
        'MixingVisualizationHook'][0]
hook.after_train_epoch(runner)  # the end of the last epoch
dist.barrier()
print('done', rank)
'''


def test_hook_draws_on_rank_0_only(tmp_path):
    cfg_file = vitb_config(tmp_path)
    script = tmp_path / 'rank.py'
    script.write_text(RANK_SCRIPT.format(root=ROOT, cfg=cfg_file,
                                         out=str(tmp_path)))
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    procs = [
        subprocess.Popen([sys.executable, str(script)], cwd=ROOT,
                         env=dict(os.environ, RANK=str(r), WORLD_SIZE='2',
                                  MASTER_ADDR='127.0.0.1',
                                  MASTER_PORT=str(port), OMP_NUM_THREADS='1'),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True) for r in range(2)
    ]
    try:
        results = [p.communicate(timeout=300) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for r, (p, (stdout, stderr)) in enumerate(zip(procs, results)):
        assert p.returncode == 0 and f'done {r}' in stdout, stderr[-3000:]
    vis = tmp_path / 'rank0' / 'vis' / 'epoch_1'
    assert sorted(osp.basename(f) for f in glob.glob(str(vis / '*.png'))) \
        == ['attention_group_0_view_0.png', 'group_0.png']
    assert not (tmp_path / 'rank1' / 'vis').exists()
