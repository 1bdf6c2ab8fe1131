"""tools/analysis_tools/eval_knn_linear.py on real Fashion-MNIST subsets,
with the repository's Fashion-MNIST benchmark config narrowed to the small
encoder of an untrained-but-initialised MixedAE pre-training checkpoint
(conftest's SMALL_MODEL): the tool's features and k-NN against ones
computed here with mmpretrain's own ViT outputs, the feature cache, two
gloo processes under torchrun against one, and the errors."""
import copy
import glob
import json
import os
import os.path as osp
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope

from conftest import (DATA, DEMO, ROOT, SMALL_MODEL, load_script,
                      require_fashion_mnist)
from mixedae.evaluation import knn_classify, top1
from mixedae.evaluation.features import first_occurrence
from mixedae.utils.checkpoint import convert_to_vit, load_checkpoint_safely
from test_distributed import free_port

tool = load_script('tools/analysis_tools/eval_knn_linear.py')

FMNIST = osp.join(
    ROOT, 'configs/benchmarks/mmpretrain/'
    'vit-tiny-p4_mixedae-pre_1xb128-coslr-2e_fashion-mnist-32px.py')
ARCH = SMALL_MODEL['backbone']['arch']
SHRINK = [f'model.backbone.arch.{k}={v}' for k, v in ARCH.items()]


def pretrain_checkpoint(path, seed):
    """An initialised, untrained MixedAE pre-training checkpoint: the demo
    config with the small encoder, as a runner saves its state dict."""
    from mmpretrain.registry import MODELS
    cfg = Config.fromfile(DEMO)
    cfg.merge_from_dict(dict(model=copy.deepcopy(SMALL_MODEL)))
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        torch.manual_seed(seed)
        model = MODELS.build(cfg.model)
        model.init_weights()
    torch.save({'state_dict': model.state_dict()}, path)
    return str(path)


@pytest.fixture(scope='module')
def ckpt(tmp_path_factory):
    require_fashion_mnist()
    return pretrain_checkpoint(
        tmp_path_factory.mktemp('ckpt') / 'pretrain.pth', seed=0)


def args(ckpt, num_train, num_val, *extra, config=FMNIST, options=()):
    return [
        config, ckpt, '--num-workers', '0', '--no-progress', *extra,
        '--cfg-options', *SHRINK, *options,
        f'train_dataloader.dataset.indices={num_train}',
        f'val_dataloader.dataset.indices={num_val}',
        f'train_dataloader.dataset.data_root={DATA}',
        f'val_dataloader.dataset.data_root={DATA}'
    ]


def cached(cache_dir, split):
    files = glob.glob(osp.join(cache_dir, f'{split}-*.pth'))
    assert len(files) == 1, files
    entry = torch.load(files[0])
    return entry['feats'], entry['labels']


def direct_features(ckpt, split, num, out_type):
    """Features without the tool: the split through the config's resize,
    normalised here with its mean / std, into mmpretrain's ViT with the
    converted checkpoint and its own ``cls_token`` / ``featmap`` output."""
    from mmpretrain.datasets import FashionMNIST
    from mmpretrain.models import VisionTransformer
    cfg = Config.fromfile(FMNIST)
    test = split == 'val'
    dataset = FashionMNIST(
        data_root=DATA, split='test' if test else 'train', test_mode=test,
        indices=num, pipeline=cfg.test_pipeline[:1])  # Resize only
    images = np.stack([dataset[i]['img'] for i in range(num)])
    x = (torch.from_numpy(images)[:, None].float() - 72.94) / 90.02
    labels = torch.tensor([int(dataset[i]['gt_label']) for i in range(num)])
    vit = VisionTransformer(arch=ARCH, img_size=32, patch_size=4,
                            in_channels=1, out_type=out_type,
                            final_norm=True)
    vit.load_state_dict(convert_to_vit(load_checkpoint_safely(ckpt)))
    vit.eval()
    with torch.no_grad():
        out = vit(x)[-1]
    if out_type == 'featmap':  # (B, C, H, W) patch tokens after the norm
        out = out.mean(dim=(2, 3))
    return out, labels


@pytest.mark.parametrize('feature,out_type', [('cls', 'cls_token'),
                                              ('avg', 'featmap')])
def test_features_and_knn_match_a_direct_computation(ckpt, tmp_path, feature,
                                                     out_type):
    cache = str(tmp_path / 'cache')
    res = tool.main(args(ckpt, 600, 200, '--feature', feature, '--k', '20',
                         '--cache-dir', cache, '--out',
                         str(tmp_path / 'r.json')))
    (xtr, ytr), (xte, yte) = (direct_features(ckpt, s, n, out_type)
                              for s, n in (('train', 600), ('val', 200)))
    for split, (x, y) in (('train', (xtr, ytr)), ('val', (xte, yte))):
        feats, labels = cached(cache, split)
        assert feats.shape == x.shape == (len(y), ARCH['embed_dims'])
        torch.testing.assert_close(feats, x, rtol=0, atol=1e-4)
        assert torch.equal(labels, y)
    expected = top1(knn_classify(xtr, ytr, xte, k=20, temperature=0.07), yte)
    assert res['knn_top1'] == pytest.approx(expected)
    # an untrained encoder already sorts Fashion-MNIST far above the 10%
    # of chance (here k-NN 55.0 / 53.5%, linear 54.0 / 56.0% with cls /
    # avg; a constant guess scores the largest class's share, 13.5%)
    assert res['knn_top1'] > 40
    assert res['linear_top1'] > 40
    assert json.load(open(tmp_path / 'r.json')) == json.loads(
        json.dumps(res))
    assert (res['num_train'], res['num_val']) == (600, 200)


