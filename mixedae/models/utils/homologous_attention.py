"""Homologous attention (HomoAtt): multi-head self-attention in which every
query keeps only its top-k attention logits."""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from mmpretrain.models.utils import MultiheadAttention
from mmpretrain.registry import MODELS


class _TopKAttention(torch.autograd.Function):
    """``softmax(TopK(q k^T * scale [+ bias * same])) v`` that keeps no
    (T, T) tensor for backward, and optionally the attention recognition
    loss of the content logits ``q k^T * scale`` (:func:`recognition_loss`)
    computed in the same pass.

    Forward saves q, k, v (which the projections keep alive anyway), the
    k-th largest logit of every row, (B, h, T, 1), and with a homologous
    bias the (B, T) source ids; backward recomputes the logits, the
    selection and the softmax from them, flash-attention style. The
    recomputed logits are bit-identical to the forward's (same inputs, same
    ops), so the selection and the gradients are exactly those of the plain
    autograd graph (``topk_attention_reference``). The recognition loss's
    gradient with respect to the logits is added to the attention's before
    the two matmuls that give q's and k's gradients, so it costs no extra
    matmul and no saved tensor.

    Precision follows what autocast does to the plain graph: logits, top-k
    and ``attn @ v`` in the inputs' dtype, the softmaxes in fp32. Autocast
    is switched off inside, the casts are explicit, so forward and backward
    agree on CPU (bf16) and CUDA (fp16 / bf16) alike.
    """

    @staticmethod
    def forward(ctx, q, k, v, topk: int, scale: float, bias, source_ids,
                recognition: bool):
        with torch.autocast(q.device.type, enabled=False):
            logits = (q @ k.transpose(-2, -1)).mul_(scale)  # (B, h, T, T)
            loss = _recognition(logits, source_ids)[0] if recognition \
                else logits.new_zeros((), dtype=torch.float32)
            _add_bias_(logits, bias, source_ids)
            kth = _kth_largest(logits, topk)  # (B, h, T, 1)
            attn = _masked_softmax_(logits, kth)  # fp32
            out = attn.to(v.dtype) @ v  # (B, h, T, d)
        ctx.save_for_backward(q, k, v, kth, bias, source_ids)
        ctx.scale, ctx.recognition = scale, recognition
        ctx.mark_non_differentiable(kth)
        return out, kth, loss

    @staticmethod
    def backward(ctx, grad_out, _grad_kth, grad_loss):
        q, k, v, kth, bias, source_ids = ctx.saved_tensors
        scale = ctx.scale
        with torch.autocast(q.device.type, enabled=False):
            logits = (q @ k.transpose(-2, -1)).mul_(scale)
            grad_recognition = None
            if ctx.recognition:  # d loss / d logits, before the bias
                grad_recognition = _recognition(
                    logits, source_ids, grad=True)[1].mul_(grad_loss)
            _add_bias_(logits, bias, source_ids)
            attn = _masked_softmax_(logits, kth)  # (B, h, T, T)
            grad_out = grad_out.to(v.dtype)
            grad_v = attn.to(v.dtype).transpose(-2, -1) @ grad_out
            grad_attn = (grad_out @ v.transpose(-2, -1)).float()
            # dropped keys have attn = 0, so they get no gradient
            grad_logits = torch._softmax_backward_data(
                grad_attn, attn, -1, torch.float32)
            del attn, grad_attn
            grad_bias = None
            if bias is not None and ctx.needs_input_grad[5]:
                same = _same_source(source_ids)[:, None]  # (B, 1, T, T)
                grad_bias = (grad_logits * same).sum(dim=(2, 3))  # (B, h)
                if bias.dim() == 1:
                    grad_bias = grad_bias.sum(dim=0)
                grad_bias = grad_bias.to(bias.dtype)
            if grad_recognition is not None:
                grad_logits.add_(grad_recognition)
                del grad_recognition
            grad_logits = grad_logits.mul_(scale).to(q.dtype)
            grad_q = grad_logits @ k
            grad_k = grad_logits.transpose(-2, -1) @ q
        return grad_q, grad_k, grad_v, None, None, grad_bias, None, None


def _same_source(source_ids: torch.Tensor) -> torch.Tensor:
    """(B, T) source ids -> (B, T, T) bool: query and key are patches of
    the same source (tokens of no source, id < 0, match nothing)."""
    return (source_ids[:, :, None] == source_ids[:, None, :]) & (
        source_ids >= 0)[:, :, None]


def _bias_view(bias: torch.Tensor, num_heads: int) -> torch.Tensor:
    """A (h,) or per-image (B, h) bias as (1 or B, h, 1, 1)."""
    return bias.view(-1, num_heads, 1, 1)


