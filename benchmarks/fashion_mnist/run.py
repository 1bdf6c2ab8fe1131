"""MAE vs naive mixing vs MixedAE on Fashion-MNIST, on the CPU, in one command.

For every seed, pre-trains the tiny 1-channel ViT of the demo configs (192-dim,
6 layers, patch 4, 32 px) with each method for the same number of epochs on
Fashion-MNIST train (labels unused), with mmengine's Runner and the repo's
configs; converts each checkpoint to a plain mmpretrain ``VisionTransformer``
(``convert_to_vit``) and evaluates it three ways, with a random-init encoder
(the same conversion of an untrained, initialised MAE model) as the floor:

* k-NN on frozen features (k = 20, cosine similarity, DINO's temperature-
  weighted vote, T = 0.07): train features are the bank, test accuracy;
* linear probe on frozen features: standardised with the train statistics
  (BatchNorm without affine, as MAE's probe), a linear layer trained with
  AdamW and cross-entropy, test accuracy;
* a brief end-to-end fine-tune: mmpretrain ``ImageClassifier``
  (the same ``VisionTransformer`` + ``LinearClsHead``) trained and tested
  with the Runner, AdamW with layer-wise lr decay, warm-up then cosine.

Frozen features: ``VisionTransformer(out_type='avg_featmap',
final_norm=True)``, the mean of the final-normed patch tokens, then
mmpretrain's fresh ``ln2`` (a LayerNorm with identity affine at init). We use
the patch average rather than the cls token: neither objective trains the cls
token directly, and MixedAE's encoder sees it only next to mixed patches.
Images are resized 28 -> 32 px (bicubic, as the pre-training crop) and
normalised as in the configs. Evaluation subsets are the first n images of
each split, the same for every method and seed.

Writes ``results.json`` (every run, the summary and the settings) and
``results.md`` (mean ± sample std over seeds) under ``--out-dir``, updated
after every run, and prints the table.

    .venv/bin/python benchmarks/fashion_mnist/run.py          # ~100 min
    .venv/bin/python benchmarks/fashion_mnist/run.py --quick  # ~10 min
    .venv/bin/python benchmarks/fashion_mnist/run.py --quick --seeds 0 1 2
"""
import argparse
import copy
import json
import math
import os
import os.path as osp
import platform
import statistics
import time
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
MAE_CFG = 'configs/mae/mae_vit-tiny-p4_1xb128-coslr-3e_fashion-mnist-32px.py'
MIXEDAE_CFG = ('configs/mixedae/'
               'mixedae_vit-tiny-p4_1xb128-coslr-3e_fashion-mnist-32px.py')


def _mixedae(segment_embed='tokens', homo_layers='all', homocon=True,
             segment_embed_std=0.02, homo_bias=None,
             **homocon_keys) -> dict:
    """Overrides of the MixedAE demo config that spell out every switch the
    study varies, so a variant does not depend on the config's defaults."""
    loss = dict(type='HomologousContrastiveLoss', temperature=0.25,
                loss_weight=0.1, negatives='image', projector=None)
    loss.update(homocon_keys.pop('loss', {}))
    out = {
        'model.backbone.segment_embed': segment_embed,
        'model.backbone.homo_layers': homo_layers,
        'model.backbone.homo_bias': homo_bias,
        'model.backbone.homocon_layer': homocon_keys.pop('layer', -1),
        'model.head.homocon_loss': loss if homocon else None,
    }
    assert not homocon_keys, homocon_keys
    # added after the first cached runs: only when not the default (the
    # config's), so that those runs' cache keys stay valid
    if segment_embed_std != 0.02:
        out['model.backbone.segment_embed_std'] = segment_embed_std
    return out


# a 2-layer MLP between the encoder and HomoCon (SimCLR's projection head)
PROJECTOR = dict(in_channels=192, hid_channels=512, out_channels=128)

