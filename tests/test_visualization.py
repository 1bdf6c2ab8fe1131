"""Visual diagnostics: the keys homologous attention keeps (recording,
rendering, pictures from the hook and from tools/visualization/vis_mixing.py)
and TensorBoard as a logging backend."""
import glob
import importlib.util
import os.path as osp
import subprocess
import sys
import textwrap

import mmcv
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner
from mmpretrain.registry import MODELS

from conftest import (DATA, GT_PRIOR, ROOT, SMALL_MODEL, SMALL_PROJECTOR,
                      demo_cfg, require_fashion_mnist)
from mixedae.engine.hooks.mixing_visualization_hook import \
    write_attention_pictures
from mixedae.models.utils import homologous_precision
from mixedae.utils.visualization import (QUERY_COLOR, SOURCE_COLORS,
                                         SWATCH, attention_keys_grid,
                                         label_attention_grid, pick_queries,
                                         recording_keep_masks)


def check_labelled(img, rows, cols, cell, num_sources):
    """``img`` (RGB) is an R x C attention grid of ``cell`` px cells under
    a legend of exactly the G source colours and the query outline, right
    of a margin with a label beside every row; returns the grid."""
    top, left = img.shape[0] - rows * cell, img.shape[1] - cols * cell
    assert top > 0 and left > 0, img.shape
    pixels = img[:top].reshape(-1, 3)
    for s, colour in enumerate(SOURCE_COLORS):
        n = (pixels == colour).all(axis=1).sum()
        assert (n >= SWATCH**2) == (s < num_sources), (s, n)
    assert (pixels == QUERY_COLOR).all(axis=1).sum() >= 4 * (SWATCH - 2)
    for r in range(rows):  # dark text beside each row
        assert (img[top + r * cell:top + (r + 1) * cell, :left] < 100).any()
    assert (img[top:, :left] > 250).mean() > .5  # mostly white
    return img[top:, left:]