def _add_bias_(logits: torch.Tensor, bias: Optional[torch.Tensor],
               source_ids: Optional[torch.Tensor]) -> torch.Tensor:
    """Add the bias (``(h,)`` or per image ``(B, h)``) to the (B, h, T, T)
    logits where query and key come from the same source, in place."""
    if bias is not None:
        same = _same_source(source_ids)[:, None].to(logits.dtype)
        logits.add_(same * _bias_view(bias.to(logits.dtype),
                                      logits.shape[1]))
    return logits


def _logits(q, k, scale: float, bias: Optional[torch.Tensor],
            source_ids: Optional[torch.Tensor]) -> torch.Tensor:
    """(B, h, T, T) ``q k^T * scale``, plus the bias where query and key
    come from the same source."""
    return _add_bias_((q @ k.transpose(-2, -1)).mul_(scale), bias,
                      source_ids)


def _recognition(logits: torch.Tensor, source_ids: torch.Tensor,
                 grad: bool = False):
    """The attention recognition loss of (B, h, T, T) content logits
    (:func:`recognition_loss`) and, with ``grad``, its (B, h, T, T) fp32
    gradient with respect to them (else None): for a patch query,
    ``softmax_all - softmax_own`` over its candidate keys, over the number
    of terms averaged.

    One exponential serves both softmaxes (shifted by the row's largest
    candidate logit, which bounds both): with ``e = exp(x - max)``,
    ``loss = log sum(e) - log sum(e * own)`` and the gradient is
    ``e * (1 / sum(e) - own / sum(e * own))``.
    """
    patch = source_ids >= 0  # (B, T)
    T = logits.shape[-1]
    self_pair = torch.eye(T, dtype=torch.bool, device=logits.device)
    candidate = (patch[:, None, :] & ~self_pair)[:, None]  # (B, 1, T, T)
    own = (_same_source(source_ids) & ~self_pair)[:, None]
    queries = patch[:, None, :, None]  # (B, 1, T, 1): patch queries only
    terms = patch.sum() * logits.shape[1]
    e = logits.float().masked_fill(~candidate, float('-inf'))
    e = e.sub_(e.amax(-1, keepdim=True)).exp_()  # 0 off the candidates
    total = e.sum(-1, keepdim=True)  # (B, h, T, 1), >= 1
    mine = (e * own).sum(-1, keepdim=True)  # 0 for no-source queries
    per_query = total.log() - mine.log()
    loss = torch.where(queries, per_query, 0.).sum() / terms
    if not grad:
        return loss, None
    inv_total = torch.where(queries, total.reciprocal() / terms, 0.)
    inv_mine = torch.where(queries, mine.reciprocal() / terms, 0.)
    return loss, e.mul_(inv_total - own * inv_mine)


def _masked_softmax_(logits: torch.Tensor,
                     kth: torch.Tensor) -> torch.Tensor:
    """fp32 softmax over the logits at or above ``kth`` (row-wise), the
    others dropped; overwrites ``logits``.

    Subtracting ``kth`` first lets one in-place ``threshold_`` do the
    masking (no boolean (T, T) tensor, one pass fewer): with IEEE gradual
    underflow ``a - b`` is 0 exactly when ``a == b`` and negative exactly
    when ``a < b``, so ``x > -s`` (s, the dtype's smallest subnormal) keeps
    exactly the logits ``>= kth``. The shift does not change the softmax.
    """
    info = torch.finfo(logits.dtype)
    smallest_subnormal = info.tiny * info.eps
    x = F.threshold_(logits.sub_(kth), -smallest_subnormal, float('-inf'))
    return x.softmax(dim=-1, dtype=torch.float32)


def _kth_largest(logits: torch.Tensor, topk: int) -> torch.Tensor:
    """(..., T) -> (..., 1): the ``topk``-th largest value of every row,
    ties counted."""
    if topk == logits.shape[-1]:
        return logits.amin(dim=-1, keepdim=True)
    return logits.topk(topk, dim=-1, sorted=False).values.amin(
        dim=-1, keepdim=True)


