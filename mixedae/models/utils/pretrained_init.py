"""``init_cfg=dict(type='Pretrained', ...)`` that cannot leave a ViT encoder
silently at random init."""
import fnmatch
from collections import OrderedDict
from typing import Optional, Sequence

from mmengine.logging import print_log
from mmengine.model.weight_init import PretrainedInit, update_init_info
from mmengine.registry import WEIGHT_INITIALIZERS
from mmpretrain.models.backbones import BEiTViT, VisionTransformer

from mixedae.utils.checkpoint import (PRETRAIN, TIMM, CheckpointError,
                                      checkpoint_layout, encoder_state_dict,
                                      load_checkpoint_safely, state_dict_of)

# The encoders checked: mmpretrain's plain ViT and BEiT's (mmseg's MAE
# recipe), and their subclasses (MAEViT, MixedAEViT, DeiT, ...).
CHECKED = (VisionTransformer, BEiTViT)
# In the model but never in a pre-trained encoder, so allowed to start from
# their own init: the norm after average pooling (`out_type='avg_featmap'`,
# MAE's fc_norm). Anything else fresh is declared in `allow_missing`.
FRESH_KEYS = ('ln2.*', )
# resized by the backbones' own load hooks (another image size)
RESIZED_ON_LOAD = ('pos_embed', '*relative_position_bias_table',
                   '*relative_position_index')
_CONFIG_KEY = 'model.backbone.init_cfg'


# Registered under mmengine's own name, in mmengine's root registry (so in
# the mmpretrain, mmseg and mmdet scopes alike): mmengine's BaseModule runs
# an init_cfg typed 'Pretrained' after the children's own init, and
# mmpretrain's VisionTransformer and BEiTViT skip re-drawing their pos_embed
# only for that type. Under another name the loaded weights would be
# overwritten.
@WEIGHT_INITIALIZERS.register_module(name='Pretrained', force=True)
class CheckedPretrainedInit(PretrainedInit):
    """mmengine's ``Pretrained`` initializer, checked for ViT encoders.

    For an mmpretrain ``VisionTransformer`` or ``BEiTViT`` (and their
    subclasses) it

    - accepts a raw MixedAE / MAE pre-training checkpoint and converts it
      on load as ``tools/model_converters/mixedae2vit.py`` does (our choice
      over refusing it: the result is the same tensors), and the official
      MAE / timm layout;
    - requires every tensor of the ViT in the checkpoint, except
      :data:`FRESH_KEYS` and ``allow_missing``, and equal shapes except
      :data:`RESIZED_ON_LOAD` (the ViT's load hooks resize them);
      otherwise it raises :class:`CheckpointError` naming the keys and
      ``model.backbone.init_cfg``.

    Any other module loads as with mmengine's ``PretrainedInit``.

    Args:
        checkpoint (str): checkpoint file or URL.
        prefix (str, optional): load only the keys under this prefix, with
            the prefix removed (e.g. ``'backbone.'``).
        map_location (str): where a remote checkpoint's tensors go.
        allow_missing (Sequence[str]): ``fnmatch`` patterns of ViT keys
            meant to start from their own init (e.g. BEiT's layer scale
            ``['layers.*.gamma_1', 'layers.*.gamma_2']``).
    """

    def __init__(self,
                 checkpoint: str,
                 prefix: Optional[str] = None,
                 map_location: str = 'cpu',
                 allow_missing: Sequence[str] = ()):
        super().__init__(checkpoint, prefix=prefix, map_location=map_location)
        if isinstance(allow_missing, str):
            allow_missing = [allow_missing]
        self.allow_missing = tuple(allow_missing)

    def __call__(self, module):
        if not isinstance(module, CHECKED):
            return super().__call__(module)
        state = self._encoder_state()
        self._check(module, state)
        print_log(f'load {type(module).__name__} from: {self.checkpoint}',
                  logger='current')
        try:
            unexpected = module.load_state_dict(state, strict=False)[1]
        except RuntimeError as e:  # a size a load hook could not resize
            raise CheckpointError(
                f'{self.checkpoint}: {" ".join(str(e).split())}') from None
        if unexpected:
            # by design, e.g. the pre-trained final norm `ln1` when the
            # fine-tuning model pools through `ln2` (final_norm=False)
            print_log(f'not used from {self.checkpoint}: '
                      f'{", ".join(unexpected)}', logger='current')
        if hasattr(module, '_params_init_info'):
            update_init_info(module, init_info=self._get_init_info())

    def _load(self):
        if '://' in str(self.checkpoint):  # URL, open-mmlab://, s3://, ...
            from mmengine.runner.checkpoint import _load_checkpoint
            return _load_checkpoint(
                self.checkpoint, map_location=self.map_location)
        return load_checkpoint_safely(self.checkpoint)

    def _encoder_state(self) -> 'OrderedDict':
        checkpoint = self._load()  # its errors name the file
        try:
            return self._encoder_of(checkpoint)
        except CheckpointError as e:
            raise CheckpointError(f'{self.checkpoint}: {e}') from None

    def _encoder_of(self, checkpoint) -> 'OrderedDict':
        state = state_dict_of(checkpoint)
        if self.prefix:
            prefix = self.prefix if self.prefix.endswith('.') else \
                self.prefix + '.'
            state = OrderedDict((k[len(prefix):], v)
                                for k, v in state.items()
                                if k.startswith(prefix))
            if not state:
                raise CheckpointError(
                    f'no key starts with `{prefix}` (set by '
                    f'`{_CONFIG_KEY}.prefix`).')
        layout = checkpoint_layout(state)
        if layout in (PRETRAIN, TIMM):
            print_log(f'{self.checkpoint}: {layout} layout, the encoder is '
                      'converted on load', logger='current')
            state = encoder_state_dict(state, layout)
        return state

    def _check(self, module, state):
        fresh = FRESH_KEYS + self.allow_missing
        expected = module.state_dict()
        missing = [
            k for k in expected if k not in state
            and not any(fnmatch.fnmatchcase(k, p) for p in fresh)
        ]
        if missing:
            shown = ', '.join(missing[:20])
            if len(missing) > 20:
                shown += f', ... ({len(missing) - 20} more)'
            found = ', '.join(list(state)[:3])
            raise CheckpointError(
                f'{self.checkpoint}: {len(missing)} of the {len(expected)} '
                f'tensors of the {type(module).__name__} are not in the '
                f'checkpoint: {shown} (its keys start: {found}). Check '
                f'`{_CONFIG_KEY}` (checkpoint, prefix), or list keys meant '
                f'to start fresh in `{_CONFIG_KEY}.allow_missing`.')
        wrong = []
        for key, value in expected.items():
            if key not in state or state[key].shape == value.shape:
                continue
            if any(fnmatch.fnmatchcase(key, p) for p in RESIZED_ON_LOAD):
                continue  # a load hook resizes it, or torch's load refuses
            wrong.append(f'{key} {tuple(state[key].shape)} in the checkpoint, '
                         f'{tuple(value.shape)} in the model')
        if wrong:
            raise CheckpointError(
                f'{self.checkpoint}: shapes differ from the '
                f'{type(module).__name__}\'s: {"; ".join(wrong)}. The '
                'checkpoint is of another architecture than '
                '`model.backbone` (arch, patch_size, in_channels).')
