"""Layer-wise lr decay for detectors / segmentors with a ViT backbone."""
from functools import partial

from mmpretrain.engine.optimizers import \
    LearningRateDecayOptimWrapperConstructor


class ViTLayerDecayOptimWrapperConstructor(
        LearningRateDecayOptimWrapperConstructor):
    """mmpretrain's layer-decay constructor for any model whose *backbone*
    knows its layer depths (mmpretrain ``VisionTransformer`` does).

    mmpretrain's constructor needs ``model.get_layer_depth``, which only its
    classifiers have; mmseg's ``LayerDecayOptimizerConstructor`` and mmdet's
    ``LearningRateDecayOptimizerConstructor`` select the rule by the
    backbone's class name (BEiT/MAE/ConvNeXt) and raise
    ``NotImplementedError`` for ``VisionTransformer``. This one uses
    ``model.backbone.get_layer_depth(name, prefix='backbone.')``: patch
    embedding, cls token and position embedding at depth 0, layer i at
    depth i + 1, everything outside the backbone (neck, heads) at the top,
    lr scale ``layer_decay_rate ** (num_layers + 1 - depth)``.
    ``paramwise_cfg`` keys are mmpretrain's (``layer_decay_rate``,
    ``norm_decay_mult``, ``bias_decay_mult``, ``flat_decay_mult``,
    ``custom_keys`` with ``decay_mult``).
    """

    def add_params(self, params, module, prefix='', get_layer_depth=None,
                   **kwargs):
        if get_layer_depth is None and not hasattr(module, 'get_layer_depth'):
            backbone = getattr(module, 'backbone', None)
            if not hasattr(backbone, 'get_layer_depth'):
                raise TypeError(
                    f'{type(self).__name__} needs `model.backbone` with a '
                    '`get_layer_depth(name, prefix)` method (e.g. '
                    'mmpretrain.VisionTransformer); the model\'s backbone is '
                    f'{type(backbone).__name__}.')
            get_layer_depth = partial(
                backbone.get_layer_depth, prefix='backbone.')
        super().add_params(
            params, module, prefix=prefix, get_layer_depth=get_layer_depth,
            **kwargs)