def topk_attention(
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        topk: int,
        scale: float,
        bias: Optional[torch.Tensor] = None,
        source_ids: Optional[torch.Tensor] = None,
        recognition: bool = False
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Homologous attention's core, memory-lean (:class:`_TopKAttention`).

    Args:
        q, k, v (Tensor): (B, h, T, d).
        topk (int): keys kept per query; ties at the k-th logit are kept.
        scale (float): logit scale, ``d ** -0.5``.
        bias (Tensor, optional): (h,), or (B, h) per image, added to the
            logits of keys from the query's own source (needs
            ``source_ids``).
        source_ids (Tensor, optional): (B, T) source of each token, < 0 for
            none.
        recognition (bool): also compute :func:`recognition_loss` of the
            content logits (needs ``source_ids``).

    Returns:
        tuple: ``(out, kth, loss)``, the (B, h, T, d) output, the
        (B, h, T, 1) k-th largest logit of every query (detached) and the
        recognition loss (0 without ``recognition``).
    """
    return _TopKAttention.apply(q, k, v, topk, scale, bias, source_ids,
                                recognition)


def topk_attention_reference(q, k, v, topk: int, scale: float,
                             dropout: float = 0., bias=None,
                             source_ids=None) -> torch.Tensor:
    """The same attention with the plain autograd graph, which keeps the
    selection and the softmax ((B, h, T, T) each) for backward. Used when
    attention dropout is on, and by the tests as the reference."""
    logits = (q @ k.transpose(-2, -1)).mul_(scale)
    if bias is not None:
        logits = logits + _same_source(source_ids)[:, None] * _bias_view(
            bias, q.shape[1])
    with torch.no_grad():  # the selection itself carries no gradient
        drop = logits < _kth_largest(logits, topk)
    attn = logits.masked_fill(drop, float('-inf')).softmax(dim=-1)
    if dropout > 0:
        attn = torch.dropout(attn, dropout, True)
    return attn @ v


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
    real-valued logits). The top-k core keeps no tensor of the attention
    map's size for backward (:func:`topk_attention`), except with
    ``attn_drop > 0``, which takes the plain autograd path.

    Diagnostics, off by default so that training keeps no extra tensor and
    never waits for the device:

    * ``record_precision = True``: a top-k forward given ``source_ids``
      stores the homologous precision of its selection (the share of kept
      keys that come from the query's own source, over patch queries),
      detached, in ``self.homologous_precision``, and the per-query counts
      behind it (own-source kept keys, kept keys; (B, T) each, summed over
      heads) in ``self.precision_counts``; otherwise both are None.
    * ``record_keep = True``: a top-k forward stores its boolean
      (B, h, T, T) selection, detached, in ``self.keep_mask``.

    With ``recognition=True`` a top-k forward also stores, in
    ``self.recognition_loss`` (with its graph), the attention recognition
    loss of the content logits ``q k^T / sqrt(d_h)`` (no bias, no top-k):
    :func:`recognition_loss`.
    """

    record_precision: bool = False
    record_keep: bool = False
    # False: the plain autograd graph, which keeps the attention map (for
    # comparisons, e.g. benchmarks/pretrain_speed.py's "before" variant)
    memory_lean: bool = True
    keep_mask: Optional[torch.Tensor] = None
    homologous_precision: Optional[torch.Tensor] = None
    precision_counts: Optional[Tuple[torch.Tensor, torch.Tensor]] = None
    recognition_loss: Optional[torch.Tensor] = None

    def forward(self,
                x: torch.Tensor,
                topk: Optional[int] = None,
                source_ids: Optional[torch.Tensor] = None,
                qk_segments: Optional[torch.Tensor] = None,
                homo_bias: Optional[torch.Tensor] = None,
                recognition: bool = False) -> torch.Tensor:
        """
        Args:
            x (Tensor): (B, T, C) tokens.
            topk (int, optional): keys kept per query; None means vanilla
                attention (PyTorch's fused kernel).
            source_ids (Tensor, optional): (B, T) source slot of each token,
                negative for tokens of no source (the cls token).
            qk_segments (Tensor, optional): (G, C) segment embeddings added
                to the inputs of the query and key projections only (not to
                the values or the residual stream): token t gets row
                ``source_ids[t]``, tokens of no source nothing. Needs
                ``source_ids``.
            homo_bias (Tensor, optional): (h,), or (B, h) per mixed image,
                added, per head, to the logits of the keys from the query's
                own source. Needs ``source_ids``.
            recognition (bool): store the attention recognition loss of
                this forward's content logits (needs ``source_ids``).
        """
        self.homologous_precision = self.precision_counts = None
        self.recognition_loss = None
        if topk is None:
            return super().forward(x)

        B, T, _ = x.shape
        qkv = self.qkv(x)  # (B, T, 3C)
        if qk_segments is not None:
            # project the G segment rows, not the B*T tokens: (G, 2C)
            C = self.embed_dims
            seg = F.linear(qk_segments.to(qkv.dtype), self.qkv.weight[:2 * C])
            seg = torch.cat((seg.new_zeros(1, 2 * C), seg))  # row 0: none
            qk = qkv[..., :2 * C] + seg[source_ids.clamp(min=-1) + 1]
            qkv = torch.cat((qk, qkv[..., 2 * C:]), dim=-1)
        qkv = qkv.reshape(B, T, 3, self.num_heads,
                          self.head_dims).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]  # (B, h, T, d)
        scale = self.head_dims**-0.5
        if not self.memory_lean or (self.training and self.attn_drop > 0):
            out = topk_attention_reference(
                q, k, v, topk, scale,
                self.attn_drop if self.training else 0., homo_bias,
                source_ids)
            kth = None
            if recognition:
                self.recognition_loss = recognition_loss(q, k, scale,
                                                         source_ids)
        else:
            out, kth, loss = topk_attention(q, k, v, topk, scale, homo_bias,
                                            source_ids, recognition)
            if recognition:
                self.recognition_loss = loss
        if self.record_keep or (self.record_precision
                                and source_ids is not None):
            with torch.no_grad():  # diagnostics: recompute the selection
                logits = _logits(q, k, scale, homo_bias, source_ids)
                if kth is None:
                    kth = _kth_largest(logits, topk)
                keep = logits >= kth  # (B, h, T, T)
            if self.record_keep:
                self.keep_mask = keep
            if self.record_precision and source_ids is not None:
                self.precision_counts = precision_counts(keep, source_ids)
                self.homologous_precision = precision_from_counts(
                    *self.precision_counts, source_ids >= 0)
        x = out.transpose(1, 2).reshape(B, T, self.embed_dims)
        x = self.proj(x)
        x = self.out_drop(self.gamma1(self.proj_drop(x)))
        if self.v_shortcut:
            x = v.squeeze(1) + x
        return x


