"""Compose small detection / segmentation sets from real Fashion-MNIST items.

Items (28x28, gray) are resized and pasted into disjoint cells of a larger
black canvas (RGB by stacking the gray channel). Everything else follows
from the pixels: an item's instance mask is its pixels above ``threshold``,
its box the mask's tight box, and the semantic map holds ``label + 1`` on
the mask (0 = background). Two layouts are written:

- COCO: ``coco/images/{train,val}/*.png`` and
  ``coco/annotations/instances_{train,val}.json`` (boxes ``[x, y, w, h]``,
  compressed-RLE masks, category ids 1..10), read by mmdet's ``CocoDataset``
  with ``metainfo=COCO_METAINFO``;
- ADE20K-like: ``ade/images/{training,validation}/*.png`` and
  ``ade/annotations/{training,validation}/*.png``, read by mmseg's
  ``BaseSegDataset`` with ``metainfo=SEG_METAINFO`` (11 classes, background
  included, so ``reduce_zero_label=False``).

Train canvases use the Fashion-MNIST train split, val canvases the test
split. The output is a function of the arguments (seeded ``numpy``
generator).

    python tools/dataset_converters/compose_fashion_mnist_dense.py \
        --data-root data/fashion_mnist --out-dir data/fashion_mnist_dense \
        --num-train 2000 --num-val 500 --canvas-size 96
"""
import argparse
import json
import os
import os.path as osp
from typing import Dict, List

import cv2
import numpy as np
from mmpretrain.datasets.mnist import (FashionMNIST, read_image_file,
                                       read_label_file)
from pycocotools import mask as mask_utils

CLASSES = tuple(FashionMNIST.METAINFO['classes'])
COCO_METAINFO = dict(classes=CLASSES)
SEG_METAINFO = dict(classes=('background', ) + CLASSES)
ITEM_SIZE = 28


def load_fashion_mnist(data_root: str, train: bool = True):
    """(N, 28, 28) uint8 images and (N,) int64 labels of one split, from the
    un-gzipped idx files mmpretrain's ``FashionMNIST`` reads."""
    prefix = 'train' if train else 't10k'
    paths = [
        osp.join(data_root, f'{prefix}-{kind}-idx{d}-ubyte')
        for kind, d in (('images', 3), ('labels', 1))
    ]
    for path in paths:
        if not osp.isfile(path):
            raise FileNotFoundError(
                f'`data_root`={data_root!r} has no {osp.basename(path)}; '
                'run tools/dataset_converters/prepare_fashion_mnist.py.')
    return (read_image_file(paths[0]).numpy(),
            read_label_file(paths[1]).numpy().astype(np.int64))


