"""Homologous attention (HomoAtt): multi-head self-attention in which every
query keeps only its top-k attention logits."""
from typing import Optional

import torch
from mmpretrain.models.utils import MultiheadAttention
from mmpretrain.registry import MODELS


@MODELS.register_module()
class HomologousAttention(MultiheadAttention):
    """``A = softmax(TopK(q k^T / sqrt(d_h))) v``.

    A drop-in for mmpretrain's :class:`MultiheadAttention`: same arguments,
    same parameters (``qkv``, ``proj``, ...), so a checkpoint trained with it
    loads into the vanilla attention for fine-tuning with no conversion.
    Top-k selection is applied only when ``forward`` is given ``topk``;
    without it the module is the vanilla attention (MixedAEViT's unmixed
    feature-extraction path).

    Ties at the k-th largest logit are all kept (they have measure zero for
    real-valued logits).

    When ``forward`` also receives ``source_ids``, the homologous precision
    of the selection (the share of kept keys that come from the query's own
    source, over patch queries) is stored, detached, in
    ``self.homologous_precision``.

    For visualisation, setting ``record_keep = True`` on an instance makes
    every top-k forward store its boolean (B, h, T, T) selection, detached,
    in ``self.keep_mask`` (off by default: training keeps no extra tensor).
    """

    record_keep: bool = False
    keep_mask: Optional[torch.Tensor] = None

    def forward(self,
                x: torch.Tensor,
                topk: Optional[int] = None,
                source_ids: Optional[torch.Tensor] = None) -> torch.Tensor:
        """
        Args:
            x (Tensor): (B, T, C) tokens.
            topk (int, optional): keys kept per query; None means vanilla
                attention (PyTorch's fused kernel).
            source_ids (Tensor, optional): (B, T) source slot of each token,
                negative for tokens of no source (the cls token).
        """
        B, T, _ = x.shape
        if topk is None:
            self.homologous_precision = None
            return super().forward(x)

        qkv = self.qkv(x).reshape(B, T, 3, self.num_heads,
                                  self.head_dims).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]  # (B, h, T, d)
        # scaling the logits in place is safe: matmul's backward needs only
        # q and k
        logits = (q @ k.transpose(-2, -1)).mul_(self.head_dims**-0.5)
        with torch.no_grad():  # the selection itself carries no gradient
            kth = logits.topk(topk, dim=-1, sorted=False).values.amin(
                dim=-1, keepdim=True)  # (B, h, T, 1) k-th largest logit
            drop = logits < kth  # (B, h, T, T)
        if self.record_keep:  # visualisation only
            self.keep_mask = ~drop
        attn = logits.masked_fill(drop, float('-inf')).softmax(dim=-1)
        if self.training and self.attn_drop > 0:
            attn = torch.dropout(attn, self.attn_drop, True)
        x = (attn @ v).transpose(1, 2).reshape(B, T, self.embed_dims)

        self.homologous_precision = None if source_ids is None else \
            homologous_precision(~drop, source_ids)

        x = self.proj(x)
        x = self.out_drop(self.gamma1(self.proj_drop(x)))
        if self.v_shortcut:
            x = v.squeeze(1) + x
        return x


@torch.no_grad()
def homologous_precision(keep: torch.Tensor,
                         source_ids: torch.Tensor) -> torch.Tensor:
    """Share of the kept keys of patch queries that share the query's source.

    Args:
        keep (Tensor): (B, h, T, T) bool, kept keys per query.
        source_ids (Tensor): (B, T) source of each token, < 0 for tokens of
            no source (their queries are not counted, their keys are never
            homologous).
    """
    is_patch = source_ids >= 0  # (B, T)
    same = source_ids[:, :, None] == source_ids[:, None, :]  # (B, T, T)
    same &= is_patch[:, :, None]
    homologous = (keep & same[:, None]).sum(dim=(1, 3))  # (B, T)
    kept = keep.sum(dim=(1, 3))  # (B, T)
    return homologous[is_patch].sum().float() / kept[is_patch].sum()
