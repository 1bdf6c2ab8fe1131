"""Loading pre-training checkpoints safely and converting them to backbone
checkpoints for the downstream libraries.

Three key layouts are understood:

- ``pretrain``: a MixedAE / MAE pre-training checkpoint of this toolbox or
  mmpretrain (``backbone.*`` encoder, ``neck.*`` decoder with its
  ``neck.mask_token``);
- ``mmpretrain``: mmpretrain ``VisionTransformer`` keys (``layers.N.ln1``,
  ``ffn.layers.0.0``, ...), what :func:`convert_to_vit` writes;
- ``timm``: the official MAE / timm / ViTDet keys (``blocks.N.norm1``,
  ``mlp.fc1``, ...), usually under ``model``.
"""
import importlib
import os
import os.path as osp
import pickle
import types
from collections import OrderedDict
from typing import Mapping, Optional

import torch
from mmpretrain.models.utils import resize_pos_embed

PRETRAIN, MMPRETRAIN, TIMM = 'pretrain', 'mmpretrain', 'timm'


class CheckpointError(ValueError):
    """A checkpoint that is not what the caller expected; the message is one
    line saying what was expected."""


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


class _Refused(pickle.UnpicklingError):
    """A global the restricted unpickler will not load."""


def _history_buffer_getattr(obj, name: str):
    """``getattr`` for the one use in mmengine checkpoints: HistoryBuffer's
    statistics methods, pickled as ``getattr(HistoryBuffer, 'mean')``."""
    from mmengine.logging import HistoryBuffer
    if obj is not HistoryBuffer:
        raise _Refused(
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
        raise _Refused(
            f'Refusing to load {key!r} from the checkpoint: it is not a '
            'tensor, container or known runner-state type, and unpickling it '
            'could run code. Load it yourself if you trust the file.')


def _restricted_load(file, **kwargs):
    # torch's legacy (non-zip) format reads its header with `load`
    return _RestrictedUnpickler(file, **kwargs).load()


_restricted_pickle = types.SimpleNamespace(
    Unpickler=_RestrictedUnpickler,
    load=_restricted_load,
    __name__='restricted_pickle')

_ZIP_MAGIC = b'PK\x03\x04'
# torch.save's legacy format starts with its magic number, pickled
_LEGACY_MAGIC = pickle.dumps(torch.serialization.MAGIC_NUMBER, protocol=2)
_EXPECTED_FILE = ('expected a file written by torch.save: a zip archive or '
                  'the legacy pickle format')


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def load_checkpoint_safely(path: str):
    """``torch.load`` without executing pickled code.

    Tries torch's ``weights_only`` loader first; mmengine checkpoints also
    hold runner state (message hub, numpy values), so on refusal it retries
    with an unpickler restricted to tensors, containers and those types.
    A file that is missing, not written by ``torch.save`` or cut short
    raises a one-line error naming it.
    """
    path = os.fspath(path)
    if not osp.isfile(path):
        # mmengine's wording, which the configs' placeholders rely on
        raise FileNotFoundError(
            f'{path} can not be found ({_EXPECTED_FILE}).')
    with open(path, 'rb') as f:
        head = f.read(len(_LEGACY_MAGIC))
    if not (head.startswith(_ZIP_MAGIC) or head == _LEGACY_MAGIC):
        found = f'it starts with {head[:8]!r}' if head else 'it is empty'
        raise CheckpointError(
            f'{path}: not a PyTorch checkpoint ({_EXPECTED_FILE}; {found}).')
    try:
        try:
            return torch.load(path, map_location='cpu', weights_only=True)
        except pickle.UnpicklingError:
            return torch.load(
                path, map_location='cpu', pickle_module=_restricted_pickle)
    except _Refused as e:
        raise pickle.UnpicklingError(f'{path}: {_one_line(e)}') from None
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, KeyError,
            ValueError, AttributeError, TypeError, IndexError) as e:
        # a zip without its central directory, a pickle cut short, ...
        raise CheckpointError(
            f'{path}: truncated or corrupt PyTorch checkpoint (expected a '
            f'complete torch.save file; torch: {_one_line(e)}).') from None


