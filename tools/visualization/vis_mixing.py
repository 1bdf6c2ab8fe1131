"""Pictures of what a MixedAE checkpoint does with a batch.

    python tools/visualization/vis_mixing.py CONFIG CHECKPOINT --out-dir DIR
        [--num-images N] [--start I] [--queries P ...] [--layers L ...]
        [--per-head] [--zoom Z] [--seed S] [--device cpu]
        [--cfg-options k=v ...]

Takes N images of the config's training set (with its training pipeline,
seeded), mixes them in groups of G and writes

* ``DIR/reconstruction/group_{q}.png``: the G sources, each mixed view and
  every source's reconstruction from it;
* ``DIR/attention/group_{q}_view_{v}.png``: per mixed view, one row per
  homologous-attention layer (``--layers``; all by default), the first
  column the true source of every patch (colour = source), then one column
  per query patch (outlined in yellow; ``--queries``, default one random
  patch per source): the keys its top-k attention keeps, tinted by their
  source's colour, the tint strength the share of heads keeping the key
  (``--per-head`` for one row per layer and head). Rows are labelled on
  the left (``layer i`` / ``layer i head h``), a legend on top gives each
  source's colour and the query outline. Mostly the query's own colour =
  good homologous recognition;
* ``DIR/attention_content/...``: the same mixed images encoded again with
  every source cue removed (homologous bias 0, no segment embedding), for
  an encoder trained with one: what it recognises from content alone.

and prints the homologous precision per layer on these images, as trained
and from content alone (over all and over foreground query patches).
"""
import argparse
import os.path as osp

import torch
from mmengine.config import Config, DictAction
from mmengine.dataset import default_collate
from mmengine.registry import init_default_scope
from mmengine.runner import load_checkpoint
from mmengine.runner.utils import set_random_seed
from mmpretrain.registry import DATASETS, MODELS

from mixedae.engine.hooks.mixing_visualization_hook import (
    write_attention_pictures, write_mixing_pictures)
from mixedae.utils.visualization import recording_keep_masks


def parse_args():
    parser = argparse.ArgumentParser(
        description='Visualise mixing, reconstruction and homologous '
        'attention of a MixedAE checkpoint')
    parser.add_argument('config', help='pre-training config')
    parser.add_argument('checkpoint', help='checkpoint of that config')
    parser.add_argument('--out-dir', required=True, help='output folder')
    parser.add_argument(
        '--num-images',
        type=int,
        default=8,
        help='images to mix, a multiple of G (default 8)')
    parser.add_argument(
        '--start', type=int, default=0, help='first dataset index')
    parser.add_argument(
        '--queries',
        type=int,
        nargs='+',
        help='query patch positions (row-major, in [0, N)); default: one '
        'random patch per source')
    parser.add_argument(
        '--layers',
        type=int,
        nargs='+',
        help='encoder layers to show (default: all homologous ones)')
    parser.add_argument(
        '--per-head',
        action='store_true',
        help='one row per layer and head instead of averaging heads')
    parser.add_argument(
        '--zoom', type=int, default=4, help='upscaling of each image')
    parser.add_argument(
        '--seed', type=int, default=0, help='seed for crops, masks, queries')
    parser.add_argument('--device', default='cpu', help='e.g. cpu, cuda:0')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config settings, key=value')
    args = parser.parse_args()
    if args.num_images < 1:
        parser.error(f'--num-images must be >= 1, got {args.num_images}.')
    if args.zoom < 1:
        parser.error(f'--zoom must be >= 1, got {args.zoom}.')
    if not osp.isfile(args.checkpoint):
        parser.error(f'CHECKPOINT {args.checkpoint!r} is not a file.')
    return args


def main():
    args = parse_args()
    cfg = Config.fromfile(args.config)
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    set_random_seed(args.seed)

    # As mmengine's Runner does: a top-level `data_preprocessor` (the
    # mmpretrain convention of the ImageNet / COCO configs) is the model's
    # unless the model names its own.
    if cfg.get('data_preprocessor') is not None:
        cfg.model.setdefault('data_preprocessor', cfg.data_preprocessor)
    model = MODELS.build(cfg.model)
    if not (hasattr(model, 'reconstruct')
            and hasattr(model.backbone, 'group_size')):
        raise TypeError(f'CONFIG {args.config} builds a '
                        f'{type(model).__name__}; vis_mixing.py needs a '
                        'MixedAE model (a MixedAEViT backbone).')
    pre = model.data_preprocessor
    if not (hasattr(pre, 'mean') and hasattr(pre, 'std')):
        raise TypeError(
            f'CONFIG {args.config}: the model\'s data preprocessor is a '
            f'{type(pre).__name__}, without the mean and std needed to show '
            'images; set `model.data_preprocessor` or a top-level '
            '`data_preprocessor` (e.g. SelfSupDataPreprocessor).')
    load_checkpoint(model, args.checkpoint, map_location='cpu', strict=True)
    model.to(args.device).eval()
    G = model.backbone.group_size
    if args.num_images % G:
        raise ValueError(f'--num-images {args.num_images} must be a '
                         f'multiple of the group size G={G}.')

    dataset = DATASETS.build(cfg.train_dataloader.dataset)
    if args.start + args.num_images > len(dataset):
        raise ValueError(f'--start {args.start} + --num-images '
                         f'{args.num_images} exceeds the {len(dataset)} '
                         'images of the dataset.')
    data = default_collate([
        dataset[i] for i in range(args.start, args.start + args.num_images)
    ])
    backbone = model.backbone
    with torch.no_grad(), recording_keep_masks(backbone) as keeps:
        inputs = model.data_preprocessor(data)['inputs']
        out = model.reconstruct(inputs)
    write_mixing_pictures(inputs, out, model,
                          osp.join(args.out_dir, 'reconstruction'),
                          args.zoom)
    if not keeps:
        print('The model has no homologous-attention layer: no attention '
              'pictures.')
    else:
        pictures = [('attention', 'as trained', keeps)]
        if backbone.has_source_cue:  # the same mixed images, no cue
            with torch.no_grad(), recording_keep_masks(backbone) as plain:
                backbone.encode_mixed(inputs, out['masks'], cues=False)
            pictures.append(('attention_content',
                             'content only (source cues removed)', plain))
        for folder, what, selection in pictures:
            files = write_attention_pictures(
                out, selection, model, osp.join(args.out_dir, folder),
                queries=args.queries, layers=args.layers,
                per_head=args.per_head, zoom=args.zoom, seed=args.seed,
                prefix='')
            print(f'{len(files)} attention pictures ({what}) in '
                  f'{osp.join(args.out_dir, folder)}')
        with torch.no_grad():
            precision = model.recognition(inputs, out['masks'])
        N, G = backbone.num_patches, backbone.group_size
        print(f'homologous precision on these images (chance '
              f'{(N // G) / (N + 1):.3f}):')
        for prefix, what in (
                ('homo_prec', 'as trained'),
                ('homo_prec_content', 'content only'),
                ('homo_prec_content_fg', 'content only, foreground queries '
                 f'(brightest pixel > {model.fg_threshold})')):
            print(f'  {what}: ' + '  '.join(
                f'l{i} {precision[f"{prefix}_l{i}"].item():.3f}'
                for i in backbone.homo_layers))
    print(f'Reconstructions in {osp.join(args.out_dir, "reconstruction")}')


if __name__ == '__main__':
    main()
