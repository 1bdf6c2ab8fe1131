"""Frozen dense probes on multi-object canvases composed from Fashion-MNIST
items (``tools/dataset_converters/compose_fashion_mnist_dense.py``: 1-3
items on a black 64-px canvas, train items from the train split, val items
from the test split):

* a linear segmentation probe: a linear classifier on every frozen patch
  feature, its logits upsampled to the pixels, trained with cross-entropy;
  mIoU over the 11 classes (background included) and over the 10 items;
* zero-shot object discovery, no labels: k-means (cosine, k = 1 + the
  most items a canvas holds) on each canvas's patch features, scored
  against the item instances by the foreground adjusted Rand index
  (FG-ARI, pixels of items only, over canvases with two or more items)
  and by the best-match IoU of every instance (mean over instances).
"""
import copy
import importlib.util
import os.path as osp
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from .data import ENCODER, FRESH_KEYS, MEAN, STD
from .methods import ROOT

CANVAS = dict(canvas_size=64, grid=2, max_items=3)
NUM_SEG_CLASSES = 11


def _composer():
    path = osp.join(ROOT, 'tools/dataset_converters/'
                    'compose_fashion_mnist_dense.py')
    spec = importlib.util.spec_from_file_location('compose_dense', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@lru_cache(maxsize=2)
def dense_data(data_root: str, num_train: int, num_val: int,
               seed: int = 0) -> dict:
    """``train`` / ``val``: (images (n, 1, H, W) normalised, semantic maps
    (n, H, W), instance maps (n, H, W), 0 = background, 1.. the items)."""
    compose = _composer()
    out = {}
    for split, num, train, split_seed in (('train', num_train, True, seed),
                                          ('val', num_val, False, seed + 1)):
        images, labels = compose.load_fashion_mnist(data_root, train=train)
        canvases = compose.compose_canvases(images, labels, num,
                                            seed=split_seed, **CANVAS)
        imgs = torch.from_numpy(np.stack([c['img'][..., 0]
                                          for c in canvases]))
        sem = torch.from_numpy(np.stack([c['sem_seg'] for c in canvases]))
        inst = torch.zeros_like(sem, dtype=torch.long)
        for n, canvas in enumerate(canvases):
            for i, instance in enumerate(canvas['instances']):
                inst[n][torch.from_numpy(instance['mask'])] = i + 1
        out[split] = ((imgs[:, None].float() - MEAN) / STD, sem.long(), inst)
    return out


@torch.no_grad()
def patch_features(vit_state: dict, images: torch.Tensor,
                   batch_size: int = 256) -> torch.Tensor:
    """(n, h, w, D) final-normed patch features of the frozen encoder at
    the canvases' size (the position embedding resized on load)."""
    from mmpretrain.registry import MODELS
    cfg = dict(copy.deepcopy(ENCODER), img_size=images.shape[-1],
               out_type='featmap')
    encoder = MODELS.build(cfg)
    missing, unexpected = encoder.load_state_dict(vit_state, strict=False)
    if set(missing) - FRESH_KEYS or unexpected:
        raise RuntimeError(f'missing {missing}, unexpected {unexpected}')
    encoder.eval()
    feats = [encoder(b)[0] for b in images.split(batch_size)]
    return torch.cat(feats).permute(0, 2, 3, 1).contiguous()


def _upsample(logits: torch.Tensor, size: int) -> torch.Tensor:
    """(n, h, w, C) patch logits -> (n, C, H, W), bilinear."""
    return F.interpolate(logits.permute(0, 3, 1, 2), size=size,
                         mode='bilinear', align_corners=False)


def miou(pred: torch.Tensor, target: torch.Tensor,
         num_classes: int) -> torch.Tensor:
    """(C,) IoU of every class over the whole set (NaN for a class absent
    from both)."""
    idx = target.flatten() * num_classes + pred.flatten()
    conf = torch.bincount(idx, minlength=num_classes**2).view(
        num_classes, num_classes).double()  # rows: target
    inter = conf.diag()
    union = conf.sum(0) + conf.sum(1) - inter
    return inter / union


def linear_segmentation(train_feats, train_sem, val_feats, val_sem,
                        epochs: int = 20, batch_size: int = 50,
                        lr: float = 1e-3, seed: int = 0) -> dict:
    """The linear segmentation probe (module docstring); mIoU in %."""
    size = train_sem.shape[-1]
    mean = train_feats.flatten(0, 2).mean(0)
    std = train_feats.flatten(0, 2).std(0) + 1e-6
    gen = torch.Generator().manual_seed(seed)
    head = torch.nn.Linear(train_feats.shape[-1], NUM_SEG_CLASSES)
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * -(-len(train_feats) // batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    for _ in range(epochs):
        for idx in torch.randperm(len(train_feats), generator=gen).split(
                batch_size):
            logits = _upsample(head((train_feats[idx] - mean) / std), size)
            loss = F.cross_entropy(logits, train_sem[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    with torch.no_grad():
        pred = torch.cat([
            _upsample(head((f - mean) / std), size).argmax(1)
            for f in val_feats.split(100)])
    iou = miou(pred, val_sem, NUM_SEG_CLASSES)
    return dict(seg_miou=100 * iou.nanmean().item(),
                seg_miou_items=100 * iou[1:].nanmean().item())


def kmeans(x: torch.Tensor, k: int, iters: int = 30,
           seed: int = 0) -> torch.Tensor:
    """Cosine k-means on every set of a batch at once: (n, P, D) ->
    (n, P) cluster ids. k-means++ initialisation (seeded)."""
    x = F.normalize(x.float(), dim=-1)
    n, P, _ = x.shape
    gen = torch.Generator().manual_seed(seed)
    first = torch.randint(P, (n, ), generator=gen)
    centres = [x[torch.arange(n), first]]  # k-means++: far points next
    for _ in range(1, k):
        sim = torch.stack([(x * c[:, None]).sum(-1) for c in centres])
        dist = (1 - sim.amax(0)).clamp(min=0) + 1e-12  # (n, P)
        pick = torch.multinomial(dist, 1, generator=gen)[:, 0]
        centres.append(x[torch.arange(n), pick])
    centres = torch.stack(centres, 1)  # (n, k, D)
    for _ in range(iters):
        assign = (x @ centres.transpose(1, 2)).argmax(-1)  # (n, P)
        onehot = F.one_hot(assign, k).float()  # (n, P, k)
        sums = onehot.transpose(1, 2) @ x  # (n, k, D)
        empty = onehot.sum(1) == 0  # keep an empty cluster's centre
        centres = torch.where(empty[..., None], centres,
                              F.normalize(sums, dim=-1))
    return (x @ centres.transpose(1, 2)).argmax(-1)


def _pairs(n: torch.Tensor) -> torch.Tensor:
    return n * (n - 1) / 2


def fg_ari(instances: torch.Tensor, clusters: torch.Tensor) -> torch.Tensor:
    """Adjusted Rand index per image over its foreground pixels: (n, H*W)
    instance ids (0 = background, ignored) and cluster ids -> (n,)."""
    fg = (instances > 0).double()
    a = F.one_hot(instances).double() * fg[..., None]  # (n, P, I)
    b = F.one_hot(clusters).double()  # (n, P, k)
    table = a.transpose(1, 2) @ b  # (n, I, k) contingency
    total = _pairs(fg.sum(1))
    index = _pairs(table).sum((1, 2))
    rows = _pairs(table.sum(2)).sum(1)
    cols = _pairs(table.sum(1)).sum(1)
    expected = rows * cols / total.clamp(min=1)
    best = (rows + cols) / 2
    return (index - expected) / (best - expected)


def object_discovery(val_feats: torch.Tensor, val_inst: torch.Tensor,
                     k: int = CANVAS['max_items'] + 1,
                     seed: int = 0) -> dict:
    """Zero-shot object discovery (module docstring); scores in %."""
    n, h, w, _ = val_feats.shape
    size = val_inst.shape[-1]
    clusters = kmeans(val_feats.flatten(1, 2), k, seed=seed).view(n, h, w)
    clusters = clusters.repeat_interleave(size // h, 1).repeat_interleave(
        size // w, 2).flatten(1)  # (n, H*W): every pixel its patch's id
    inst = val_inst.flatten(1)
    items = inst.amax(1)
    ari = fg_ari(inst, clusters)[items >= 2]
    # best-match IoU of every instance against the k clusters
    a = F.one_hot(inst).float()[..., 1:]  # (n, P, I)
    b = F.one_hot(clusters, k).float()
    inter = a.transpose(1, 2) @ b  # (n, I, k)
    union = a.sum(1)[..., None] + b.sum(1)[:, None] - inter
    best = (inter / union.clamp(min=1)).amax(-1)  # (n, I)
    present = a.sum(1) > 0
    return dict(discovery_fg_ari=100 * ari.mean().item(),
                discovery_best_iou=100 * best[present].mean().item())


def dense_probes(vit_state: dict, data: dict, seed: int = 0) -> dict:
    """Both probes of one encoder."""
    (xtr, str_, _), (xva, sva, iva) = data['train'], data['val']
    ftr, fva = patch_features(vit_state, xtr), patch_features(vit_state, xva)
    out = linear_segmentation(ftr, str_, fva, sva, seed=seed)
    out.update(object_discovery(fva, iva, seed=seed))
    return out