def _type_name(obj) -> str:
    cls = type(obj)
    if cls.__module__ == 'builtins':
        return cls.__name__
    return f'{cls.__module__}.{cls.__name__}'


def state_dict_of(checkpoint) -> 'OrderedDict':
    """The tensors of a loaded checkpoint: its ``state_dict`` or ``model``
    entry, or the checkpoint itself; DDP's ``module.`` prefix removed."""
    if not isinstance(checkpoint, Mapping):
        raise CheckpointError(
            'expected a dict (a state dict, or a checkpoint holding one '
            f'under `state_dict` or `model`), got a {_type_name(checkpoint)}.')
    state = checkpoint
    for key in ('state_dict', 'model'):
        if isinstance(checkpoint.get(key), Mapping):
            state = checkpoint[key]
            break
    tensors = OrderedDict(
        (k[len('module.'):] if k.startswith('module.') else k, v)
        for k, v in state.items() if isinstance(v, torch.Tensor))
    if not tensors:
        raise CheckpointError(
            'expected a state dict of tensors (itself or under `state_dict` '
            f'or `model`); found no tensors, keys: {_sample(state)}.')
    return tensors


def _sample(keys, n: int = 5) -> str:
    keys = [str(k) for k in keys]
    more = f', ... ({len(keys) - n} more)' if len(keys) > n else ''
    return ', '.join(keys[:n]) + more


# encoder parameters used only on mixed images, not by a plain ViT
MIXING_ONLY_KEYS = ('backbone.segment_embed', 'backbone.homo_bias',
                    'backbone.homo_bias_scale')


def checkpoint_layout(state: Mapping) -> Optional[str]:
    """``PRETRAIN``, ``MMPRETRAIN``, ``TIMM`` or None (see the module)."""
    if 'backbone.patch_embed.projection.weight' in state and \
            'neck.mask_token' in state:
        return PRETRAIN
    if 'patch_embed.projection.weight' in state:
        return MMPRETRAIN
    if 'patch_embed.proj.weight' in state and any(
            k.startswith('blocks.') for k in state):
        return TIMM
    return None


# mmpretrain VisionTransformer <-> timm / official MAE names: per block
# (`layers.N.` <-> `blocks.N.`) and outside the blocks. mmpretrain's
# TransformerEncoderLayer keeps timm's fused qkv, so attention is 1:1.
_BLOCK_KEYS = (('ln1.', 'norm1.'), ('attn.qkv.', 'attn.qkv.'),
               ('attn.proj.', 'attn.proj.'), ('ln2.', 'norm2.'),
               ('ffn.layers.0.0.', 'mlp.fc1.'), ('ffn.layers.1.', 'mlp.fc2.'))
_TOP_KEYS = (('patch_embed.projection.', 'patch_embed.proj.'),
             ('cls_token', 'cls_token'), ('pos_embed', 'pos_embed'),
             ('pre_norm.', 'norm_pre.'), ('ln1.', 'norm.'),
             ('ln2.', 'fc_norm.'))
# timm / official MAE entries that are not the encoder: the MAE decoder and
# mask token, a classifier head
_TIMM_NOT_ENCODER = ('decoder_', 'mask_token', 'head.')


def _rename(key: str, blocks: str, block_keys, top_keys) -> Optional[str]:
    src_blocks, dst_blocks = blocks
    if key.startswith(src_blocks):
        index, _, rest = key[len(src_blocks):].partition('.')
        if index.isdigit():
            for src, dst in block_keys:
                if rest.startswith(src):
                    return f'{dst_blocks}{index}.{dst}{rest[len(src):]}'
        return None
    for src, dst in top_keys:
        if key == src or (src.endswith('.') and key.startswith(src)):
            return dst + key[len(src):]
    return None