# method -> (pre-training config, config overrides)
METHODS = {
    'MAE': (MAE_CFG, {}),
    'naive mixing': (MIXEDAE_CFG, _mixedae(homo_layers=[], homocon=False)),
    # the default recipe (docs/homologous_recognition.md): no segment
    # embedding, a non-negative homologous bias in every HomoAtt layer,
    # HomoCon on a projector
    'MixedAE': (MIXEDAE_CFG, _mixedae(segment_embed=None, homo_bias=1.0,
                                      loss=dict(projector=PROJECTOR))),
    'MixedAE w/o HomoCon': (MIXEDAE_CFG, _mixedae(
        segment_embed=None, homo_bias=1.0, homocon=False)),
    # our first reading of the paper: segment embedding on the tokens,
    # HomoCon on the final features against the other sources of the image
    'MixedAE (paper reading)': (MIXEDAE_CFG, _mixedae()),
}
# Diagnosis variants (docs/homologous_recognition.md): each changes one or
# two things of 'MixedAE (paper reading)' (those up to 'segment embedding
# in attention, init std 1') or of 'MixedAE'; pre-trained and probed like
# the methods.
VARIANTS = {
    'paper reading w/o HomoCon': _mixedae(homocon=False),
    'no segment embedding': _mixedae(segment_embed=None),
    'no segment embedding, no HomoCon': _mixedae(segment_embed=None,
                                                 homocon=False),
    'HomoAtt in layers 0-4': _mixedae(homo_layers=[0, 1, 2, 3, 4]),
    'HomoAtt in layers 0-2': _mixedae(homo_layers=[0, 1, 2]),
    'HomoCon lambda 0.03': _mixedae(loss=dict(loss_weight=0.03)),
    'HomoCon lambda 0.3': _mixedae(loss=dict(loss_weight=0.3)),
    'HomoCon tau 0.1': _mixedae(loss=dict(temperature=0.1)),
    'HomoCon tau 1.0': _mixedae(loss=dict(temperature=1.0)),
    'HomoCon before the last block': _mixedae(layer=4),
    'HomoCon on a projector': _mixedae(loss=dict(projector=PROJECTOR)),
    'HomoCon with batch negatives': _mixedae(loss=dict(negatives='batch')),
    'segment embedding in attention': _mixedae(segment_embed='attention'),
    'segment embedding in attention, no HomoCon': _mixedae(
        segment_embed='attention', homocon=False),
    'segment embedding in attention, batch negatives': _mixedae(
        segment_embed='attention', loss=dict(negatives='batch')),
    'segment embedding in attention, init std 1': _mixedae(
        segment_embed='attention', segment_embed_std=1.0),
    # 'MixedAE' without the projector, with batch negatives, ...
    'homologous bias': _mixedae(segment_embed=None, homo_bias=1.0),
    'homologous bias, batch negatives': _mixedae(
        segment_embed=None, homo_bias=1.0, loss=dict(negatives='batch')),
    'homologous bias 0.5, projector': _mixedae(
        segment_embed=None, homo_bias=0.5, loss=dict(projector=PROJECTOR)),
    'homologous bias, projector, batch negatives': _mixedae(
        segment_embed=None, homo_bias=1.0,
        loss=dict(projector=PROJECTOR, negatives='batch')),
    'MixedAE, HomoCon lambda 0.03': _mixedae(
        segment_embed=None, homo_bias=1.0,
        loss=dict(projector=PROJECTOR, loss_weight=0.03)),
}
METHODS.update((name, (MIXEDAE_CFG, keys)) for name, keys in VARIANTS.items())
# What one part of the recipe adds: (method, the method it builds on, the
# part); the report pairs them by seed when both ran.
COMPONENTS = (
    ('MixedAE w/o HomoCon', 'naive mixing', 'homologous attention (bias)'),
    ('MixedAE', 'MixedAE w/o HomoCon', 'HomoCon (on a projector)'),
    ('MixedAE', 'MixedAE (paper reading)', 'the default over the paper '
     'reading'),
)
FLOOR = 'random init'
METRICS = ('knn_top1', 'linear_top1', 'finetune_top1')

# Fashion-MNIST train statistics (0-255), as in the pre-training configs.
MEAN, STD = 72.94, 90.02
NUM_CLASSES = 10
IMG_SIZE = 32

# Budgets, sized from the --quick run on a (lightly shared) 2-core machine:
# a pre-training iteration of 128 images ~0.38 s (MixedAE and MAE alike),
# an evaluation of 2k + 1k frozen images with a 30-iteration fine-tune ~25 s.
PRESETS = {
    # The study (docs/homologous_recognition.md): the demo's schedule, 3
    # epochs of the 60k images with the first one warm-up, 3 seeds; each
    # (method, seed) is cached, so it completes across several sittings.
    'study': dict(
        seeds=[0, 1, 2], pretrain_images=None, epochs=3, batch_size=128,
        warmup_fraction=1 / 3, eval_train_images=10000,
        eval_test_images=10000, finetune_iters=200, finetune_batch_size=64,
        linear_epochs=100),
    # 12 pre-trainings of one 60k epoch (468 iterations, 3.4-3.9 min each)
    # + 15 evaluations on the whole test set with 200 fine-tuning iterations
    # (~3.3 min each): 99 min measured on 2 idle cores.
    'full': dict(
        seeds=[0, 1, 2], pretrain_images=None, epochs=1, batch_size=128,
        warmup_fraction=0.1, eval_train_images=10000, eval_test_images=10000,
        finetune_iters=200, finetune_batch_size=64, linear_epochs=100),
    # 1 seed: 4 pre-trainings of 200 iterations (~80 s each) + 5 short
    # evaluations (~25 s each): ~8 min measured.
    'quick': dict(
        seeds=[0], pretrain_images=12800, epochs=2, batch_size=128,
        warmup_fraction=0.1, eval_train_images=2000, eval_test_images=1000,
        finetune_iters=30, finetune_batch_size=64, linear_epochs=100),
    # for the tests: seconds
    'smoke': dict(
        seeds=[0], pretrain_images=128, epochs=1, batch_size=32,
        warmup_fraction=0.1, eval_train_images=200, eval_test_images=100,
        finetune_iters=3, finetune_batch_size=16, linear_epochs=5,
        finetune_images=256),
}

ENCODER = dict(
    type='VisionTransformer',
    arch=dict(
        embed_dims=192, num_layers=6, num_heads=3, feedforward_channels=768),
    img_size=IMG_SIZE,
    patch_size=4,
    patch_cfg=dict(in_channels=1),
    out_type='avg_featmap',
    final_norm=True)
# keys a converted pre-training checkpoint cannot hold: the fresh norm after
# the patch average (LayerNorm with weight 1, bias 0 at init)
FRESH_KEYS = {'ln2.weight', 'ln2.bias'}