def test_attention_keys_grid_colours():
    p, zoom, pad = 4, 2, 1
    mixed = np.full((8, 8, 1), 200, np.uint8)  # 2x2 patches
    slots = np.array([0, 1, 1, 0])
    weights = np.zeros((3, 4, 4), np.float32)  # 3 rows (e.g. layers)
    weights[:, 2, 1] = 1.  # query 2 keeps key 1 fully,
    weights[:, 2, 3] = .5  # key 3 half
    grid = attention_keys_grid(mixed, slots, weights, np.array([2]), p,
                               zoom=zoom, pad=pad, alpha=.5)
    cell = 8 * zoom + 2 * pad
    assert grid.shape == (3 * cell, 2 * cell, 3) and grid.dtype == np.uint8

    def patch(row, col, j, dy=3, dx=3):  # a pixel inside patch j
        y = row * cell + pad + (j // 2) * p * zoom + dy
        x = col * cell + pad + (j % 2) * p * zoom + dx
        return grid[y, x].astype(int)

    # answer key: every patch fully tinted by its source colour
    for j in range(4):
        expect = 200 * .5 + SOURCE_COLORS[slots[j]] * .5
        assert np.abs(patch(0, 0, j) - expect).max() <= 1
    # query column: kept key tinted, half-kept less, others dimmed
    assert np.abs(patch(1, 1, 1) - (100 + SOURCE_COLORS[1] * .5)).max() <= 1
    assert np.abs(patch(1, 1, 0) - 200 * .35).max() <= 1
    w = .5
    half = 200 * (.35 + .65 * w) * (1 - .5 * w) + SOURCE_COLORS[0] * .5 * w
    assert np.abs(patch(1, 1, 3) - half).max() <= 1
    # the query patch (2) is outlined in yellow
    assert (patch(2, 1, 2, dy=0, dx=3) == QUERY_COLOR).all()
    assert (grid[:pad] == 255).all()  # white padding


def test_label_attention_grid_names_rows_and_colours():
    mixed = np.full((32, 32, 1), 200, np.uint8)  # 4x4 patches of 8 px
    slots = np.arange(16) % 2  # G = 2
    weights = np.zeros((3, 16, 16), np.float32)
    labels = ['layer 0', 'layer 1', 'layer 11']
    grid = attention_keys_grid(mixed, slots, weights, np.array([0, 1]), 8,
                               zoom=1)
    pic = label_attention_grid(grid, labels, num_sources=2)
    cell = 32 + 4
    assert grid.shape == (3 * cell, 3 * cell, 3)
    # the grid, unchanged, in the bottom-right corner
    assert np.array_equal(check_labelled(pic, 3, 3, cell, 2), grid)
    # each row its own label: 'layer 0' and 'layer 1' differ in the margin
    top, left = pic.shape[0] - grid.shape[0], pic.shape[1] - grid.shape[1]
    band = [pic[top + r * cell:top + (r + 1) * cell, :left] for r in range(3)]
    assert not np.array_equal(band[0], band[1])
    # labels have a fixed size: the margin does not grow with the zoom
    zoomed = attention_keys_grid(mixed, slots, weights, np.array([0, 1]), 8,
                                 zoom=4)
    pic4 = label_attention_grid(zoomed, labels, num_sources=2)
    assert pic4.shape[1] - zoomed.shape[1] == left
    check_labelled(pic4, 3, 3, 32 * 4 + 4, 2)
    # a picture narrower than one legend entry still shows the whole legend
    tiny = attention_keys_grid(mixed[:8, :8], slots[:1], weights[:, :1, :1],
                               np.array([0]), 8, zoom=1)
    check_labelled(label_attention_grid(tiny, labels, 8), 3, 2, 12, 8)
    with pytest.raises(ValueError, match='5 row labels'):
        label_attention_grid(grid, labels + ['x', 'y'], 2)


def test_pick_queries_one_per_source():
    slots = torch.tensor([2, 0, 1, 3, 0, 2, 1, 3])
    q = pick_queries(slots, torch.Generator().manual_seed(0))
    assert slots[q].tolist() == [0, 1, 2, 3]


def test_recording_keep_masks(tiny_model):
    backbone = tiny_model.backbone  # 2 layers, N = 16, G = 4, top-4
    x = torch.randn(8, 3, 32, 32)
    backbone(x)  # training path: records nothing
    assert all(backbone.layers[i].attn.keep_mask is None
               for i in backbone.homo_layers)
    backbone.record_precision()  # to compare with the recorded keys
    with recording_keep_masks(backbone) as keeps:
        masks = backbone.draw_masks(x)
        backbone.encode_mixed(x, masks)
    assert sorted(keeps) == [0, 1]
    assert all(not backbone.layers[i].attn.record_keep
               and backbone.layers[i].attn.keep_mask is None
               for i in backbone.homo_layers)
    slots = masks.flatten(0, 1)
    source_ids = torch.cat((slots.new_full((2, 1), -1), slots), dim=1)
    for i, keep in keeps.items():
        assert keep.shape == (2, 2, 17, 17) and keep.dtype == torch.bool
        assert (keep.sum(-1) >= backbone.homo_topk).all()
        # the recorded selection is the one the precision was computed on
        assert homologous_precision(keep, source_ids) == pytest.approx(
            backbone.layers[i].attn.homologous_precision.item())


def test_write_attention_pictures(tiny_model, tmp_path):
    x = torch.randn(8, 3, 32, 32)
    with recording_keep_masks(tiny_model.backbone) as keeps:
        out = tiny_model.reconstruct(x)
    cell = 32 * 3 + 2 * 2
    files = write_attention_pictures(out, keeps, tiny_model, str(tmp_path),
                                     zoom=3)
    assert [osp.basename(f) for f in files] == [
        'attention_group_0_view_0.png', 'attention_group_1_view_0.png'
    ]
    # rows: layers; columns: answer key + one query per source; labelled
    plain = write_attention_pictures(out, keeps, tiny_model, str(tmp_path),
                                     zoom=3, prefix='plain_', labels=False)
    assert mmcv.imread(plain[0]).shape == (2 * cell, 5 * cell, 3)
    grid = check_labelled(mmcv.imread(files[0], channel_order='rgb'), 2, 5,
                          cell, 4)
    assert np.array_equal(grid, mmcv.imread(plain[0], channel_order='rgb'))
    files = write_attention_pictures(out, keeps, tiny_model, str(tmp_path),
                                     queries=[0, 15], layers=[1],
                                     per_head=True, zoom=3, prefix='h_')
    # 2 heads: one row each
    check_labelled(mmcv.imread(files[0], channel_order='rgb'), 2, 3, cell, 4)
    with pytest.raises(ValueError, match='layers'):
        write_attention_pictures(out, keeps, tiny_model, str(tmp_path),
                                 layers=[5])
    with pytest.raises(ValueError, match='query patches'):
        write_attention_pictures(out, keeps, tiny_model, str(tmp_path),
                                 queries=[16])


def small_demo_cfg(work_dir):
    cfg = demo_cfg(work_dir, num_images=16, batch_size=8, small=True)
    cfg.train_dataloader.dataset.test_mode = True
    return cfg


def test_hook_pictures_and_tensorboard(tmp_path):
    require_fashion_mnist()
    from tensorboard.backend.event_processing.event_accumulator import \
        EventAccumulator
    cfg = small_demo_cfg(tmp_path)
    cfg.default_hooks.logger.interval = 1
    cfg.custom_hooks = [
        dict(type='MixingVisualizationHook', num_images=4, attention=True),
        dict(type='ThroughputHook')
    ]
    cfg.visualizer.vis_backends = [
        dict(type='LocalVisBackend'),
        dict(type='TensorboardVisBackend')
    ]
    Runner.from_cfg(cfg).train()

    vis = tmp_path / 'vis' / 'epoch_1'
    assert (vis / 'group_0.png').exists()
    # 2 layers x (answer key + 4 queries), zoom 1
    check_labelled(mmcv.imread(str(vis / 'attention_group_0_view_0.png'),
                               channel_order='rgb'), 2, 5, 36, 4)

    events = glob.glob(str(tmp_path / '*' / 'vis_data' / 'events.out.*'))
    assert len(events) == 1
    acc = EventAccumulator(events[0])
    acc.Reload()
    tags = acc.Tags()['scalars']
    for tag in ('loss_rec', 'loss_recog', 'homo_prec', 'homo_prec_l0',
                'homo_prec_l1', 'img_per_sec', 'lr'):
        assert tag in tags, tags
    assert [e.step for e in acc.Scalars('homo_prec_l1')] == [1, 2]


def test_vis_mixing_script(tmp_path, monkeypatch):
    require_fashion_mnist()
    cfg_file = tmp_path / 'cfg.py'
    # the ground-truth prior: an encoder with a source cue to remove
    cfg_file.write_text(textwrap.dedent(f'''\
        _base_ = [{GT_PRIOR!r}]
        model = {dict(SMALL_MODEL, **SMALL_PROJECTOR)!r}
        train_dataloader = dict(dataset=dict(
            data_root={DATA!r}, test_mode=True, indices=16))
        '''))
    import mixedae  # noqa: F401
    model = MODELS.build(Config.fromfile(str(cfg_file)).model)
    ckpt = tmp_path / 'ckpt.pth'
    torch.save({'state_dict': model.state_dict()}, ckpt)
    script = osp.join(ROOT, 'tools/visualization/vis_mixing.py')

    out = tmp_path / 'out'
    proc = subprocess.run([
        sys.executable, script,
        str(cfg_file),
        str(ckpt), '--out-dir',
        str(out), '--num-images', '8', '--queries', '0', '27', '63',
        '--per-head', '--zoom', '2'
    ], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # both precisions of the 2 layers: as trained (with the homologous
    # bias) and from content alone
    for what in ('as trained: l0 ', 'content only: l0 ',
                 'content only, foreground queries (brightest pixel > 0.5):'
                 ' l0 '):
        assert what in proc.stdout, proc.stdout
    recon = sorted(glob.glob(str(out / 'reconstruction' / '*.png')))
    assert [osp.basename(f) for f in recon] == ['group_0.png', 'group_1.png']
    cell = 32 * 2 + 4
    for folder in ('attention', 'attention_content'):  # the cue removed
        attn = sorted(glob.glob(str(out / folder / '*.png')))
        assert [osp.basename(f) for f in attn] == [
            'group_0_view_0.png', 'group_1_view_0.png'
        ]
        # 2 layers x 2 heads, answer key + 3 queries
        check_labelled(mmcv.imread(attn[0], channel_order='rgb'), 4, 4,
                       cell, 4)

    # a clear error, in process (no second interpreter start-up)
    spec = importlib.util.spec_from_file_location('vis_mixing', script)
    vis_mixing = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(vis_mixing)
    monkeypatch.setattr(sys, 'argv', [
        script, str(cfg_file), str(ckpt), '--out-dir', str(out),
        '--num-images', '6'
    ])
    with pytest.raises(ValueError, match='--num-images 6 must be a multiple '
                       'of the group size G=4'):
        vis_mixing.main()
