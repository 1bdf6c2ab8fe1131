"""``projects.dense_vit.dense_vit`` imports as a regular package and, with
mmpretrain, mmdet or mmseg missing, stops with an ImportError that names
them and their pip requirements.

Each case runs in a fresh interpreter; a missing package is simulated by a
``sys.meta_path`` finder that refuses it, as Python does for a package that
is not installed.
"""
import json
import os
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = textwrap.dedent('''
    import json, sys

    class NotInstalled:
        """Refuses the given top-level packages, as if not installed."""

        def __init__(self, names):
            self.names = set(names)

        def find_spec(self, fullname, path=None, target=None):
            if fullname.split('.')[0] in self.names:
                raise ModuleNotFoundError(
                    f'No module named {fullname!r}', name=fullname)
            return None

    sys.meta_path.insert(0, NotInstalled(sys.argv[1].split(',')))
    try:
        import projects.dense_vit.dense_vit as dense_vit
    except ImportError as e:
        print(json.dumps(dict(error=type(e).__name__, message=str(e))))
    else:
        from mmdet.registry import MODELS as DET
        from mmseg.registry import MODELS as SEG
        print(json.dumps(dict(
            file=dense_vit.__file__,
            registered=[r.get('SimpleFeaturePyramid') is
                        dense_vit.SimpleFeaturePyramid for r in (DET, SEG)])))
''')


def _import(blocked, cwd=ROOT, pythonpath=None):
    env = dict(os.environ)
    if pythonpath is not None:
        env['PYTHONPATH'] = pythonpath
    out = subprocess.run(
        [sys.executable, '-c', SCRIPT, ','.join(blocked)], cwd=cwd, env=env,
        capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize('blocked, named, pip', [
    (['mmdet'], ['mmdet'], 'pip install mmdet==3.3.0`'),
    (['mmseg'], ['mmseg'], 'pip install mmsegmentation==1.2.2`'),
    (['mmpretrain', 'mmdet', 'mmseg'], ['mmpretrain', 'mmdet', 'mmseg'],
     'pip install mmpretrain==1.2.0 mmdet==3.3.0 mmsegmentation==1.2.2`'),
])
def test_missing_package_is_named_with_its_pip_requirement(
        blocked, named, pip):
    out = _import(blocked)
    assert out['error'] == 'ImportError', out
    message = out['message']
    assert f'projects.dense_vit needs {", ".join(named)}, not installed' \
        in message, message
    assert pip in message, message
    for name, requirement in (('mmpretrain', 'mmpretrain=='),
                              ('mmdet', 'mmdet=='),
                              ('mmseg', 'mmsegmentation==')):
        if name not in blocked:  # installed ones are not asked for
            assert requirement not in message, message


def test_installed_package_that_fails_its_own_import_says_so():
    """mmcv missing: mmpretrain is there but cannot import; the error says
    that, not that mmpretrain is missing."""
    out = _import(['mmcv'])
    assert out['error'] == 'ImportError', out
    assert out['message'].startswith(
        'projects.dense_vit: mmpretrain is installed but fails to import: '
        "No module named 'mmcv"), out['message']


def test_imports_from_anywhere_with_the_root_on_the_path(tmp_path):
    """From another directory, with the repository root on PYTHONPATH after
    a directory holding some other regular ``projects`` package (as a
    site-packages one would): ours is found and registers into mmdet and
    mmseg. As an implicit namespace package, ``projects`` would lose to
    that regular package wherever it stands on the path."""
    other = tmp_path / 'other'
    (other / 'projects').mkdir(parents=True)
    (other / 'projects' / '__init__.py').write_text('')
    out = _import([], cwd=str(tmp_path),
                  pythonpath=os.pathsep.join([ROOT, str(other)]))
    assert out['file'] == os.path.join(
        ROOT, 'projects', 'dense_vit', 'dense_vit', '__init__.py')
    assert out['registered'] == [True, True]