# ----------------------------------------------------------------- evaluation
def knn_classify(train_feats: torch.Tensor,
                 train_labels: torch.Tensor,
                 test_feats: torch.Tensor,
                 k: int = 20,
                 temperature: float = 0.07,
                 num_classes: int = NUM_CLASSES,
                 chunk_size: int = 1024) -> torch.Tensor:
    """Weighted k-NN on cosine similarity (DINO's evaluation).

    Each test sample takes its k most similar train samples; each votes for
    its label with weight ``exp(similarity / temperature)``.

    Returns:
        Tensor: (M,) predicted labels of the M test samples.
    """
    if not 1 <= k <= len(train_feats):
        raise ValueError(f'k={k} must be in [1, {len(train_feats)}] (the '
                         'number of train samples).')
    train = F.normalize(train_feats.float(), dim=1)
    test = F.normalize(test_feats.float(), dim=1)
    preds = []
    for start in range(0, len(test), chunk_size):  # bounds the (m, N) matrix
        sim = test[start:start + chunk_size] @ train.T  # (m, N)
        top_sim, top_idx = sim.topk(k, dim=1)  # (m, k)
        votes = torch.zeros(len(sim), num_classes)
        votes.scatter_add_(1, train_labels[top_idx],
                           (top_sim / temperature).exp())
        preds.append(votes.argmax(dim=1))
    return torch.cat(preds)


def linear_probe(train_feats: torch.Tensor,
                 train_labels: torch.Tensor,
                 test_feats: torch.Tensor,
                 epochs: int = 100,
                 batch_size: int = 256,
                 lr: float = 1e-3,
                 weight_decay: float = 1e-4,
                 seed: int = 0,
                 num_classes: int = NUM_CLASSES) -> torch.Tensor:
    """Logistic regression on frozen features, standardised by the train
    mean and std (a BatchNorm without affine); AdamW, cosine lr.

    Returns:
        Tensor: (M,) predicted labels of the test samples.
    """
    mean = train_feats.mean(dim=0)
    std = train_feats.std(dim=0) + 1e-6
    x = (train_feats - mean) / std
    gen = torch.Generator().manual_seed(seed)
    head = torch.nn.Linear(x.shape[1], num_classes)
    with torch.no_grad():
        head.weight.normal_(0, 0.01, generator=gen)
        head.bias.zero_()
    opt = torch.optim.AdamW(head.parameters(), lr=lr,
                            weight_decay=weight_decay)
    steps = epochs * math.ceil(len(x) / batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=gen).split(batch_size):
            loss = F.cross_entropy(head(x[idx]), train_labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    with torch.no_grad():
        return head((test_feats - mean) / std).argmax(dim=1)


def top1(preds: torch.Tensor, labels: torch.Tensor) -> float:
    return 100. * (preds == labels).float().mean().item()


def load_split(data_root: str, test: bool, num: Optional[int]):
    """(images (n, 1, 32, 32) float normalised, labels (n,)) of a split,
    read with mmpretrain's ``FashionMNIST``; the first ``num`` images."""
    from mmpretrain.datasets import FashionMNIST
    ds = FashionMNIST(
        data_root=data_root, split='test' if test else 'train',
        test_mode=test, download=False, pipeline=[],
        indices=num, serialize_data=False)
    imgs = torch.from_numpy(
        np.stack([ds.get_data_info(i)['img'] for i in range(len(ds))]))
    labels = torch.tensor(
        [int(ds.get_data_info(i)['gt_label']) for i in range(len(ds))])
    x = imgs[:, None].float()  # (n, 1, 28, 28)
    # bicubic, a = -0.75 like cv2's, rounded to uint8 as the pipeline's crop
    x = F.interpolate(x, size=IMG_SIZE, mode='bicubic', align_corners=False)
    x = x.clamp(0, 255).round()
    return (x - MEAN) / STD, labels


def build_encoder(vit_state: dict) -> torch.nn.Module:
    """The frozen ``VisionTransformer`` with a converted checkpoint."""
    from mmpretrain.registry import MODELS
    encoder = MODELS.build(copy.deepcopy(ENCODER))
    missing, unexpected = encoder.load_state_dict(vit_state, strict=False)
    if set(missing) - FRESH_KEYS or unexpected:
        raise RuntimeError(
            'The converted checkpoint does not fit the evaluation encoder: '
            f'missing {sorted(set(missing) - FRESH_KEYS)}, unexpected '
            f'{sorted(unexpected)}.')
    encoder.eval()  # VisionTransformer.train() returns None
    return encoder


@torch.no_grad()
def extract(encoder: torch.nn.Module, x: torch.Tensor,
            batch_size: int = 512) -> torch.Tensor:
    """(n, D) frozen features."""
    return torch.cat(
        [encoder(b)[0] for b in x.split(batch_size)])  # avg_featmap


# --------------------------------------------------------------- pre-training
def _runner(cfg, quiet: bool):
    from mmengine.runner import Runner
    if quiet:
        cfg.log_level = 'WARNING'
    return Runner.from_cfg(cfg)


def _train_timer():
    """A hook timing the training loop alone (from ``before_train``, after
    the data, model and optimiser are built, to ``after_train``)."""
    from mmengine.hooks import Hook

    class TrainTimer(Hook):
        seconds = None

        def before_train(self, runner):
            self._start = time.perf_counter()

        def after_train(self, runner):
            self.seconds = time.perf_counter() - self._start

    return TrainTimer()


def pretrain(method: str, seed: int, budget: dict, work_dir: str,
             data_root: str, quiet: bool = True) -> dict:
    """Pre-train ``method`` with the Runner; returns the ViT state dict,
    the wall time and the iterations."""
    from mmengine.config import Config

    from mixedae.utils.checkpoint import convert_to_vit, load_checkpoint_safely
    path, overrides = METHODS[method]
    cfg = Config.fromfile(osp.join(ROOT, path))
    cfg.merge_from_dict(copy.deepcopy(overrides))
    bs, epochs = budget['batch_size'], budget['epochs']
    num = budget['pretrain_images']
    cfg.work_dir = work_dir
    cfg.experiment_name = f'pretrain_{_slug(method)}_seed{seed}'
    loader = cfg.train_dataloader
    loader.dataset.data_root = data_root
    loader.dataset.indices = num
    loader.batch_size = bs
    loader.num_workers = 0  # 2 cores: workers would compete with compute
    loader.persistent_workers = False
    cfg.train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=epochs)
    iters = epochs * ((num or 60000) // bs)
    if iters < 1:
        raise ValueError(f'{num} pre-training images make no batch of {bs}.')
    # the same schedule for every method: linear warm-up over the first
    # `warmup_fraction` of the iterations (the demo config: 1 of 3 epochs),
    # then cosine to 0
    warm = max(1, round(budget.get('warmup_fraction', 0.1) * iters))
    cfg.param_scheduler = [
        dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0,
             end=warm),
        dict(type='CosineAnnealingLR', by_epoch=False, begin=warm,
             end=max(iters, warm + 1), eta_min=0.)
    ]
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=20)
    cfg.default_hooks.checkpoint = dict(
        type='CheckpointHook', interval=epochs, max_keep_ckpts=1)
    # no pictures in a benchmark; MixedAE's logging hook stays
    cfg.custom_hooks = [h for h in cfg.get('custom_hooks', [])
                        if h['type'] == 'MixedAEHook']
    cfg.randomness = dict(seed=seed, diff_rank_seed=True)
    start = time.perf_counter()
    runner = _runner(cfg, quiet)
    timer = _train_timer()
    runner.register_hook(timer, priority='VERY_LOW')
    runner.train()
    wall = time.perf_counter() - start
    ckpt = load_checkpoint_safely(osp.join(work_dir, f'epoch_{epochs}.pth'))
    scalars = osp.join(runner.log_dir, 'vis_data', 'scalars.json')
    return dict(vit=convert_to_vit(ckpt), seconds=timer.seconds,
                wall_seconds=wall, iters=iters,
                final_loss=_last_scalar(runner.log_dir, 'loss'),
                final_scalars=last_scalars(scalars), scalars=scalars)