def _map_keys(state: Mapping, to_timm: bool) -> 'OrderedDict':
    if to_timm:
        blocks = ('layers.', 'blocks.')
        block_keys, top_keys = _BLOCK_KEYS, _TOP_KEYS
    else:
        blocks = ('blocks.', 'layers.')
        block_keys = tuple((b, a) for a, b in _BLOCK_KEYS)
        top_keys = tuple((b, a) for a, b in _TOP_KEYS)
        state = OrderedDict((k, v) for k, v in state.items()
                            if not k.startswith(_TIMM_NOT_ENCODER))
    out, unknown = OrderedDict(), []
    for key, value in state.items():
        new = _rename(key, blocks, block_keys, top_keys)
        if new is None:
            unknown.append(key)
        else:
            out[new] = value
    if unknown:
        src, dst = (MMPRETRAIN, TIMM) if to_timm else (TIMM, MMPRETRAIN)
        raise CheckpointError(
            f'expected a plain ViT encoder: {len(unknown)} {src} key(s) have '
            f'no {dst} name: {_sample(unknown, 10)}.')
    return out


def vit_to_timm(state: Mapping) -> 'OrderedDict':
    """mmpretrain ``VisionTransformer`` keys -> timm / official MAE keys
    (``timm.models.vision_transformer.VisionTransformer``)."""
    return _map_keys(state, to_timm=True)


def timm_to_vit(state: Mapping) -> 'OrderedDict':
    """timm / official MAE keys -> mmpretrain ``VisionTransformer`` keys; the
    MAE decoder, its mask token and a classifier head are dropped."""
    return _map_keys(state, to_timm=False)


def encoder_state_dict(state: Mapping, layout: str) -> 'OrderedDict':
    """The encoder of a state dict of ``layout`` (see
    :func:`checkpoint_layout`), as mmpretrain ``VisionTransformer`` keys."""
    if layout == PRETRAIN:
        # homologous attention has vanilla attention's parameters: the
        # encoder keys need no renaming; what only mixing uses (the segment
        # embedding, the homologous bias), the decoder, the head and the
        # data preprocessor are dropped
        return OrderedDict(
            (k[len('backbone.'):], v) for k, v in state.items()
            if k.startswith('backbone.') and k not in MIXING_ONLY_KEYS)
    if layout == TIMM:
        return timm_to_vit(state)
    if layout == MMPRETRAIN:
        return OrderedDict(state)
    raise CheckpointError(
        'not a MixedAE/MAE pre-training checkpoint: expected this toolbox\'s '
        'or mmpretrain\'s `backbone.patch_embed.projection.weight` and the '
        'decoder\'s `neck.mask_token`, the official MAE / timm '
        '`patch_embed.proj.weight` and `blocks.N.*` (under `model`), or '
        'mmpretrain ViT keys `patch_embed.projection.weight`; found keys '
        f'{_sample(state)}.')


def convert_to_vit(checkpoint,
                   img_size: Optional[int] = None) -> 'OrderedDict':
    """Keep the encoder of a MixedAE / MAE pre-training checkpoint as
    mmpretrain ``VisionTransformer`` keys.

    Accepts this toolbox's or mmpretrain's pre-training checkpoints, the
    official MAE / timm layout and an already converted checkpoint. The
    decoder (``neck``), the head, the data preprocessor and the segment
    embedding are dropped; the attention keys need no renaming (homologous
    attention has vanilla attention's parameters). The result loads into
    ``mmpretrain.VisionTransformer`` (also inside mmseg / mmdet configs by
    the ``mmpretrain.`` scope prefix) with no missing keys.

    Args:
        checkpoint (dict): a loaded checkpoint, with or without the
            ``state_dict`` / ``model`` level.
        img_size (int, optional): resize the position embedding to this
            input size (same patch size); None keeps it.
    """
    state = state_dict_of(checkpoint)
    vit = encoder_state_dict(state, checkpoint_layout(state))
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
