"""Frozen features of a ViT encoder: the encoder from any pre-training or
converted checkpoint (loaded strictly), batched extraction from an
mmengine dataloader with the ranks' shards gathered in dataset order, and a
feature cache on disk keyed by what the features depend on."""
import copy
import hashlib
import json
import os
import os.path as osp
import sys
from collections import OrderedDict
from typing import Mapping, Optional, Tuple

import torch
from torch import nn

from mixedae.utils.checkpoint import (CheckpointError, convert_to_vit,
                                      load_checkpoint_safely)

# `cls`: the cls token, `avg`: the mean patch token, both after the
# pre-trained final norm
FEATURES = ('cls', 'avg')
# mmpretrain's pooling norm after the patch average (MAE's fc_norm): a
# fine-tuned checkpoint may hold it, frozen features do not use it
POOLING_NORM_KEYS = ('ln2.weight', 'ln2.bias')


def load_vit_checkpoint(path: str) -> 'OrderedDict':
    """The encoder of a checkpoint file as mmpretrain ``VisionTransformer``
    keys: a MixedAE / MAE pre-training checkpoint (converted here, as
    ``tools/model_converters/mixedae2vit.py`` does), the official MAE /
    timm layout, or an already converted one. Loaded without running
    pickled code."""
    return convert_to_vit(load_checkpoint_safely(path))


def load_encoder_strictly(backbone: nn.Module, state: Mapping) -> None:
    """Load ``state`` into ``backbone``; every encoder key must be there
    with its shape (the position embedding is resized by mmpretrain's load
    hook), and nothing but the unused pooling norm may be left over.

    Raises:
        CheckpointError: naming the missing, mismatched and unexpected keys.
    """
    expected = backbone.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [
        k for k in state if k not in expected and k not in POOLING_NORM_KEYS
    ]
    mismatched = [
        f'{k} {tuple(state[k].shape)} vs {tuple(v.shape)}'
        for k, v in expected.items() if k in state and k != 'pos_embed'
        and state[k].shape != v.shape
    ]
    problems = []
    for what, keys in (('missing encoder keys', missing),
                       ('shape mismatches (checkpoint vs model)', mismatched),
                       ('keys the model has no place for', unexpected)):
        if keys:
            more = f' ... ({len(keys) - 8} more)' if len(keys) > 8 else ''
            problems.append(f'{what}: {", ".join(keys[:8])}{more}')
    if problems:
        raise CheckpointError(
            'does not fit the config\'s model.backbone (' +
            '; '.join(problems) + ').')
    backbone.load_state_dict({k: state[k] for k in expected}, strict=True)


class FrozenViT(nn.Module):
    """A data preprocessor and an mmpretrain ViT giving one feature per
    image, without gradients.

    Args:
        backbone: an mmpretrain ``VisionTransformer`` built with
            ``out_type='raw'`` and ``final_norm=True``.
        data_preprocessor: e.g. mmpretrain's ``ClsDataPreprocessor``.
        feature (str): ``'cls'`` (the cls token) or ``'avg'`` (the mean patch
            token), both after the final norm.
    """

    def __init__(self, backbone: nn.Module, data_preprocessor: nn.Module,
                 feature: str = 'cls'):
        super().__init__()
        if feature not in FEATURES:
            raise ValueError(f'feature={feature!r}: expected one of '
                             f'{FEATURES}.')
        if getattr(backbone, 'out_type', None) != 'raw':
            raise ValueError('the backbone must be built with '
                             "out_type='raw' (all tokens).")
        if feature == 'cls' and getattr(backbone, 'cls_token', None) is None:
            raise ValueError("feature='cls' needs a backbone with a cls "
                             "token (with_cls_token=True); use 'avg'.")
        self.backbone = backbone
        self.data_preprocessor = data_preprocessor
        self.feature = feature
        self.eval()

    @torch.no_grad()
    def forward(self, data: dict) -> Tuple[torch.Tensor, torch.Tensor]:
        """A collated batch -> (B, C) features and (B,) labels, on the
        module's device."""
        data = self.data_preprocessor(data, False)
        tokens = self.backbone(data['inputs'])[-1]  # (B, extra + N, C)
        if self.feature == 'cls':
            feats = tokens[:, 0]
        else:
            feats = tokens[:, self.backbone.num_extra_tokens:].mean(dim=1)
        samples = data.get('data_samples') or []
        if len(samples) != len(feats) or not all(
                'gt_label' in s for s in samples):
            raise ValueError('the dataset gives no `gt_label` per image: '
                             'frozen evaluation needs labelled splits.')
        labels = torch.cat([s.gt_label.reshape(-1) for s in samples])
        if len(labels) != len(feats):
            raise ValueError('expected one `gt_label` per image (single-'
                             'label classification).')
        return feats.float(), labels.to(feats.device)

    def to(self, *args, **kwargs):
        # mmengine's data preprocessors keep their own device (what they
        # cast batches to): nn.Module.to would move only their buffers
        self.data_preprocessor.to(*args, **kwargs)
        return super().to(*args, **kwargs)