def random_init(seed: int) -> dict:
    """The floor: an initialised, untrained MAE model of the same config,
    converted like a checkpoint (MAE's sin-cos position embedding and init)."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS

    from mixedae.utils.checkpoint import convert_to_vit
    init_default_scope('mmpretrain')
    cfg = Config.fromfile(osp.join(ROOT, MAE_CFG))
    torch.manual_seed(seed)
    model = MODELS.build(cfg.model)
    model.init_weights()
    return convert_to_vit(dict(state_dict=model.state_dict()))


def _last_scalar(log_dir: str, key: str) -> Optional[float]:
    path = osp.join(log_dir, 'vis_data', 'scalars.json')
    if not osp.exists(path):
        return None
    values = [r[key] for r in map(json.loads, open(path)) if key in r]
    return values[-1] if values else None


def last_scalars(path: str) -> dict:
    """The last logged value of every training scalar of a run (losses,
    per-layer homologous precision, ...)."""
    out = {}
    if osp.exists(path):
        for record in map(json.loads, open(path)):
            out.update(record)
    for key in ('step', 'iter', 'epoch', 'lr', 'time', 'data_time', 'eta'):
        out.pop(key, None)
    return out


def _slug(name: str) -> str:
    return ''.join(c if c.isalnum() or c in '.-' else '-'
                   for c in name.lower().replace('/', ''))


# ----------------------------------------------------------------- fine-tune
def finetune(vit_state: dict, seed: int, budget: dict, work_dir: str,
             data_root: str, quiet: bool = True) -> float:
    """Briefly fine-tune an mmpretrain ``ImageClassifier`` end to end from
    ``vit_state`` with the Runner; returns its test top-1 (%)."""
    from mmengine.config import Config
    os.makedirs(work_dir, exist_ok=True)
    ckpt = osp.join(work_dir, 'vit_init.pth')
    torch.save(dict(state_dict=vit_state), ckpt)
    iters, bs = budget['finetune_iters'], budget['finetune_batch_size']
    cfg = Config.fromfile(osp.join(ROOT, 'configs/_base_/default_runtime.py'))
    backbone = dict(copy.deepcopy(ENCODER), drop_path_rate=0.1,
                    init_cfg=dict(type='Pretrained', checkpoint=ckpt))
    test_pipeline = [
        dict(type='Resize', scale=(IMG_SIZE, IMG_SIZE), backend='cv2',
             interpolation='bicubic'),
        dict(type='PackInputs')
    ]
    cfg.merge_from_dict(dict(
        work_dir=work_dir,
        experiment_name=f'finetune_seed{seed}',
        model=dict(
            type='ImageClassifier',
            data_preprocessor=dict(
                type='ClsDataPreprocessor', mean=[MEAN], std=[STD],
                to_rgb=False, num_classes=NUM_CLASSES),
            backbone=backbone,
            head=dict(
                type='LinearClsHead', num_classes=NUM_CLASSES,
                in_channels=ENCODER['arch']['embed_dims'],
                loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1,
                          mode='original'),
                init_cfg=dict(type='TruncNormal', layer='Linear',
                              std=2e-5))),
        train_dataloader=dict(
            batch_size=bs, num_workers=0, drop_last=True,
            sampler=dict(type='DefaultSampler', shuffle=True),
            collate_fn=dict(type='default_collate'),
            dataset=dict(
                type='FashionMNIST', data_root=data_root, test_mode=False,
                download=False, indices=budget.get('finetune_images'),
                pipeline=test_pipeline[:1] + [
                    dict(type='RandomFlip', prob=0.5),
                    dict(type='PackInputs')]
            )),
        test_dataloader=dict(
            batch_size=256, num_workers=0,
            sampler=dict(type='DefaultSampler', shuffle=False),
            collate_fn=dict(type='default_collate'),
            dataset=dict(
                type='FashionMNIST', data_root=data_root, split='test',
                test_mode=True,
                download=False, indices=budget['eval_test_images'],
                pipeline=test_pipeline)),
        test_evaluator=dict(type='Accuracy', topk=(1, )),
        test_cfg=dict(),
        # MAE's fine-tuning recipe, shortened: AdamW with layer-wise lr
        # decay, no decay on norms, biases and embeddings
        optim_wrapper=dict(
            optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.999),
                           weight_decay=0.05),
            constructor='LearningRateDecayOptimWrapperConstructor',
            paramwise_cfg=dict(
                layer_decay_rate=0.75,
                custom_keys={
                    '.ln': dict(decay_mult=0.0),
                    '.bias': dict(decay_mult=0.0),
                    '.cls_token': dict(decay_mult=0.0),
                    '.pos_embed': dict(decay_mult=0.0)
                })),
        param_scheduler=[
            dict(type='LinearLR', start_factor=0.01, by_epoch=False,
                 begin=0, end=max(1, iters // 10)),
            dict(type='CosineAnnealingLR', by_epoch=False,
                 begin=max(1, iters // 10), end=max(iters, 2), eta_min=0.)
        ],
        train_cfg=dict(type='IterBasedTrainLoop', max_iters=iters),
        randomness=dict(seed=seed, diff_rank_seed=True),
        env_cfg=dict(dist_cfg=dict(backend='gloo')),
    ))
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=50)
    cfg.default_hooks.checkpoint = None  # nothing to keep
    runner = _runner(cfg, quiet)
    runner.train()
    metrics = runner.test()
    return float(metrics['accuracy/top1'])


# -------------------------------------------------------------------- driver
def evaluate(vit_state: dict, seed: int, budget: dict, data: dict,
             work_dir: str, data_root: str, quiet: bool,
             metrics: Sequence[str] = METRICS) -> dict:
    """k-NN, linear probe and fine-tune top-1 (%) of one encoder (those of
    them in ``metrics``)."""
    start = time.perf_counter()
    res = {}
    if {'knn_top1', 'linear_top1'} & set(metrics):
        encoder = build_encoder(vit_state)
        (xtr, ytr), (xte, yte) = data['train'], data['test']
        ftr, fte = extract(encoder, xtr), extract(encoder, xte)
        if 'knn_top1' in metrics:
            res['knn_top1'] = top1(knn_classify(ftr, ytr, fte), yte)
        if 'linear_top1' in metrics:
            res['linear_top1'] = top1(
                linear_probe(ftr, ytr, fte, epochs=budget['linear_epochs'],
                             seed=seed), yte)
    frozen = time.perf_counter()
    res['frozen_eval_seconds'] = frozen - start
    if 'finetune_top1' in metrics:
        res['finetune_top1'] = finetune(vit_state, seed, budget, work_dir,
                                        data_root, quiet)
        res['finetune_seconds'] = time.perf_counter() - frozen
    res['eval_seconds'] = time.perf_counter() - start
    return res


def summarise(runs: List[dict], methods: Sequence[str],
              keys: Sequence[str]) -> Dict[str, dict]:
    """Per method: mean, sample std (None for one value) and n over seeds
    of each of ``keys`` that the runs hold."""
    out = {}
    for method in methods:
        rows = [r for r in runs if r['method'] == method]
        if not rows:
            continue
        out[method] = {}
        for key in keys:
            vals = [r[key] for r in rows if r.get(key) is not None]
            if not vals:
                continue
            out[method][key] = dict(
                mean=statistics.fmean(vals),
                std=statistics.stdev(vals) if len(vals) > 1 else None,
                n=len(vals))
    return out


def paired_differences(runs: List[dict], methods: Sequence[str],
                       keys: Sequence[str], baseline: str = 'MAE',
                       confidence: float = 0.95) -> Dict[str, dict]:
    """Per method and key: the mean over seeds of ``method - baseline`` on
    the same seed, with a Student-t confidence interval (None for one
    seed) and the seeds used. Seeds where either run lacks the key are
    left out."""
    from scipy import stats
    base = {r['seed']: r for r in runs if r['method'] == baseline}
    out = {}
    for method in methods:
        if method == baseline:
            continue
        for key in keys:
            pairs = [(r['seed'], r[key] - base[r['seed']][key])
                     for r in runs if r['method'] == method
                     and r.get(key) is not None and r['seed'] in base
                     and base[r['seed']].get(key) is not None]
            if not pairs:
                continue
            diffs = [d for _, d in pairs]
            mean, n = statistics.fmean(diffs), len(diffs)
            half = None
            if n > 1:
                half = stats.t.ppf((1 + confidence) / 2, n - 1) * \
                    statistics.stdev(diffs) / math.sqrt(n)
            out.setdefault(method, {})[key] = dict(
                mean=mean, ci=None if half is None else
                [mean - half, mean + half], n=n,
                seeds=[seed for seed, _ in pairs])
    return out


def component_differences(runs: List[dict], methods: Sequence[str],
                          keys: Sequence[str]) -> Dict[str, dict]:
    """Per part in ``COMPONENTS`` whose two methods are both in
    ``methods``: the paired differences (``paired_differences``) of the
    method against the one it builds on, with both names."""
    out = {}
    for method, base, part in COMPONENTS:
        if method in methods and base in methods:
            diff = paired_differences(runs, [method], keys, baseline=base)
            if diff:
                out[part] = dict(method=method, baseline=base,
                                 **diff[method])
    return out


def format_stat(stat: Optional[dict], fmt: str = '{:.1f}') -> str:
    """A table cell: 'mean ± std', 'mean' for one seed, '–' for none."""
    if stat is None:
        return '–'
    text = fmt.format(stat['mean'])
    if stat['std'] is not None:
        text += ' ± ' + fmt.format(stat['std'])
    return text


def format_diff(diff: Optional[dict]) -> str:
    """A table cell: '+1.2 [+0.3, +2.1]' (mean and CI), '–' for none."""
    if diff is None:
        return '–'
    text = f"{diff['mean']:+.1f}"
    if diff['ci'] is not None:
        text += ' [{:+.1f}, {:+.1f}]'.format(*diff['ci'])
    return text


def diff_cells(diff: Dict[str, dict], metrics: Sequence[str]) -> str:
    """'seeds | cell | cell ...' of one row of paired differences."""
    seeds = next(diff[m]['seeds'] for m in metrics if m in diff)
    return ' | '.join([' '.join(map(str, seeds))] +
                      [format_diff(diff.get(m)) for m in metrics])


def write_results(out_dir: str, table: str, **result) -> dict:
    """``results.json`` (``result``) and ``results.md`` (``table``)."""
    with open(osp.join(out_dir, 'results.json'), 'w') as f:
        json.dump(result, f, indent=2)
    with open(osp.join(out_dir, 'results.md'), 'w') as f:
        f.write(table)
    return result


def homocon_floor_of(method: str, batch_size: int) -> Optional[float]:
    """The weighted HomoCon floor of a MixedAE method's settings (None
    without HomoCon): 64 patches, 4 sources, as the demo config."""
    from mixedae.models.losses import homocon_floor
    loss = METHODS.get(method, (None, {}))[1].get('model.head.homocon_loss')
    if not loss:
        return None
    images = batch_size // 4 if loss['negatives'] == 'batch' else 1
    return loss['loss_weight'] * homocon_floor(64, 4, loss['temperature'],
                                               images)


def precision_cells(runs: List[dict], method: str,
                    num_layers: int) -> List[str]:
    """Each layer's final homologous precision: the mean over seeds, and
    the lowest seed's in brackets when there are several."""
    cells = []
    for i in range(num_layers):
        vals = [r['final_scalars'][f'homo_prec_l{i}'] for r in runs
                if r['method'] == method
                and f'homo_prec_l{i}' in r.get('final_scalars', {})]
        cell = f'{statistics.fmean(vals):.2f}' if vals else '–'
        if len(vals) > 1:
            cell += f' ({min(vals):.2f})'
        cells.append(cell)
    return cells


