"""Plain-ViT adapters for mmdetection and mmsegmentation.

Importing this package (``custom_imports=dict(imports=[
'projects.dense_vit.dense_vit'])``, with the repository root on
``sys.path``: ``tools/*.py`` and ``tools/*.sh`` put it there) registers,
into both mmdet's and mmseg's registries:

- ``SimpleFeaturePyramid`` (MODELS): ViTDet-style strides 4/8/16/32 from a
  ViT's single stride-16 map;
- ``ViTLayerDecayOptimWrapperConstructor`` (OPTIM_WRAPPER_CONSTRUCTORS):
  layer-wise lr decay keyed on ``model.backbone.get_layer_depth``.

Without mmpretrain, mmdet or mmseg it raises an ``ImportError`` naming the
missing packages and their pip requirements.
"""
import importlib

# (import name, pip requirement): what this package builds on
REQUIREMENTS = (
    ('mmpretrain', 'mmpretrain==1.2.0'),
    ('mmdet', 'mmdet==3.3.0'),
    ('mmseg', 'mmsegmentation==1.2.2'),
)


def _import_requirements():
    missing = []
    for name, requirement in REQUIREMENTS:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name != name:  # installed, but it cannot import its own
                raise ImportError(
                    f'projects.dense_vit: {name} is installed but fails to '
                    f'import: {e}') from e
            missing.append((name, requirement))
    if missing:
        names = ', '.join(name for name, _ in missing)
        pip = ' '.join(requirement for _, requirement in missing)
        raise ImportError(
            f'projects.dense_vit needs {names}, not installed: it registers '
            'SimpleFeaturePyramid and ViTLayerDecayOptimWrapperConstructor '
            'into mmdet\'s and mmseg\'s registries and builds on mmpretrain. '
            f'Install with `pip install {pip}` (or `pip install -r '
            'requirements/mminstall.txt`).')


_import_requirements()  # before anything below imports them

from .layer_decay import ViTLayerDecayOptimWrapperConstructor  # noqa: E402
from .simple_feature_pyramid import SimpleFeaturePyramid  # noqa: E402


def _register():
    from mmdet.registry import MODELS as DET_MODELS
    from mmdet.registry import OPTIM_WRAPPER_CONSTRUCTORS as DET_CONSTRUCTORS
    from mmseg.registry import MODELS as SEG_MODELS
    from mmseg.registry import OPTIM_WRAPPER_CONSTRUCTORS as SEG_CONSTRUCTORS
    for registry in (DET_MODELS, SEG_MODELS):
        registry.register_module(module=SimpleFeaturePyramid, force=True)
    for registry in (DET_CONSTRUCTORS, SEG_CONSTRUCTORS):
        registry.register_module(
            module=ViTLayerDecayOptimWrapperConstructor, force=True)


_register()

__all__ = ['SimpleFeaturePyramid', 'ViTLayerDecayOptimWrapperConstructor']
