"""Plain-ViT adapters for mmdetection and mmsegmentation.

Importing this package (``custom_imports=dict(imports=[
'projects.dense_vit.dense_vit'])``, run from the repository root or with it
on ``PYTHONPATH``) registers, into both mmdet's and mmseg's registries:

- ``SimpleFeaturePyramid`` (MODELS): ViTDet-style strides 4/8/16/32 from a
  ViT's single stride-16 map;
- ``ViTLayerDecayOptimWrapperConstructor`` (OPTIM_WRAPPER_CONSTRUCTORS):
  layer-wise lr decay keyed on ``model.backbone.get_layer_depth``.
"""
from mmdet.registry import MODELS as MMDET_MODELS
from mmdet.registry import \
    OPTIM_WRAPPER_CONSTRUCTORS as MMDET_OPTIM_WRAPPER_CONSTRUCTORS
from mmseg.registry import MODELS as MMSEG_MODELS
from mmseg.registry import \
    OPTIM_WRAPPER_CONSTRUCTORS as MMSEG_OPTIM_WRAPPER_CONSTRUCTORS

from .layer_decay import ViTLayerDecayOptimWrapperConstructor
from .simple_feature_pyramid import SimpleFeaturePyramid

for _registry in (MMDET_MODELS, MMSEG_MODELS):
    _registry.register_module(module=SimpleFeaturePyramid, force=True)
for _registry in (MMDET_OPTIM_WRAPPER_CONSTRUCTORS,
                  MMSEG_OPTIM_WRAPPER_CONSTRUCTORS):
    _registry.register_module(
        module=ViTLayerDecayOptimWrapperConstructor, force=True)

__all__ = ['SimpleFeaturePyramid', 'ViTLayerDecayOptimWrapperConstructor']