def markdown(summary: Dict[str, dict], settings: dict,
             diffs: Optional[Dict[str, dict]] = None,
             runs: Sequence[dict] = (),
             parts: Optional[Dict[str, dict]] = None) -> str:
    """The results tables: mean ± std over seeds; the paired differences
    against MAE, and those of each part of the recipe
    (``component_differences``), with their confidence intervals; the
    final homologous precision per layer."""
    seeds = settings['seeds']
    metrics = [m for m in METRICS if m in settings.get('metrics', METRICS)]
    names = dict(knn_top1='k-NN top-1 (%)', linear_top1='linear top-1 (%)',
                 finetune_top1='fine-tune top-1 (%)')
    lines = [
        '| method | seeds | pre-train time / run (s) | ' +
        ' | '.join(names[m] for m in metrics) + ' |',
        '|---|---|---:|' + '---:|' * len(metrics),
    ]
    for method, stats in summary.items():
        lines.append('| {} | {} | {} | {} |'.format(
            method, ' '.join(str(r['seed']) for r in runs
                             if r['method'] == method),
            format_stat(stats.get('pretrain_seconds'), '{:.0f}'),
            ' | '.join(format_stat(stats.get(k)) for k in metrics)))
    pre = settings['pretrain_images'] or 60000
    lines += [
        '',
        f"Fashion-MNIST, seeds {seeds} (mean ± sample std over the seeds "
        'cached so far). '
        f"Pre-training: {settings['epochs']} epoch(s) of {pre} train images "
        f"(no labels), batch {settings['batch_size']}. k-NN (k = 20, cosine, "
        'T = 0.07) and linear probe on frozen average-pooled features, '
        f"{settings['eval_train_images']} train / "
        f"{settings['eval_test_images']} test images. Fine-tune: "
        f"{settings['finetune_iters']} iterations of "
        f"{settings['finetune_batch_size']}, tested on "
        f"{settings['eval_test_images']} test images. Pre-train time: the "
        'training loop of one run (wall clock, this machine).',
    ]
    if diffs:
        conf = round(100 * settings.get('confidence', 0.95))
        lines += [
            '', f'Paired differences against MAE (same seed), mean '
            f'[{conf}% CI, Student t]:', '',
            '| method | seeds | ' + ' | '.join(
                'Δ ' + names[m].replace(' (%)', '') for m in metrics) + ' |',
            '|---|---|' + '---:|' * len(metrics)
        ]
        lines += [f'| {method} | {diff_cells(d, metrics)} |'
                  for method, d in diffs.items()]
    if parts:
        lines += [
            '', 'What each part adds: paired differences between a method '
            'and the one it builds on (same seed), mean [95% CI]:', '',
            '| part | method − baseline | seeds | ' + ' | '.join(
                'Δ ' + names[m].replace(' (%)', '') for m in metrics) + ' |',
            '|---|---|---|' + '---:|' * len(metrics)
        ]
        lines += [f"| {part} | {d['method']} − {d['baseline']} | "
                  f'{diff_cells(d, metrics)} |' for part, d in parts.items()]
    with_prec = [m for m in summary
                 if any('homo_prec_l0' in r.get('final_scalars', {})
                        for r in runs if r['method'] == m)]
    if with_prec:
        L = ENCODER['arch']['num_layers']
        lines += [
            '', 'Homologous precision per layer at the end of pre-training '
            '(mean over seeds, the lowest seed in brackets; chance 16/65 = '
            '0.25), and the final HomoCon '
            'loss next to its floor (features clustered by source as well '
            'as unit vectors can be):', '',
            '| method | ' + ' | '.join(f'l{i}' for i in range(L)) +
            ' | loss_homocon | its floor |', '|---|' + '---:|' * (L + 2)
        ]
        for method in with_prec:
            vals = [r['final_scalars']['loss_homocon'] for r in runs
                    if r['method'] == method
                    and 'loss_homocon' in r.get('final_scalars', {})]
            floor = homocon_floor_of(method, settings['batch_size'])
            lines.append('| {} | {} | {} | {} |'.format(
                method, ' | '.join(precision_cells(runs, method, L)),
                f'{statistics.fmean(vals):.4f}' if vals else '–',
                '–' if floor is None else f'{floor:.4f}'))
    return '\n'.join(lines) + '\n'