@torch.no_grad()
def precision_counts(keep: torch.Tensor, source_ids: torch.Tensor
                     ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per query: its kept keys that share its source, and all its kept
    keys, summed over heads; (B, T) each.

    Args:
        keep (Tensor): (B, h, T, T) bool, kept keys per query.
        source_ids (Tensor): (B, T) source of each token, < 0 for tokens of
            no source (their keys are never homologous).
    """
    same = _same_source(source_ids)  # (B, T, T)
    homologous = (keep & same[:, None]).sum(dim=(1, 3))  # (B, T)
    return homologous, keep.sum(dim=(1, 3))


@torch.no_grad()
def precision_from_counts(homologous: torch.Tensor, kept: torch.Tensor,
                          queries: torch.Tensor) -> torch.Tensor:
    """The share of own-source keys among the kept keys of the queries
    selected by the (B, T) bool ``queries`` (masked sums only, so it never
    waits for the device; NaN when no query is selected)."""
    return (homologous * queries).sum().float() / (kept * queries).sum()


def homologous_precision(keep: torch.Tensor,
                         source_ids: torch.Tensor) -> torch.Tensor:
    """Share of the kept keys of patch queries that share the query's source.

    Args:
        keep (Tensor): (B, h, T, T) bool, kept keys per query.
        source_ids (Tensor): (B, T) source of each token, < 0 for tokens of
            no source (their queries are not counted, their keys are never
            homologous).
    """
    return precision_from_counts(*precision_counts(keep, source_ids),
                                 source_ids >= 0)


def recognition_loss(q: torch.Tensor, k: torch.Tensor, scale: float,
                     source_ids: torch.Tensor) -> torch.Tensor:
    """The attention recognition loss: for every patch query, minus the
    log of the share of its softmax over the content logits
    ``q k^T * scale`` (the other patch keys; no bias, no top-k) that falls
    on keys of its own source; the mean over queries and heads.

    It is 0 when every query attends only to its own source, and
    ``ln((N - 1) / (K - 1))`` for uniform attention (N patches, K per
    source). This is the plain autograd graph in fp32 (the attention's
    reference path, and the tests'); the lean core computes the same in
    its own pass (:func:`_recognition`).
    """
    patch = source_ids >= 0  # (B, T)
    T = q.shape[-2]
    self_pair = torch.eye(T, dtype=torch.bool, device=q.device)
    candidate = (patch[:, None, :] & ~self_pair)[:, None]  # (B, 1, T, T)
    own = (_same_source(source_ids) & ~self_pair)[:, None]
    queries = patch[:, None, :, None]
    with torch.autocast(q.device.type, enabled=False):
        logits = (q.float() @ k.float().transpose(-2, -1)) * scale
        x = logits.masked_fill(~candidate, float('-inf'))
        # rows of no-source queries (no own keys) made finite: no NaN
        x_own = x.masked_fill(~own, float('-inf')).masked_fill(~queries, 0.)
        per_query = x.logsumexp(-1, keepdim=True) - \
            x_own.logsumexp(-1, keepdim=True)
        return torch.where(queries, per_query, 0.).sum() / (
            patch.sum() * q.shape[1])
