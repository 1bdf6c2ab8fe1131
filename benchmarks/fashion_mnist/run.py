"""MAE vs naive mixing vs MixedAE on Fashion-MNIST, on the CPU, in one command.

For every seed, pre-trains the tiny 1-channel ViT of the demo configs (192-dim,
6 layers, patch 4, 32 px) with each method on Fashion-MNIST train (labels
unused), with mmengine's Runner and the repo's configs; converts each
checkpoint to a plain mmpretrain ``VisionTransformer`` and evaluates it three
ways, with a random-init encoder as the floor: k-NN (k = 20, cosine, DINO's
weighted vote) and a linear probe on frozen features, and a brief end-to-end
fine-tune. For MixedAE methods it also measures the homologous precision of
every layer, as trained and from content alone.

    .venv/bin/python benchmarks/fashion_mnist/run.py --study   # the study
    .venv/bin/python benchmarks/fashion_mnist/run.py --quick   # ~10 min
    .venv/bin/python benchmarks/fashion_mnist/run.py --study --report

The code is the package ``fmnist_study`` beside this script (one module per
concern); ``--help`` lists the options.
"""
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))

from fmnist_study.cli import main  # noqa: E402

if __name__ == '__main__':
    main()
