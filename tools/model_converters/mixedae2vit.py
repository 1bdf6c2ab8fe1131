"""Convert a MixedAE (or MAE) pre-training checkpoint to a ViT backbone
checkpoint for mmpretrain, mmsegmentation, mmdetection, timm or the official
MAE / ViTDet code.

    python tools/model_converters/mixedae2vit.py PRETRAIN.pth OUT.pth \
        [--img-size 512] [--to {mmpretrain,timm}]

PRETRAIN.pth: a pre-training checkpoint of this toolbox or mmpretrain, or an
official MAE / timm checkpoint ({'model': {'blocks.N...'}}). The input is
loaded without running pickled code.

``--to mmpretrain`` (default) writes ``state_dict`` with mmpretrain
``VisionTransformer`` keys (no prefix); the downstream configs load it with
``backbone.init_cfg=dict(type='Pretrained', checkpoint=OUT.pth)``.
``--to timm`` writes ``model`` with timm / official MAE keys
(``blocks.N.attn.qkv``, ``norm``), the layout of MAE's released
``mae_pretrain_vit_base.pth``: it loads with
``timm.create_model('vit_base_patch16_224', pretrained=True,
pretrained_cfg_overlay=dict(file='OUT.pth'), num_classes=N)``, MAE's
``main_finetune.py --finetune OUT.pth`` and ViTDet's ``init_checkpoint``.

A file that cannot be converted stops the script with a one-line error
naming it (exit status 1).
"""
import argparse
import os
import os.path as osp
import pickle
import sys

import torch

from mixedae.utils.checkpoint import (MMPRETRAIN, TIMM, CheckpointError,
                                      convert_to_vit, load_checkpoint_safely,
                                      vit_to_timm)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog=osp.basename(__file__), description=__doc__.split('\n')[0])
    parser.add_argument('src', help='pre-training checkpoint')
    parser.add_argument('dst', help='output backbone checkpoint')
    parser.add_argument(
        '--img-size',
        type=int,
        help='resize the position embedding to this input size')
    parser.add_argument(
        '--to',
        choices=(MMPRETRAIN, TIMM),
        default=MMPRETRAIN,
        help='key layout of the output: mmpretrain VisionTransformer '
        '(mmpretrain / mmseg / mmdet configs) or timm (timm, official MAE '
        'fine-tuning, ViTDet)')
    return parser, parser.parse_args(argv)


def convert(src: str, dst: str, img_size=None, to: str = MMPRETRAIN) -> int:
    """Write the converted encoder of ``src`` to ``dst``; returns the number
    of tensors. Errors name ``src``."""
    checkpoint = load_checkpoint_safely(src)  # its errors name the file
    try:
        vit = convert_to_vit(checkpoint, img_size)
        if to == TIMM:
            vit = vit_to_timm(vit)
    except CheckpointError as e:
        raise CheckpointError(f'{src}: {e}') from None
    meta = dict(converted_from=src, layout=to)
    # timm, MAE and detectron2 read `model`; mmengine reads `state_dict`
    out = dict(model=vit) if to == TIMM else dict(state_dict=vit)
    os.makedirs(osp.dirname(osp.abspath(dst)), exist_ok=True)
    torch.save(dict(out, meta=meta), dst)
    return len(vit)


def main(argv=None):
    parser, args = parse_args(argv)
    try:
        num = convert(args.src, args.dst, args.img_size, args.to)
    except (CheckpointError, OSError, pickle.UnpicklingError) as e:
        # one line, no traceback: the message names the file and what was
        # expected of it
        parser.exit(1, f'{parser.prog}: error: {e}\n')
    except ValueError as e:  # an argument (--img-size)
        parser.exit(2, f'{parser.prog}: error: {e}\n')
    print(f'{num} encoder tensors written to {args.dst} ({args.to} keys)')


if __name__ == '__main__':
    sys.exit(main())