def build_frozen_vit(backbone_cfg: Mapping,
                     data_preprocessor_cfg: Optional[Mapping],
                     state: Mapping,
                     feature: str = 'cls') -> FrozenViT:
    """``FrozenViT`` from an mmpretrain backbone config (e.g. a downstream
    config's ``model.backbone``) and a ViT state dict (see
    :func:`load_vit_checkpoint`), loaded by :func:`load_encoder_strictly`.

    The backbone returns all tokens after its final norm
    (``out_type='raw'``, ``final_norm=True``, the last layer) and loads
    nothing itself (``init_cfg=None``): the weights are ``state``; it is
    in eval mode and used without gradients (``frozen_stages`` dropped).
    ``data_preprocessor_cfg`` without a type is mmpretrain's
    ``ClsDataPreprocessor``, as in ``ImageClassifier``.
    """
    from mmpretrain.models import VisionTransformer
    from mmpretrain.registry import MODELS
    cfg = dict(copy.deepcopy(backbone_cfg))
    cfg.update(out_type='raw', final_norm=True, out_indices=-1,
               init_cfg=None)
    # nothing is trained here; a linear-probe config's frozen_stages (12)
    # would only fail on a shallower encoder
    cfg.pop('frozen_stages', None)
    backbone = MODELS.build(cfg)
    if not isinstance(backbone, VisionTransformer):
        raise ValueError(
            f'model.backbone is a {type(backbone).__name__}: frozen '
            'evaluation takes an mmpretrain VisionTransformer.')
    load_encoder_strictly(backbone, state)
    pre = dict(copy.deepcopy(data_preprocessor_cfg or {}))
    pre.setdefault('type', 'ClsDataPreprocessor')
    return FrozenViT(backbone, MODELS.build(pre), feature)


def first_occurrence(index: torch.Tensor) -> torch.Tensor:
    """Bool mask of the first occurrence of each value of a 1-d tensor."""
    order = torch.argsort(index, stable=True)
    first = torch.ones_like(index, dtype=torch.bool)
    first[1:] = index[order][1:] != index[order][:-1]
    mask = torch.empty_like(first)
    mask[order] = first
    return mask