def compose_canvases(images: np.ndarray,
                     labels: np.ndarray,
                     num_canvases: int,
                     canvas_size: int = 64,
                     grid: int = 2,
                     max_items: int = 3,
                     min_item_size: int = 20,
                     threshold: int = 32,
                     seed: int = 0) -> List[Dict]:
    """Paste Fashion-MNIST items into ``grid x grid`` disjoint cells.

    Each canvas gets 1..``max_items`` items, each resized to a random square
    side in [``min_item_size``, cell side] at a random offset in its cell, so
    instances never overlap.

    Returns:
        list[dict]: per canvas ``img`` (H, W, 3) uint8, ``sem_seg`` (H, W)
        uint8 (0 background, label + 1 on items) and ``instances``: dicts
        with ``label`` (0..9), ``mask`` (H, W) bool and ``bbox``
        ``[x1, y1, x2, y2]`` (pixel edges, exclusive right/bottom).
    """
    cell = canvas_size // grid
    if grid < 1 or cell < min_item_size:
        raise ValueError(f'`canvas_size`={canvas_size} // `grid`={grid} is '
                         f'smaller than `min_item_size`={min_item_size}.')
    if not 1 <= max_items <= grid * grid:
        raise ValueError(f'`max_items`={max_items} must be in [1, '
                         f'grid**2={grid * grid}].')
    rng = np.random.default_rng(seed)
    canvases = []
    for _ in range(num_canvases):
        img = np.zeros((canvas_size, canvas_size), np.uint8)
        sem = np.zeros((canvas_size, canvas_size), np.uint8)
        instances = []
        k = int(rng.integers(1, max_items + 1))
        cells = rng.choice(grid * grid, size=k, replace=False)
        for c, idx in zip(cells, rng.choice(len(images), size=k)):
            size = int(rng.integers(min_item_size, cell + 1))
            item = cv2.resize(
                images[idx], (size, size), interpolation=cv2.INTER_LINEAR)
            y0 = (c // grid) * cell + int(rng.integers(0, cell - size + 1))
            x0 = (c % grid) * cell + int(rng.integers(0, cell - size + 1))
            img[y0:y0 + size, x0:x0 + size] = item
            fg = item > threshold
            if not fg.any():
                continue
            mask = np.zeros_like(img, dtype=bool)
            mask[y0:y0 + size, x0:x0 + size] = fg
            sem[mask] = labels[idx] + 1
            ys, xs = np.nonzero(fg)
            bbox = [x0 + xs.min(), y0 + ys.min(), x0 + xs.max() + 1,
                    y0 + ys.max() + 1]
            instances.append(
                dict(label=int(labels[idx]), mask=mask,
                     bbox=[int(v) for v in bbox]))
        canvases.append(
            dict(img=np.repeat(img[..., None], 3, axis=2), sem_seg=sem,
                 instances=instances))
    return canvases


def write_coco(canvases: List[Dict], root: str, split: str) -> str:
    """Write ``root/images/{split}/*.png`` and
    ``root/annotations/instances_{split}.json``; returns the json path."""
    img_dir = osp.join(root, 'images', split)
    os.makedirs(img_dir, exist_ok=True)
    os.makedirs(osp.join(root, 'annotations'), exist_ok=True)
    images, annotations = [], []
    for i, canvas in enumerate(canvases):
        name = f'{i:06d}.png'
        cv2.imwrite(osp.join(img_dir, name), canvas['img'])
        h, w = canvas['sem_seg'].shape
        images.append(dict(id=i, file_name=name, height=h, width=w))
        for inst in canvas['instances']:
            rle = mask_utils.encode(np.asfortranarray(inst['mask'], np.uint8))
            rle['counts'] = rle['counts'].decode('ascii')
            x1, y1, x2, y2 = inst['bbox']
            annotations.append(
                dict(id=len(annotations) + 1, image_id=i,
                     category_id=inst['label'] + 1, segmentation=rle,
                     area=int(inst['mask'].sum()),
                     bbox=[x1, y1, x2 - x1, y2 - y1], iscrowd=0))
    categories = [dict(id=i + 1, name=n) for i, n in enumerate(CLASSES)]
    path = osp.join(root, 'annotations', f'instances_{split}.json')
    with open(path, 'w') as f:
        json.dump(dict(images=images, annotations=annotations,
                       categories=categories), f)
    return path


def write_ade(canvases: List[Dict], root: str, split: str) -> None:
    """Write ``root/images/{split}/*.png`` and ``root/annotations/{split}/
    *.png`` (one uint8 class id per pixel, 0 = background)."""
    for sub in ('images', 'annotations'):
        os.makedirs(osp.join(root, sub, split), exist_ok=True)
    for i, canvas in enumerate(canvases):
        name = f'{i:06d}.png'
        cv2.imwrite(osp.join(root, 'images', split, name), canvas['img'])
        cv2.imwrite(osp.join(root, 'annotations', split, name),
                    canvas['sem_seg'])


def compose_fashion_mnist_dense(data_root: str,
                                out_dir: str,
                                num_train: int = 32,
                                num_val: int = 8,
                                canvas_size: int = 64,
                                seed: int = 0,
                                **compose_kwargs) -> Dict[str, str]:
    """Compose both layouts under ``out_dir``; returns their roots
    (``coco_root``, ``ade_root``) and the COCO json paths
    (``coco_train_ann``, ``coco_val_ann``)."""
    out = dict(coco_root=osp.join(out_dir, 'coco'),
               ade_root=osp.join(out_dir, 'ade'))
    for split, ade_split, num, train, split_seed in (
            ('train', 'training', num_train, True, seed),
            ('val', 'validation', num_val, False, seed + 1)):
        images, labels = load_fashion_mnist(data_root, train=train)
        canvases = compose_canvases(
            images, labels, num, canvas_size=canvas_size, seed=split_seed,
            **compose_kwargs)
        out[f'coco_{split}_ann'] = write_coco(canvases, out['coco_root'],
                                              split)
        write_ade(canvases, out['ade_root'], ade_split)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--data-root', default='data/fashion_mnist')
    parser.add_argument('--out-dir', default='data/fashion_mnist_dense')
    parser.add_argument('--num-train', type=int, default=2000)
    parser.add_argument('--num-val', type=int, default=500)
    parser.add_argument('--canvas-size', type=int, default=96)
    parser.add_argument('--grid', type=int, default=3)
    parser.add_argument('--max-items', type=int, default=5)
    parser.add_argument('--threshold', type=int, default=32,
                        help='foreground: item pixels above this (0-255)')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args()
    out = compose_fashion_mnist_dense(
        args.data_root, args.out_dir, args.num_train, args.num_val,
        args.canvas_size, args.seed, grid=args.grid,
        max_items=args.max_items, threshold=args.threshold)
    print('\n'.join(f'{k}: {v}' for k, v in out.items()))


if __name__ == '__main__':
    main()
