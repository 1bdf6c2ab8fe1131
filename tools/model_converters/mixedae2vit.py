"""Convert a MixedAE (or MAE) pre-training checkpoint to a ViT backbone
checkpoint for mmpretrain, mmsegmentation and mmdetection.

    python tools/model_converters/mixedae2vit.py PRETRAIN.pth OUT.pth \
        [--img-size 512]

The output holds ``state_dict`` with mmpretrain ``VisionTransformer`` keys
(no prefix); the downstream configs load it with
``backbone.init_cfg=dict(type='Pretrained', checkpoint=OUT.pth)``.
"""
import argparse
import os
import os.path as osp

import torch

from mixedae.utils.checkpoint import convert_to_vit, load_checkpoint_safely


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('src', help='pre-training checkpoint')
    parser.add_argument('dst', help='output backbone checkpoint')
    parser.add_argument(
        '--img-size',
        type=int,
        help='resize the position embedding to this input size')
    args = parser.parse_args()
    vit = convert_to_vit(load_checkpoint_safely(args.src), args.img_size)
    os.makedirs(osp.dirname(osp.abspath(args.dst)), exist_ok=True)
    torch.save(dict(state_dict=vit, meta=dict(converted_from=args.src)),
               args.dst)
    print(f'{len(vit)} encoder tensors written to {args.dst}')


if __name__ == '__main__':
    main()
