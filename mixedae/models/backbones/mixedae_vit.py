"""MixedAE encoder: a ViT over symmetrically mixed images."""
from typing import Dict, List, Optional, Sequence, Tuple, Union

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model.weight_init import trunc_normal_
from mmpretrain.models.selfsup.mae import MAEViT
from mmpretrain.registry import MODELS

from ...utils.mixing import check_mix_ratio, mix_images, random_mixing_masks
from ..utils.homologous_attention import (HomologousAttention,
                                          precision_from_counts)


@MODELS.register_module()
class MixedAEViT(MAEViT):
    """Vision Transformer encoder for MixedAE pre-training.

    With ``mask=True`` (pre-training) the batch is split into groups of
    G = 1 / ``mix_ratio`` consecutive images; each group is mixed into
    ``num_views`` images (symmetric mixing, cyclic views), a learnable
    segment embedding marks each patch's source slot, and the layers in
    ``homo_layers`` use homologous attention (top-``homo_topk``). With
    ``mask=None`` it is a plain :class:`VisionTransformer` (vanilla attention
    everywhere, no segment embedding), and its state dict minus
    ``segment_embed`` loads into one.

    The sin-cos position embedding and the weight init are MAE's (the
    parent :class:`MAEViT`).

    Args:
        arch, img_size, patch_size, out_indices, drop_rate, drop_path_rate,
            norm_cfg, final_norm, out_type, interpolate_mode, patch_cfg,
            layer_cfgs, init_cfg: as in :class:`MAEViT`.
        mix_ratio (float): r; each source fills r * N patches of a mixed
            image. 1 / r must be an integer >= 2. Defaults to 0.25, the same
            visible budget per source as MAE's 75% masking.
        num_views (int): V, mixed views per group (MixedAE-Full for V > 1),
            in [1, G]. Defaults to 1.
        segment_embed (str, optional): where the learnable per-slot
            segment embedding goes: ``'tokens'`` adds it to every patch
            token at the input (MixMIM's mix embedding, our reading of the
            paper), ``'attention'`` adds it only to the query and key
            inputs of the homologous-attention layers (it steers the top-k
            selection but never enters the residual stream, so the output
            features carry no source label), None for none. See
            ``docs/homologous_recognition.md``. Defaults to ``'tokens'``.
        segment_embed_std (float): std of the segment embedding's
            truncated-normal init. Defaults to 0.02 (the position and cls
            tokens' scale in ViTs).
        homo_layers (str | Sequence[int]): layers using homologous attention:
            ``'all'`` or a list of indices (``[]`` for none, the naive mixing
            baseline). Defaults to ``'all'``.
        homo_topk (int, optional): keys kept per query; defaults to
            K = r * N, one source's patch count.
        homo_bias (float, optional): give every homologous-attention layer
            a learnable, non-negative bias per head, added to the logits of
            the keys from the query's own source, starting at this value
            (kept >= 0 by a softplus, so it can favour the own source or
            fade to 0, never favour the others); None for none. See
            ``docs/homologous_recognition.md``. Defaults to None.
        homo_bias_drop (float): during training, the share of mixed images
            of every batch that get no homologous bias (drawn per image), so
            that the encoder must recognise their sources from content.
            Needs ``homo_bias``. Defaults to 0.
        homo_bias_anneal (float, optional): scale the homologous bias by a
            factor falling linearly from 1 at the start of training to 0 at
            this fraction of it (in (0, 1]), 0 after: a hint the encoder
            has to replace by content. The training progress comes from
            :class:`MixedAEHook`; the factor is a buffer
            (``homo_bias_scale``), saved with the checkpoints. Needs
            ``homo_bias``. Defaults to None (a constant factor of 1).
        recognition_weight (float, optional): weight of the attention
            recognition loss (``loss_recog``,
            :func:`~mixedae.models.utils.homologous_attention.recognition_loss`),
            averaged over the homologous-attention layers: it trains every
            layer's content logits (no bias, no segment embedding) to put
            their attention on the query's own source. None for none.
        homocon_layer (int): the layer whose output patch tokens are
            returned for HomoCon: -1 (or the last index) for the encoder's
            final, normalised output; an earlier index for that layer's
            raw output. Defaults to -1.
    """

    def __init__(self,
                 arch: Union[str, dict] = 'b',
                 img_size: int = 224,
                 patch_size: int = 16,
                 out_indices: Union[Sequence, int] = -1,
                 drop_rate: float = 0,
                 drop_path_rate: float = 0,
                 norm_cfg: dict = dict(type='LN', eps=1e-6),
                 final_norm: bool = True,
                 out_type: str = 'raw',
                 interpolate_mode: str = 'bicubic',
                 patch_cfg: dict = dict(),
                 layer_cfgs: dict = dict(),
                 mix_ratio: float = 0.25,
                 num_views: int = 1,
                 segment_embed: Optional[str] = 'tokens',
                 segment_embed_std: float = 0.02,
                 homo_layers: Union[str, Sequence[int]] = 'all',
                 homo_topk: Optional[int] = None,
                 homo_bias: Optional[float] = None,
                 homo_bias_drop: float = 0.,
                 homo_bias_anneal: Optional[float] = None,
                 recognition_weight: Optional[float] = None,
                 homocon_layer: int = -1,
                 init_cfg: Optional[Union[List[dict], dict]] = None) -> None:
        for name, size in (('img_size', img_size), ('patch_size', patch_size)):
            if not isinstance(size, int):
                raise TypeError(f'`{name}` must be an int (square images and '
                                f'patches), got {size!r}.')
        if img_size % patch_size:
            raise ValueError(
                f'`img_size`={img_size} is not divisible by '
                f'`patch_size`={patch_size}.')
        super().__init__(
            arch=arch,
            img_size=img_size,
            patch_size=patch_size,
            out_indices=out_indices,
            drop_rate=drop_rate,
            drop_path_rate=drop_path_rate,
            norm_cfg=norm_cfg,
            final_norm=final_norm,
            out_type=out_type,
            interpolate_mode=interpolate_mode,
            patch_cfg=patch_cfg,
            layer_cfgs=layer_cfgs,
            mask_ratio=1 - mix_ratio,  # unused: the visible share per source
            init_cfg=init_cfg)
        self.patch_size = patch_size
        self.in_channels = self.patch_embed.projection.in_channels

        self.group_size = check_mix_ratio(mix_ratio, self.num_patches)
        self.mix_ratio = mix_ratio
        if not (isinstance(num_views, int)
                and 1 <= num_views <= self.group_size):
            raise ValueError(
                f'`num_views` must be an int in [1, G={self.group_size}] '
                f'(G = 1 / mix_ratio), got {num_views!r}.')
        self.num_views = num_views

        if segment_embed not in self.SEGMENT_EMBED_MODES:
            raise ValueError(
                f'`segment_embed` must be one of '
                f'{self.SEGMENT_EMBED_MODES}, got {segment_embed!r}.')
        self.segment_embed_mode = segment_embed
        if not segment_embed_std > 0:
            raise ValueError('`segment_embed_std` must be positive, got '
                             f'{segment_embed_std!r}.')
        self.segment_embed_std = segment_embed_std
        if segment_embed is not None:
            self.segment_embed = nn.Parameter(
                torch.zeros(self.group_size, self.embed_dims))

        self.homo_layers = self._parse_homo_layers(homo_layers)
        num_tokens = self.num_patches + self.num_extra_tokens
        self.homo_topk = (self.num_patches // self.group_size
                          if homo_topk is None else homo_topk)
        if not (isinstance(self.homo_topk, int)
                and 1 <= self.homo_topk <= num_tokens):
            raise ValueError(
                f'`homo_topk` must be an int in [1, {num_tokens}] (the '
                f'tokens per mixed image, N + cls), got {homo_topk!r}.')
        if segment_embed == 'attention' and not self.homo_layers:
            raise ValueError(
                "`segment_embed`='attention' enters the homologous-attention "
                'layers only, and `homo_layers` is empty: use None.')
        for i in self.homo_layers:
            self.layers[i].attn = self._homologous_like(self.layers[i].attn)
        self.homo_bias_init = homo_bias
        if homo_bias is not None:
            if not (isinstance(homo_bias, (int, float)) and homo_bias > 0
                    and self.homo_layers):
                raise ValueError(
                    '`homo_bias` must be a positive number (the initial '
                    'bias) with homologous-attention layers (`homo_layers`),'
                    f' got {homo_bias!r}.')
            # raw values; the bias is softplus(raw) >= 0: (layers, heads)
            self.homo_bias = nn.Parameter(torch.full(
                (len(self.homo_layers), self.layers[0].attn.num_heads),
                math.log(math.expm1(homo_bias))))
        self._check_bias_schedule(homo_bias, homo_bias_drop, homo_bias_anneal)
        self.homo_bias_drop = homo_bias_drop
        self.homo_bias_anneal = homo_bias_anneal
        if homo_bias_anneal is not None:
            self.register_buffer('homo_bias_scale', torch.ones(()))
        self._progress: Optional[float] = None
        if recognition_weight is not None and not (
                isinstance(recognition_weight, (int, float))
                and recognition_weight > 0 and self.homo_layers):
            raise ValueError(
                '`recognition_weight` must be a positive number with '
                'homologous-attention layers (`homo_layers`) or None, got '
                f'{recognition_weight!r}.')
        self.recognition_weight = recognition_weight
        # the weighted loss of the last training forward (with its graph)
        self.recognition_loss: Optional[torch.Tensor] = None
        if not (isinstance(homocon_layer, int)
                and -self.num_layers <= homocon_layer < self.num_layers):
            raise ValueError(
                f'`homocon_layer` must be a layer index in '
                f'[-{self.num_layers}, {self.num_layers}), got '
                f'{homocon_layer!r}.')
        self.homocon_layer = homocon_layer % self.num_layers

    SEGMENT_EMBED_MODES = ('tokens', 'attention', None)

    @staticmethod
    def _check_bias_schedule(homo_bias, drop, anneal) -> None:
        if not (isinstance(drop, (int, float)) and 0 <= drop < 1):
            raise ValueError(
                f'`homo_bias_drop` must be in [0, 1), got {drop!r}.')
        if anneal is not None and not (isinstance(anneal, (int, float))
                                       and 0 < anneal <= 1):
            raise ValueError('`homo_bias_anneal` must be a fraction of '
                             f'training in (0, 1] or None, got {anneal!r}.')
        if homo_bias is None and (drop or anneal is not None):
            raise ValueError(
                '`homo_bias_drop` and `homo_bias_anneal` act on the '
                'homologous bias: set `homo_bias` too.')

    def set_progress(self, progress: float) -> None:
        """The share of training done, in [0, 1] (set by
        :class:`MixedAEHook` before every iteration): updates the
        annealed bias factor."""
        self._progress = progress
        if self.homo_bias_anneal is not None:
            self.homo_bias_scale.fill_(
                max(0., 1. - progress / self.homo_bias_anneal))

    @property
    def has_source_cue(self) -> bool:
        """Whether a mixed forward gets any source information besides the
        content: a segment embedding or a non-zero homologous bias."""
        if self.segment_embed_mode is not None:
            return True
        if self.homo_bias_init is None:
            return False
        return self.homo_bias_anneal is None or \
            bool(self.homo_bias_scale > 0)

    def _homo_bias(self, num_images: int) -> Optional[torch.Tensor]:
        """The homologous bias: (layers, heads), or (layers, images, heads)
        with ``homo_bias_drop`` in training."""
        if self.homo_bias_init is None:
            return None
        bias = F.softplus(self.homo_bias)  # (layers, heads) >= 0
        if self.homo_bias_anneal is not None:
            if self.training and self._progress is None:
                raise RuntimeError(
                    '`model.backbone.homo_bias_anneal` needs the training '
                    'progress from MixedAEHook (`default_hooks.mixedae`).')
            bias = bias * self.homo_bias_scale
        if self.training and self.homo_bias_drop > 0:
            keep = torch.rand(num_images, device=bias.device) >= \
                self.homo_bias_drop  # (images,)
            bias = bias[:, None] * keep[None, :, None].to(bias.dtype)
        return bias

    def _parse_homo_layers(self, homo_layers) -> List[int]:
        if homo_layers == 'all':
            return list(range(self.num_layers))
        if isinstance(homo_layers, str) or not all(
                isinstance(i, int) for i in homo_layers):
            raise ValueError("`homo_layers` must be 'all' or a list of layer "
                             f'indices, got {homo_layers!r}.')
        layers = sorted({i % self.num_layers for i in homo_layers
                         if -self.num_layers <= i < self.num_layers})
        if len(layers) != len(set(homo_layers)):
            raise ValueError(
                f'`homo_layers`={list(homo_layers)} has indices outside the '
                f'{self.num_layers} layers or repeats a layer.')
        return layers

    @staticmethod
    def _homologous_like(attn: nn.Module) -> HomologousAttention:
        """A HomologousAttention with the same settings as ``attn``."""
        drop_path = getattr(attn.out_drop, 'drop_prob', 0.)
        gamma = getattr(attn.gamma1, 'weight', None)
        homo = HomologousAttention(
            embed_dims=attn.embed_dims,
            num_heads=attn.num_heads,
            attn_drop=attn.attn_drop,
            proj_drop=attn.proj_drop.p,
            dropout_layer=dict(type='DropPath', drop_prob=drop_path),
            qkv_bias=attn.qkv.bias is not None,
            layer_scale_init_value=(0. if gamma is None else
                                    float(gamma.detach().flatten()[0])))
        return homo

    def init_weights(self) -> None:
        super().init_weights()
        if self.segment_embed_mode is not None:
            trunc_normal_(self.segment_embed, std=self.segment_embed_std)

    def forward(
        self,
        x: torch.Tensor,
        mask: Optional[bool] = True
    ) -> Union[Tuple[torch.Tensor], Tuple[torch.Tensor, torch.Tensor]]:
        """Encode mixed images (``mask=True``) or plain images.

        Args:
            x (Tensor): (B, C, H, W) source images.
            mask (bool, optional): True for MixedAE pre-training; None or
                False for plain ViT features (the parent's outputs).

        Returns:
            tuple: with mixing, ``(latent, masks, homocon_feats)``: latent
            (Q*V, 1+N, D) tokens of the mixed images (cls first), the
            (Q, V, N) mixing masks (see :mod:`mixedae.utils.mixing`) and the
            (Q*V, N, D) patch tokens for HomoCon (``homocon_layer``).
        """
        if not mask:
            return super(MAEViT, self).forward(x)
        masks = self.draw_masks(x)
        latent, homocon_feats = self.encode_mixed(
            x, masks, return_homocon_feats=True)
        return latent, masks, homocon_feats

    def draw_masks(self, x: torch.Tensor) -> torch.Tensor:
        """Check the batch and draw its (Q, V, N) mixing masks."""
        B, _, H, W = x.shape
        if (H, W) != self.img_size:
            raise ValueError(
                f'Input images are {H}x{W} but the encoder was built with '
                f'`img_size`={self.img_size[0]}: mixing needs exactly that '
                'size (the mask and position embedding are per patch).')
        if B % self.group_size:
            raise ValueError(
                f'The batch of {B} images cannot be split into groups of '
                f'G={self.group_size} (`mix_ratio`={self.mix_ratio}): set '
                '`train_dataloader.batch_size` (per GPU) to a multiple of G '
                'and keep `drop_last=True`.')
        return random_mixing_masks(B // self.group_size, self.num_patches,
                                   self.group_size, self.num_views, x.device)

    def encode_mixed(
        self,
        x: torch.Tensor,
        masks: torch.Tensor,
        return_homocon_feats: bool = False,
        cues: bool = True
    ) -> Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
        """Mix ``x`` by ``masks`` and encode: (Q*V, 1+N, D); with
        ``return_homocon_feats`` also the (Q*V, N, D) patch tokens of
        ``homocon_layer``. ``cues=False`` leaves every source cue out (the
        segment embedding, the homologous bias): the encoder sees the
        content alone, as for the content-only precision."""
        slots = masks.flatten(0, 1)  # (Q*V, N) source slot per patch
        x = mix_images(x, masks, self.patch_size)  # (Q*V, C, H, W)
        x = self.patch_embed(x)[0] + self.pos_embed[:, 1:]
        segments = self.segment_embed_mode if cues else None
        if segments == 'tokens':
            x = x + self.segment_embed[slots]
        qk_segments = (self.segment_embed
                       if segments == 'attention' else None)
        homo_bias = self._homo_bias(x.shape[0]) if cues else None
        recognition = (self.training and torch.is_grad_enabled()
                       and self.recognition_weight is not None)
        self.recognition_loss = None
        cls_token = self.cls_token + self.pos_embed[:, :1]
        x = torch.cat((cls_token.expand(x.shape[0], -1, -1), x), dim=1)

        # source of every token, -1 for the cls token: (Q*V, 1+N)
        cls_id = slots.new_full((slots.shape[0], 1), -1)
        source_ids = torch.cat((cls_id, slots), dim=1)
        for i, layer in enumerate(self.layers):
            if isinstance(layer.attn, HomologousAttention):
                # TransformerEncoderLayer.forward with top-k attention
                x = x + layer.attn(
                    layer.ln1(x),
                    topk=self.homo_topk,
                    source_ids=source_ids,
                    qk_segments=qk_segments,
                    homo_bias=None if homo_bias is None else
                    homo_bias[self.homo_layers.index(i)],
                    recognition=recognition)
                x = layer.ffn(layer.ln2(x), identity=x)
            else:
                x = layer(x)
            if i == self.homocon_layer:
                feats = x[:, 1:]
        if recognition:  # the mean over the homologous-attention layers
            self.recognition_loss = self.recognition_weight * torch.stack(
                [self.layers[i].attn.recognition_loss
                 for i in self.homo_layers]).mean()
        x = self.ln1(x) if self.final_norm else x
        if not return_homocon_feats:
            return x
        return x, x[:, 1:] if self.homocon_layer == len(self.layers) - 1 \
            else feats

    def record_precision(self, enabled: bool = True) -> None:
        """Make the next mixed forwards compute the homologous precision
        of every homologous-attention layer (off: no cost, no host sync)."""
        for i in self.homo_layers:
            self.layers[i].attn.record_precision = enabled

    def homologous_precision(
            self,
            queries: Optional[torch.Tensor] = None,
            prefix: str = 'homo_prec') -> Dict[str, torch.Tensor]:
        """Precision of the last recorded mixed forward's top-k selection,
        per homologous-attention layer (``{prefix}_l{i}``) and averaged
        (``{prefix}``).

        Args:
            queries (Tensor, optional): (Q*V, N) bool, the patch queries to
                count; all patch queries by default.
            prefix (str): the keys' prefix.
        """
        precs = {}
        for i in self.homo_layers:
            counts = self.layers[i].attn.precision_counts
            if counts is None:
                continue
            mask = counts[0].new_zeros(counts[0].shape, dtype=torch.bool)
            mask[:, self.num_extra_tokens:] = True if queries is None \
                else queries
            precs[f'{prefix}_l{i}'] = precision_from_counts(*counts, mask)
        if precs:
            precs[prefix] = torch.stack(list(precs.values())).mean()
        return precs
