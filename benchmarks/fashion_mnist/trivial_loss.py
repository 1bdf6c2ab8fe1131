"""The reconstruction loss of predicting 0 for every norm-pix target.

With ``norm_pix`` targets (each patch minus its mean, over its std), a flat
patch (Fashion-MNIST's black background) has target 0, and predicting 0
everywhere scores the mean squared target. A pre-training loss at this value
has learned nothing beyond "the patch mean"; the benchmark README uses it to
read the Fashion-MNIST pre-training curves.

    .venv/bin/python benchmarks/fashion_mnist/trivial_loss.py [--num 5000]
"""
import argparse
import os.path as osp
import sys

import torch

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from fmnist_study.data import ENCODER, load_split  # noqa: E402
from fmnist_study.methods import ROOT  # noqa: E402


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--num', type=int, default=5000,
                        help='the first NUM train images (uncropped)')
    parser.add_argument('--data-root',
                        default=osp.join(ROOT, 'data', 'fashion_mnist'))
    args = parser.parse_args(argv)
    from mmpretrain.models.heads import MAEPretrainHead
    x, _ = load_split(args.data_root, False, args.num)  # (n, 1, 32, 32)
    head = MAEPretrainHead(
        loss=dict(type='PixelReconstructionLoss', criterion='L2'),
        norm_pix=True, patch_size=ENCODER['patch_size'], in_channels=1)
    target = head.construct_target(x)  # (n, 64, 16), normalised per patch
    var = head.patchify(x).var(dim=-1)  # (n, 64)
    out = dict(
        images=len(x),
        trivial_loss=target.pow(2).mean().item(),
        flat_patches=(var == 0).float().mean().item(),
        near_flat_patches=((var > 0) & (var < 1e-3)).float().mean().item())
    print('predicting 0 everywhere: loss {trivial_loss:.3f} on {images} '
          'uncropped train images; flat patches {flat_patches:.1%}, nearly '
          'flat (0 < var < 1e-3) {near_flat_patches:.1%}'.format(**out))
    return out


if __name__ == '__main__':
    with torch.no_grad():
        main()
