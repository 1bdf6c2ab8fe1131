"""Loading pre-training checkpoints safely and converting them to backbone
checkpoints for the downstream libraries."""
import importlib
import pickle
import types
from collections import OrderedDict
from typing import Optional

import torch
from mmpretrain.models.utils import resize_pos_embed

# What an mmengine checkpoint holds beyond tensors (runner state, message
# hub), on top of torch's own weights-only allowlist (_codecs.encode is how
# pickle stores numpy's raw bytes). Nothing here runs code
# when unpickled: plain containers, numpy arrays/scalars and mmengine's
# HistoryBuffer (restored through its __dict__).
_EXTRA_SAFE_GLOBALS = {
    'collections.defaultdict', 'collections.OrderedDict', 'builtins.set',
    'builtins.frozenset', 'builtins.slice', 'builtins.complex',
    'numpy.core.multiarray._reconstruct', 'numpy.core.multiarray.scalar',
    'numpy.ndarray', 'numpy.dtype', '_codecs.encode',
    'mmengine.logging.history_buffer.HistoryBuffer',
    'torch._utils._rebuild_tensor_v2', 'torch._utils._rebuild_parameter',
    'torch.device'
}


def _history_buffer_getattr(obj, name: str):
    """``getattr`` for the one use in mmengine checkpoints: HistoryBuffer's
    statistics methods, pickled as ``getattr(HistoryBuffer, 'mean')``."""
    from mmengine.logging import HistoryBuffer
    if obj is not HistoryBuffer:
        raise pickle.UnpicklingError(
            f'Refusing getattr({obj!r}, {name!r}) in the checkpoint.')
    return getattr(obj, name)


class _RestrictedUnpickler(pickle.Unpickler):

    def find_class(self, module: str, name: str):
        from torch._weights_only_unpickler import _get_allowed_globals
        key = f'{module}.{name}'
        if key in ('builtins.getattr', '__builtin__.getattr'):
            return _history_buffer_getattr
        allowed = _get_allowed_globals()
        if key in allowed:
            return allowed[key]
        if key in _EXTRA_SAFE_GLOBALS:
            return getattr(importlib.import_module(module), name)
        raise pickle.UnpicklingError(
            f'Refusing to load {key!r} from the checkpoint: it is not a '
            'tensor, container or known runner-state type, and unpickling it '
            'could run code. Load it yourself if you trust the file.')


_restricted_pickle = types.SimpleNamespace(
    Unpickler=_RestrictedUnpickler, load=None, __name__='restricted_pickle')


def load_checkpoint_safely(path: str) -> dict:
    """``torch.load`` without executing pickled code.

    Tries torch's ``weights_only`` loader first; mmengine checkpoints also
    hold runner state (message hub, numpy values), so on refusal it retries
    with an unpickler restricted to tensors, containers and those types.
    """
    try:
        return torch.load(path, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError:
        return torch.load(
            path, map_location='cpu', pickle_module=_restricted_pickle)


def convert_to_vit(checkpoint: dict,
                   img_size: Optional[int] = None) -> 'OrderedDict':
    """Keep the encoder of a MixedAE / MAE pre-training checkpoint as
    mmpretrain ``VisionTransformer`` keys.

    The decoder (``neck``), the head, the data preprocessor and the segment
    embedding are dropped; the attention keys need no renaming (homologous
    attention has vanilla attention's parameters). The result loads into
    ``mmpretrain.VisionTransformer`` (also inside mmseg / mmdet configs by
    the ``mmpretrain.`` scope prefix) with no missing keys.

    Args:
        checkpoint (dict): a loaded checkpoint, with or without the
            ``state_dict`` level.
        img_size (int, optional): resize the position embedding to this
            input size (same patch size); None keeps it.
    """
    state = checkpoint.get('state_dict', checkpoint)
    if not isinstance(state, dict) or not (
            'backbone.patch_embed.projection.weight' in state
            and 'neck.mask_token' in state):
        raise ValueError(
            'Not a MixedAE/MAE pre-training checkpoint of this toolbox or '
            'mmpretrain: expected `backbone.patch_embed.projection.weight` '
            'and the decoder\'s `neck.mask_token` in its state dict.')
    vit = OrderedDict((k[len('backbone.'):], v) for k, v in state.items()
                      if k.startswith('backbone.')
                      and k != 'backbone.segment_embed')
    if img_size is not None:
        patch = vit['patch_embed.projection.weight'].shape[-1]
        if img_size % patch:
            raise ValueError(f'`img_size`={img_size} is not divisible by the '
                             f'checkpoint\'s patch size {patch}.')
        pos = vit['pos_embed']
        old = round((pos.shape[1] - 1)**.5)
        new = img_size // patch
        vit['pos_embed'] = resize_pos_embed(
            pos, (old, old), (new, new), mode='bicubic', num_extra_tokens=1)
    return vit
