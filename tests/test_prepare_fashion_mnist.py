"""tools/dataset_converters/prepare_fashion_mnist.py: a clear error naming
the path instead of a silent download; files checked on every run."""
import gzip
import importlib.util
import os
import os.path as osp
import subprocess
import sys

import pytest

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
SCRIPT = osp.join(ROOT, 'tools/dataset_converters/prepare_fashion_mnist.py')
spec = importlib.util.spec_from_file_location('prepare_fashion_mnist',
                                              SCRIPT)
prep = importlib.util.module_from_spec(spec)
spec.loader.exec_module(prep)


def fake_source(folder, sizes=None):
    """The four *-ubyte.gz files, of Fashion-MNIST's sizes (zeros)."""
    os.makedirs(folder)
    for name, size in (sizes or prep.FILES).items():
        with gzip.open(osp.join(folder, name + '.gz'), 'wb') as f:
            f.write(bytes(size))


def test_mistyped_src_dir_is_an_error_naming_it(tmp_path):
    out, src = tmp_path / 'out', tmp_path / 'fashoin-mnist'
    proc = subprocess.run([
        sys.executable, SCRIPT, '--out-dir',
        str(out), '--src-dir',
        str(src)
    ], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    err = proc.stderr
    assert f'--src-dir {src} does not exist' in err
    assert 'apt-get install dataset-fashion-mnist' in err
    assert '--download' in err
    # no download was tried: nothing written
    assert not out.exists() or not os.listdir(out)


def test_src_dir_lacking_files_names_them(tmp_path):
    src = tmp_path / 'src'
    fake_source(str(src), {'train-images-idx3-ubyte': 10})
    with pytest.raises(FileNotFoundError) as e:
        prep.prepare(str(tmp_path / 'out'), str(src))
    msg = str(e.value)
    assert f'--src-dir {src} lacks train-labels-idx1-ubyte.gz' in msg
    assert 'train-images-idx3-ubyte.gz' not in msg.split('lacks')[1].split(
        ';')[0]


def test_prepares_again_what_is_missing_or_truncated(tmp_path):
    src, out = tmp_path / 'src', tmp_path / 'out'
    fake_source(str(src))
    assert 'written to' in prep.prepare(str(out), str(src))
    assert prep.missing_files(str(out)) == []
    assert 'already in' in prep.prepare(str(out), str(src))
    # a truncated file and a deleted one (a stale stamp would skip these)
    with open(out / 't10k-labels-idx1-ubyte', 'wb') as f:
        f.write(b'\0' * 8)
    os.remove(out / 'train-images-idx3-ubyte')
    assert prep.missing_files(str(out)) == [
        'train-images-idx3-ubyte', 't10k-labels-idx1-ubyte'
    ]
    assert 'written to' in prep.prepare(str(out), str(src))
    assert prep.missing_files(str(out)) == []
    assert not [f for f in os.listdir(out) if f.endswith('.part')]


def test_source_of_wrong_sizes_is_an_error(tmp_path):
    src = tmp_path / 'src'
    fake_source(str(src), dict(prep.FILES, **{'t10k-labels-idx1-ubyte': 7}))
    with pytest.raises(FileNotFoundError, match='t10k-labels-idx1-ubyte'):
        prep.prepare(str(tmp_path / 'out'), str(src))