def plot_differences(diffs: Dict[str, dict], metrics: Sequence[str],
                     path: str, title: str) -> None:
    """Bar chart of the paired differences against MAE with their CIs."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    methods = list(diffs)
    fig, ax = plt.subplots(figsize=(1.6 + 1.9 * len(methods), 3.6))
    width = 0.8 / len(metrics)
    labels = dict(knn_top1='k-NN', linear_top1='linear probe',
                  finetune_top1='fine-tune')
    for j, metric in enumerate(metrics):
        xs, means, errs = [], [], [[], []]
        for i, method in enumerate(methods):
            d = diffs[method].get(metric)
            if d is None:
                continue
            xs.append(i + (j - (len(metrics) - 1) / 2) * width)
            means.append(d['mean'])
            lo, hi = d['ci'] or (d['mean'], d['mean'])
            errs[0].append(d['mean'] - lo)
            errs[1].append(hi - d['mean'])
        ax.bar(xs, means, width, yerr=errs, capsize=3,
               label=labels[metric])
    ax.axhline(0, color='black', linewidth=0.8)
    ax.set_xticks(range(len(methods)))
    seeds = [' '.join(map(str, next(iter(diffs[m].values()))['seeds']))
             for m in methods]
    ax.set_xticklabels([m.replace(', ', ',\n').replace(' (', '\n(') +
                        f'\nseeds {s}' for m, s in zip(methods, seeds)],
                       fontsize=8)
    ax.set_ylabel('top-1 minus MAE (points)')
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument('--study', action='store_true',
                      help='the study: 3 seeds, 3 epochs of 60k (the demo '
                      'schedule), every metric')
    mode.add_argument('--quick', action='store_true',
                      help='~10 min budget: 1 seed, a subset, short runs')
    mode.add_argument('--smoke', action='store_true',
                      help='seconds: a plumbing check for the tests')
    parser.add_argument('--seeds', type=int, nargs='+')
    parser.add_argument('--methods', nargs='+', choices=list(METHODS),
                        metavar='METHOD',
                        default=['MAE', 'naive mixing', 'MixedAE',
                                 'MixedAE w/o HomoCon',
                                 'MixedAE (paper reading)'],
                        help=f'any of {list(METHODS)}')
    parser.add_argument('--metrics', nargs='+', choices=METRICS,
                        default=list(METRICS))
    parser.add_argument('--no-floor', action='store_true',
                        help='skip the random-init encoder')
    parser.add_argument('--report', action='store_true',
                        help='train nothing: tables and plot from the '
                        'cached runs in --out-dir')
    parser.add_argument('--out-dir',
                        help='default work_dirs/benchmarks/fashion_mnist'
                        '[_study]')
    parser.add_argument('--data-root',
                        default=osp.join(ROOT, 'data', 'fashion_mnist'))
    for key in ('pretrain_images', 'epochs', 'batch_size', 'finetune_images',
                'eval_train_images', 'eval_test_images', 'finetune_iters',
                'finetune_batch_size', 'linear_epochs'):
        parser.add_argument('--' + key.replace('_', '-'), type=int,
                            help='override the preset')
    parser.add_argument('--verbose', action='store_true',
                        help="show the Runners' logs")
    return parser.parse_args(argv)


# what a cached run must match to be reused
CACHE_KEYS = ('pretrain_images', 'epochs', 'batch_size', 'warmup_fraction',
              'finetune_images', 'eval_train_images', 'eval_test_images',
              'finetune_iters', 'finetune_batch_size', 'linear_epochs')


def run_key(method: str, budget: dict) -> dict:
    """Everything a run's result depends on, for the cache."""
    cfg, overrides = METHODS.get(method, (None, {}))
    return dict(method=method, config=cfg,
                overrides=json.loads(json.dumps(overrides)),
                **{k: budget.get(k) for k in CACHE_KEYS})