def test_cache_is_reused_and_follows_the_checkpoint_content(ckpt, tmp_path):
    cache = str(tmp_path / 'cache')
    backbone_calls = []
    hook = torch.nn.modules.module.register_module_forward_hook(
        lambda m, i, o: backbone_calls.append(1)
        if type(m).__name__ == 'VisionTransformer' else None)
    try:
        first = tool.main(args(ckpt, 300, 100, '--k', '10', '--probes', 'knn',
                               '--cache-dir', cache))
        assert backbone_calls and {
            v['source'] for v in first['features'].values()} == {'extracted'}
        files = {f: os.stat(f).st_mtime_ns
                 for f in glob.glob(osp.join(cache, '*.pth'))}
        assert len(files) == 2

        # another k: no forward pass, the files untouched
        backbone_calls.clear()
        again = tool.main(args(ckpt, 300, 100, '--k', '3', '--probes', 'knn',
                               '--cache-dir', cache))
        assert not backbone_calls
        assert {v['source'] for v in again['features'].values()} == {'cache'}
        assert {f: os.stat(f).st_mtime_ns
                for f in glob.glob(osp.join(cache, '*.pth'))} == files
        (xtr, ytr), (xte, yte) = cached(cache, 'train'), cached(cache, 'val')
        assert again['knn_top1'] == pytest.approx(
            top1(knn_classify(xtr, ytr, xte, k=3), yte))
        assert again['knn_top1'] != first['knn_top1']  # k=3 is another vote

        # keyed by content: a copy elsewhere hits, another val subset
        # extracts only the val split
        copy_ = str(tmp_path / 'copy.pth')
        shutil.copy(ckpt, copy_)
        hit = tool.main(args(copy_, 300, 100, '--probes', 'knn',
                             '--cache-dir', cache))
        assert {v['source'] for v in hit['features'].values()} == {'cache'}
        part = tool.main(args(copy_, 300, 120, '--probes', 'knn',
                              '--cache-dir', cache))
        assert part['features']['train']['source'] == 'cache'
        assert part['features']['val']['source'] == 'extracted'

        # other weights at the same path: extracted again, new files
        pretrain_checkpoint(copy_, seed=1)
        backbone_calls.clear()
        other = tool.main(args(copy_, 300, 100, '--probes', 'knn',
                               '--cache-dir', cache))
        assert backbone_calls
        assert {v['source'] for v in other['features'].values()} == {
            'extracted'}
        new = {other['features'][s]['cache_file'] for s in ('train', 'val')}
        assert not new & set(files) and all(osp.isfile(f) for f in new)
        assert not torch.equal(torch.load(sorted(new)[0])['feats'],
                               torch.load(sorted(files)[0])['feats'])
    finally:
        hook.remove()


