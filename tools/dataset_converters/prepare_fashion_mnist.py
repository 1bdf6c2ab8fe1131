"""Put Fashion-MNIST where mmpretrain's ``FashionMNIST`` reads it.

Takes the four ``*-ubyte.gz`` files from Debian's ``dataset-fashion-mnist``
(``/usr/share/datasets/fashion-mnist``), installing that package with
apt-get when it is missing and we are root, and un-gzips them into
``--out-dir``. Where neither works it leaves the folder to mmpretrain's own
download (``download=True`` in the dataset config).

    python tools/dataset_converters/prepare_fashion_mnist.py \
        --out-dir data/fashion_mnist
"""
import argparse
import gzip
import os
import os.path as osp
import shutil
import subprocess

DEBIAN_DIR = '/usr/share/datasets/fashion-mnist'
FILES = ('train-images-idx3-ubyte', 'train-labels-idx1-ubyte',
         't10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte')


def debian_install() -> bool:
    """apt-get install dataset-fashion-mnist, when root with apt-get."""
    if os.geteuid() != 0 or shutil.which('apt-get') is None:
        return False
    env = dict(os.environ, DEBIAN_FRONTEND='noninteractive')
    cmd = ['apt-get', 'install', '-y', '-qq', 'dataset-fashion-mnist']
    if subprocess.run(cmd, env=env).returncode != 0:
        subprocess.run(['apt-get', 'update', '-qq'], env=env)
        subprocess.run(cmd, env=env)
    return osp.isdir(DEBIAN_DIR)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out-dir', default='data/fashion_mnist')
    parser.add_argument('--src-dir', default=DEBIAN_DIR)
    args = parser.parse_args()

    os.makedirs(args.out_dir, exist_ok=True)
    if all(osp.exists(osp.join(args.out_dir, f)) for f in FILES):
        print(f'Fashion-MNIST already in {args.out_dir}')
        return
    if not osp.isdir(args.src_dir) and args.src_dir == DEBIAN_DIR:
        debian_install()
    if not osp.isdir(args.src_dir):
        from mmpretrain.datasets import FashionMNIST
        print(f'{args.src_dir} not found: using mmpretrain\'s download')
        FashionMNIST(data_root=args.out_dir, download=True)
        return
    for name in FILES:
        src = osp.join(args.src_dir, name + '.gz')
        with gzip.open(src, 'rb') as fin, open(
                osp.join(args.out_dir, name), 'wb') as fout:
            shutil.copyfileobj(fin, fout)
    print(f'Fashion-MNIST from {args.src_dir} written to {args.out_dir}')


if __name__ == '__main__':
    main()
