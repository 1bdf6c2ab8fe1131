"""Put Fashion-MNIST where mmpretrain's ``FashionMNIST`` reads it.

Un-gzips the four ``*-ubyte.gz`` files of ``--src-dir`` (by default
Debian's ``dataset-fashion-mnist``, ``/usr/share/datasets/fashion-mnist``,
installed with apt-get when missing and we are root) into ``--out-dir``.
With ``--download`` it uses mmpretrain's download instead (needs the
internet); it never downloads unasked. Files already in ``--out-dir`` are
checked (their sizes) and kept, so running it again costs nothing; missing
or truncated ones are prepared again. Anything missing is an error naming
the path and the ways to get the data.

    python tools/dataset_converters/prepare_fashion_mnist.py \\
        --out-dir data/fashion_mnist [--src-dir DIR | --download]
"""
import argparse
import gzip
import os
import os.path as osp
import shutil
import subprocess
import sys

DEBIAN_DIR = '/usr/share/datasets/fashion-mnist'
DEBIAN_PACKAGE = 'dataset-fashion-mnist'
# the un-gzipped files and their sizes (idx header + 28x28 images / labels)
FILES = {
    'train-images-idx3-ubyte': 16 + 60000 * 28 * 28,
    'train-labels-idx1-ubyte': 8 + 60000,
    't10k-images-idx3-ubyte': 16 + 10000 * 28 * 28,
    't10k-labels-idx1-ubyte': 8 + 10000,
}


def missing_files(folder: str) -> list:
    """Names of the un-gzipped files absent from ``folder`` or of the wrong
    size."""
    return [
        name for name, size in FILES.items()
        if not osp.isfile(osp.join(folder, name))
        or osp.getsize(osp.join(folder, name)) != size
    ]


def debian_install() -> bool:
    """apt-get install dataset-fashion-mnist, when root with apt-get."""
    if os.geteuid() != 0 or shutil.which('apt-get') is None:
        return False
    env = dict(os.environ, DEBIAN_FRONTEND='noninteractive')
    cmd = ['apt-get', 'install', '-y', '-qq', DEBIAN_PACKAGE]
    if subprocess.run(cmd, env=env).returncode != 0:
        subprocess.run(['apt-get', 'update', '-qq'], env=env)
        subprocess.run(cmd, env=env)
    return osp.isdir(DEBIAN_DIR)


def how_to_get_it(out_dir: str) -> str:
    return (f'Get Fashion-MNIST one of these ways:\n'
            f'  * as root: apt-get install {DEBIAN_PACKAGE} (Debian / '
            f'Ubuntu; it fills {DEBIAN_DIR}), then rerun;\n'
            '  * --src-dir DIR, a folder holding the four *-ubyte.gz files '
            f'({", ".join(FILES)});\n'
            '  * --download, with internet access (mmpretrain downloads '
            f'them into {out_dir}).')


def prepare(out_dir: str, src_dir: str = DEBIAN_DIR,
            download: bool = False) -> str:
    """Make ``out_dir`` hold the four un-gzipped files; returns what was
    done. Raises ``FileNotFoundError`` naming the path when the data cannot
    be found (and ``download`` is False)."""
    if not missing_files(out_dir):
        return f'Fashion-MNIST already in {out_dir}'
    if download:
        from mmpretrain.datasets import FashionMNIST
        os.makedirs(out_dir, exist_ok=True)
        FashionMNIST(data_root=out_dir, download=True)
        if missing_files(out_dir):
            raise FileNotFoundError(
                f'--download left {out_dir} without '
                f'{", ".join(missing_files(out_dir))}.')
        return f'Fashion-MNIST downloaded into {out_dir}'
    if src_dir == DEBIAN_DIR and not osp.isdir(src_dir):
        debian_install()
    gz = [osp.join(src_dir, name + '.gz') for name in FILES]
    absent = [f for f in gz if not osp.isfile(f)]
    if absent:
        if osp.isdir(src_dir):
            what = (f'--src-dir {src_dir} lacks '
                    f'{", ".join(map(osp.basename, absent))}')
        else:
            what = f'--src-dir {src_dir} does not exist'
        if src_dir == DEBIAN_DIR and not osp.isdir(src_dir):
            what += (f' (Debian\'s {DEBIAN_PACKAGE} is not installed, and '
                     'installing it needs root and apt-get)')
        raise FileNotFoundError(
            f'{what}; {out_dir} is missing '
            f'{", ".join(missing_files(out_dir))}.\n' + how_to_get_it(out_dir))
    os.makedirs(out_dir, exist_ok=True)
    for src, name in zip(gz, FILES):
        # write aside, then rename: an interrupted run leaves no truncated
        # file behind that would pass for the real one
        dst = osp.join(out_dir, name)
        with gzip.open(src, 'rb') as fin, open(dst + '.part', 'wb') as fout:
            shutil.copyfileobj(fin, fout)
        os.replace(dst + '.part', dst)
    bad = missing_files(out_dir)
    if bad:
        raise FileNotFoundError(
            f'{", ".join(bad)} from --src-dir {src_dir} do not have '
            'Fashion-MNIST\'s sizes: is it Fashion-MNIST?')
    return f'Fashion-MNIST from {src_dir} written to {out_dir}'


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        '--out-dir',
        default='data/fashion_mnist',
        help='where the demo config reads it (its '
        'train_dataloader.dataset.data_root)')
    parser.add_argument(
        '--src-dir',
        default=DEBIAN_DIR,
        help='folder with the four *-ubyte.gz files (default: Debian\'s '
        f'{DEBIAN_PACKAGE}, {DEBIAN_DIR})')
    parser.add_argument(
        '--download',
        action='store_true',
        help='download with mmpretrain instead (needs the internet)')
    args = parser.parse_args(argv)
    try:
        print(prepare(args.out_dir, args.src_dir, args.download))
    except FileNotFoundError as e:
        sys.exit(f'error: {e}')


if __name__ == '__main__':
    main()