def test_two_gloo_processes_give_the_one_process_features(ckpt, tmp_path):
    """75 train and 51 val images on 2 ranks: DefaultSampler pads each
    split by one repeated image; the gathered features must be the one
    process's, in dataset order, without the repeat."""
    common = args(ckpt, 75, 51, '--batch-size', '8', '--k', '5',
                  '--linear-epochs', '20')
    common.remove('--no-progress')
    env = dict(os.environ, OMP_NUM_THREADS='1', MASTER_ADDR='127.0.0.1')
    env['PYTHONPATH'] = os.pathsep.join([ROOT, env.get('PYTHONPATH', '')])
    proc = subprocess.run(
        [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node',
         '2', f'--master_port={free_port()}',
         'tools/analysis_tools/eval_knn_linear.py', *common, '--launcher',
         'pytorch', '--cache-dir', str(tmp_path / 'two'), '--out',
         str(tmp_path / 'two.json')],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.count('Frozen evaluation of') == 1  # rank 0 only
    assert '5/5' in proc.stdout  # the progress bar: 38 images / 8 per rank
    two = json.load(open(tmp_path / 'two.json'))

    one = tool.main(common + ['--cache-dir', str(tmp_path / 'one')])
    for split, num in (('train', 75), ('val', 51)):
        f1, y1 = cached(str(tmp_path / 'one'), split)
        f2, y2 = cached(str(tmp_path / 'two'), split)
        assert f1.shape == f2.shape == (num, ARCH['embed_dims'])
        torch.testing.assert_close(f2, f1, rtol=0, atol=1e-5)
        assert torch.equal(y2, y1)
    assert two['knn_top1'] == pytest.approx(one['knn_top1'])
    assert two['linear_top1'] == pytest.approx(one['linear_top1'],
                                               abs=100 / 51 + 1e-6)


IN1K_LINEAR = osp.join(
    ROOT, 'configs/benchmarks/mmpretrain/'
    'vit-base-p16_mixedae-pre_8xb2048-linear-coslr-90e_in1k.py')


def test_imagenet_linear_config_on_a_stand_in(tmp_path):
    """The documented ImageNet command's config (its ImageNet dataset,
    val pipeline from JPEG files, data preprocessor) on a stand-in in
    mmpretrain's layout (``meta/{split}.txt``), the encoder narrowed; the
    checkpoint in the official MAE / timm layout."""
    import cv2
    from mmpretrain.models import VisionTransformer
    from mixedae.utils.checkpoint import vit_to_timm
    rng = np.random.RandomState(0)
    root = tmp_path / 'imagenet'
    (root / 'meta').mkdir(parents=True)
    labels = {}
    for split, num in (('train', 12), ('val', 5)):
        lines = []
        for i in range(num):
            label = i % 3
            name = f'n{label}/{split}_{i}.JPEG'
            (root / split / f'n{label}').mkdir(parents=True, exist_ok=True)
            # 3 colour classes, the sizes vary (ResizeEdge + CenterCrop)
            img = rng.randint(0, 60, (240 + 20 * i, 300, 3), dtype=np.uint8)
            img[..., label] += 150
            cv2.imwrite(str(root / split / name), img)
            lines.append(f'{name} {label}')
        (root / 'meta' / f'{split}.txt').write_text('\n'.join(lines))
        labels[split] = torch.tensor([i % 3 for i in range(num)])
    cfg = tmp_path / 'in1k_small.py'
    cfg.write_text(f"""_base_ = [{IN1K_LINEAR!r}]
model = dict(backbone=dict(arch=dict(_delete_=True, embed_dims=32,
                                     num_layers=1, num_heads=2,
                                     feedforward_channels=64)))
""")
    torch.manual_seed(0)
    vit = VisionTransformer(
        arch=dict(embed_dims=32, num_layers=1, num_heads=2,
                  feedforward_channels=64), img_size=224, patch_size=16)
    ckpt = str(tmp_path / 'mae_timm.pth')
    torch.save({'model': vit_to_timm(vit.state_dict())}, ckpt)
    cache = str(tmp_path / 'cache')
    res = tool.main([
        str(cfg), ckpt, '--k', '3', '--num-workers', '0', '--no-progress',
        '--linear-epochs', '50', '--cache-dir', cache, '--cfg-options',
        f'train_dataloader.dataset.data_root={root}',
        f'val_dataloader.dataset.data_root={root}'
    ])
    assert (res['num_train'], res['num_val'], res['feature_dim']) == (12, 5,
                                                                     32)
    for split in ('train', 'val'):
        feats, got = cached(cache, split)
        assert torch.equal(got, labels[split])  # in meta-file order
        assert torch.isfinite(feats).all()
    # the colour is what the classes differ in: the probes find it
    assert res['knn_top1'] == 100 and res['linear_top1'] == 100


def test_first_occurrence():
    index = torch.tensor([4, 0, 2, 0, 4, 1, 2, 3, 0])
    seen, expected = set(), []
    for i in index.tolist():
        expected.append(i not in seen)
        seen.add(i)
    assert first_occurrence(index).tolist() == expected


def _error(capsys, argv):
    with pytest.raises(SystemExit) as exc:
        tool.main(argv)
    assert exc.value.code == 2
    return capsys.readouterr().err


def test_clear_errors(ckpt, tmp_path, capsys):
    assert "CHECKPOINT 'nope.pth' is not a file" in _error(
        capsys, args('nope.pth', 10, 10))
    assert "CONFIG 'nope.py' is not a file" in _error(
        capsys, args(ckpt, 10, 10, config='nope.py'))
    # a pre-training config: no val split
    err = _error(capsys, [DEMO, ckpt])
    assert f'CONFIG {DEMO} has no val_dataloader' in err
    # the checkpoint does not fit the config
    err = _error(capsys, args(ckpt, 10, 10,
                              options=['model.backbone.arch.num_layers=3']))
    assert f'CHECKPOINT {ckpt}: does not fit' in err
    assert 'missing encoder keys: layers.2.' in err
    err = _error(capsys, [FMNIST, ckpt])  # the 192-wide encoder
    assert 'shape mismatches (checkpoint vs model): cls_token (1, 1, 64) ' \
        'vs (1, 1, 192)' in err
    text = tmp_path / 'notes.pth'
    text.write_text('not a checkpoint')
    assert f'CHECKPOINT {text}: not a PyTorch checkpoint' in _error(
        capsys, args(str(text), 10, 10))
    odd = tmp_path / 'odd.pth'
    torch.save({'state_dict': {'encoder.w': torch.zeros(1)}}, odd)
    assert 'not a MixedAE/MAE pre-training checkpoint' in _error(
        capsys, args(str(odd), 10, 10))
    assert '--k must be >= 1' in _error(capsys, args(ckpt, 10, 10, '--k', '0'))
    assert '--k 20 is more than the 10 train images' in _error(
        capsys, args(ckpt, 10, 10))