def load_cached(path: str, key: dict) -> Optional[dict]:
    """The cached run at ``path`` if it was made with ``key``."""
    if not osp.exists(path):
        return None
    with open(path) as f:
        run = json.load(f)
    return run if run.get('key') == key else None


def main(argv=None) -> dict:
    args = parse_args(argv)
    preset = ('smoke' if args.smoke else 'quick' if args.quick else
              'study' if args.study else 'full')
    budget = dict(dict(finetune_images=None), **PRESETS[preset])
    for key in list(budget):
        if getattr(args, key, None) is not None:
            budget[key] = getattr(args, key)
    budget['seeds'] = list(budget['seeds'])
    out_dir = args.out_dir or osp.join(
        'work_dirs', 'benchmarks',
        'fashion_mnist_study' if preset == 'study' else 'fashion_mnist')
    for name in ('train-images-idx3-ubyte', 't10k-images-idx3-ubyte'):
        if not args.report and not osp.exists(osp.join(args.data_root, name)):
            raise FileNotFoundError(
                f'Fashion-MNIST is missing in {args.data_root} ({name}): run '
                '`make data` or pass --data-root.')
    import mixedae  # noqa: F401  (registers the modules)
    from mmengine.logging import MMLogger

    from mixedae.utils.checkpoint import convert_to_vit, load_checkpoint_safely
    from mmengine.registry import init_default_scope
    init_default_scope('mmpretrain')
    # the current logger until the first Runner makes its own
    MMLogger.get_instance(
        'fashion_mnist_benchmark',
        log_level='INFO' if args.verbose else 'WARNING')

    os.makedirs(osp.join(out_dir, 'runs'), exist_ok=True)
    methods = ([] if args.no_floor else [FLOOR]) + list(args.methods)
    settings = dict(
        preset=preset, **budget, methods=methods, metrics=args.metrics,
        confidence=0.95,
        features="VisionTransformer out_type='avg_featmap', final_norm=True",
        knn=dict(k=20, similarity='cosine', vote='exp(sim / 0.07) weighted'),
        linear_probe='standardised features, linear layer, AdamW 1e-3, '
        f"{budget['linear_epochs']} epochs of 256, cosine lr",
        finetune='ImageClassifier, AdamW 1e-3, layer decay 0.75, wd 0.05, '
        'label smoothing 0.1, drop path 0.1, 10% warm-up then cosine')
    machine = dict(
        cpus=os.cpu_count(), torch_threads=torch.get_num_threads(),
        torch=torch.__version__, python=platform.python_version(),
        processor=platform.processor() or platform.machine())
    runs: List[dict] = []
    missing: List[str] = []
    total = time.perf_counter()
    data = None

    def save():
        summary = summarise(runs, methods, METRICS + ('pretrain_seconds', ))
        diffs = paired_differences(runs, methods[1:] if not args.no_floor
                                   else methods, args.metrics) \
            if 'MAE' in methods else {}
        parts = component_differences(runs, methods, args.metrics)
        table = markdown(summary, settings, diffs, runs, parts)
        if diffs:
            plot_differences(
                diffs, args.metrics, osp.join(out_dir, 'differences.png'),
                f"Fashion-MNIST, {budget['epochs']} epoch(s) of "
                f"{budget['pretrain_images'] or 60000} images\npaired "
                'difference to MAE (same seed), mean and 95% CI')
        return write_results(
            out_dir, table, settings=settings, machine=machine,
            runs=runs, summary=summary, differences=diffs,
            component_differences=parts, missing=missing,
            total_seconds=time.perf_counter() - total), table

    for seed in budget['seeds']:
        for method in methods:
            tag = f'{_slug(method)}_seed{seed}'
            work_dir = osp.abspath(osp.join(out_dir, tag))
            cache = osp.join(out_dir, 'runs', f'{tag}.json')
            key = run_key(method, budget)
            cached = load_cached(cache, key)
            if cached is not None and set(args.metrics) <= set(cached):
                runs.append(cached)
                continue
            if args.report:
                missing.append(tag)
                continue
            print(f'[{time.perf_counter() - total:7.0f} s] {method}, '
                  f'seed {seed}: ', end='', flush=True)
            if data is None:
                data = dict(
                    train=load_split(args.data_root, False,
                                     budget['eval_train_images']),
                    test=load_split(args.data_root, True,
                                    budget['eval_test_images']))
            ckpt = osp.join(work_dir, f"epoch_{budget['epochs']}.pth")
            if cached is not None and (method == FLOOR
                                       or osp.exists(ckpt)):
                # pre-trained in an earlier sitting for other metrics:
                # evaluate only the missing ones
                run = cached
                todo = [m for m in args.metrics if m not in run]
                vit = random_init(seed) if method == FLOOR else \
                    convert_to_vit(load_checkpoint_safely(ckpt))
                print('cached pre-training, ', end='', flush=True)
            elif method == FLOOR:
                run = dict(method=method, seed=seed, pretrain_seconds=None,
                           pretrain_wall_seconds=None, pretrain_iters=0,
                           final_loss=None)
                vit, todo = random_init(seed), args.metrics
            else:
                out = pretrain(method, seed, budget, work_dir,
                               args.data_root, quiet=not args.verbose)
                vit, todo = out.pop('vit'), args.metrics
                run = dict(method=method, seed=seed,
                           pretrain_seconds=out['seconds'],
                           pretrain_wall_seconds=out['wall_seconds'],
                           pretrain_iters=out['iters'],
                           final_loss=out['final_loss'],
                           final_scalars=out['final_scalars'],
                           scalars=osp.relpath(out['scalars'], ROOT))
                print(f"pre-trained {out['iters']} iters in "
                      f"{out['seconds']:.0f} s (loss "
                      f"{out['final_loss']}), ", end='', flush=True)
            run.update(evaluate(vit, seed, budget, data,
                                osp.join(work_dir, 'finetune'),
                                args.data_root, quiet=not args.verbose,
                                metrics=todo))
            print(', '.join(f'{k} {run[k]:.1f}' for k in args.metrics) +
                  f" ({run['eval_seconds']:.0f} s)", flush=True)
            run['key'] = key
            with open(cache, 'w') as f:
                json.dump(run, f, indent=2)
            runs.append(run)
            save()
    result, table = save()
    print(f'\n{table}\nWrote {osp.join(out_dir, "results.json")} and '
          f'results.md in {result["total_seconds"]:.0f} s.')
    if missing:
        print(f'Not yet run (no cached result): {", ".join(missing)}')
    return result


if __name__ == '__main__':
    main()