@torch.no_grad()
def extract_features(model: nn.Module, dataloader,
                     progress: bool = True
                     ) -> Optional[Tuple[torch.Tensor, torch.Tensor]]:
    """Features and labels of every sample of ``dataloader.dataset``, in
    dataset order, on rank 0 (CPU, float32); None on the other ranks.

    ``model`` maps a collated batch to (B, C) features and (B,) labels (e.g.
    :class:`FrozenViT`, on the device the batch should go to). Each rank
    runs its shard: ``dataloader.sampler`` must not shuffle and must give
    every rank as many samples (mmengine's ``DefaultSampler`` with
    ``shuffle=False, round_up=True``), so that the per-batch all-gather
    lines up. The samples that sampler repeats to even out the shards are
    dropped; a sample no rank saw is an error.
    """
    from mmengine.dist import all_gather, get_rank, get_world_size
    from mmengine.utils import ProgressBar
    rank, world = get_rank(), get_world_size()
    num = len(dataloader.dataset)
    # which dataset index each of this rank's samples is, in loader order
    local_index = torch.as_tensor(list(dataloader.sampler), dtype=torch.long)
    feats = labels = filled = None
    bar = ProgressBar(len(dataloader), file=sys.stdout) \
        if progress and rank == 0 else None
    start = 0
    for data in dataloader:
        f, y = model(data)
        index = local_index[start:start + len(f)].to(f.device)
        start += len(f)
        if world > 1:  # DINO's way: gather per batch, keep on rank 0
            f, y, index = (torch.cat(all_gather(t)) for t in (f, y, index))
        if rank == 0:
            f, y, index = f.cpu(), y.cpu(), index.cpu()
            if feats is None:
                feats = torch.empty(num, f.shape[1], dtype=torch.float32)
                labels = torch.empty(num, dtype=torch.long)
                filled = torch.zeros(num, dtype=torch.bool)
            keep = first_occurrence(index) & ~filled[index]
            feats[index[keep]] = f[keep]
            labels[index[keep]] = y[keep].long()
            filled[index[keep]] = True
        if bar is not None:
            bar.update()
    if bar is not None:
        sys.stdout.write('\n')
    if start != len(local_index):
        raise RuntimeError(f'the loader gave {start} samples, its sampler '
                           f'{len(local_index)}: is drop_last set?')
    if rank != 0:
        return None
    if filled is None or not filled.all():
        lost = (~filled).nonzero().flatten().tolist() if filled is not None \
            else list(range(num))
        raise RuntimeError(
            f'{len(lost)} of {num} samples were extracted by no rank (first: '
            f'{lost[:5]}): the sampler must cover the dataset.')
    return feats, labels


def file_digest(path: str) -> str:
    """SHA-256 of a file's content (checkpoints: a copied or touched file
    keeps its cache, a rewritten one does not)."""
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 24), b''):
            digest.update(block)
    return digest.hexdigest()


def feature_key(**parts) -> str:
    """A hex key of JSON-able ``parts`` (configs as dicts, digests)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


class FeatureCache:
    """Extracted features on disk: one file per split and key,
    ``{root}/{split}-{key[:16]}.pth`` with the features, labels and the
    description the key was made from (``meta``)."""

    def __init__(self, root: str):
        self.root = root

    def path(self, split: str, key: str) -> str:
        return osp.join(self.root, f'{split}-{key[:16]}.pth')

    def load(self, split: str, key: str
             ) -> Optional[Tuple[torch.Tensor, torch.Tensor]]:
        """(features, labels), or None when not cached (or unreadable:
        then it is extracted again and rewritten)."""
        path = self.path(split, key)
        if not osp.isfile(path):
            return None
        try:
            entry = torch.load(path, map_location='cpu', weights_only=True)
        except Exception as e:  # noqa: BLE001  (a cut file is a miss)
            print(f'Ignoring the unreadable feature cache {path}: {e}')
            return None
        if entry.get('key') != key:
            return None
        return entry['feats'], entry['labels']

    def save(self, split: str, key: str, feats: torch.Tensor,
             labels: torch.Tensor, meta: Optional[dict] = None) -> str:
        """Write atomically (a run killed while saving leaves no half
        file); returns the path."""
        os.makedirs(self.root, exist_ok=True)
        path = self.path(split, key)
        tmp = f'{path}.tmp{os.getpid()}'
        torch.save(
            dict(key=key, feats=feats, labels=labels,
                 meta=json.dumps(meta or {}, sort_keys=True, default=str)),
            tmp)
        os.replace(tmp, path)
        return path
