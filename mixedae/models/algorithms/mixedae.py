"""The MixedAE self-supervised algorithm."""
from collections import OrderedDict
from typing import Dict, List, Optional, Tuple

import torch
from mmengine.dist import all_reduce, get_world_size
from mmpretrain.models.selfsup import BaseSelfSupervisor
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

from ...utils.mixing import mix_images, patchify, unpatchify


@MODELS.register_module()
class MixedAE(BaseSelfSupervisor):
    """Mixed Autoencoder (Chen et al., CVPR 2023).

    ``L = L_rec + lambda * L_homocon``: the backbone (:class:`MixedAEViT`)
    mixes each group of G images and encodes the mixture with homologous
    attention, the neck (:class:`MixedAEPretrainDecoder`) unmixes and
    reconstructs every source, the head (:class:`MixedAEPretrainHead`)
    computes the losses. The homologous precision of the top-k selection is
    returned next to the losses for logging.

    Logging without host syncs: with ``log_step`` False (set per iteration
    by :class:`MixedAEHook` when the logger will not print),
    :meth:`parse_losses` only adds the detached loss terms to a running
    sum on the device and returns no log variables, so nothing is copied to
    the host, all-reduced or ``.item()``-ed, and the precision is not
    computed. On a logged iteration it returns the mean of each term over
    the iterations since the previous log line (averaged over ranks) and the
    precision of that iteration. ``log_step`` defaults to True: without the
    hook every iteration logs, as in mmengine.

    Which precision is which: ``homo_prec_l{i}`` is the selection as
    trained, with the source cues the encoder is given (a homologous bias,
    a segment embedding); ``homo_prec_content_l{i}`` is that of the same
    mixed batch encoded again without any cue (a no-grad forward on logged
    iterations only; the same values when the encoder has no cue), i.e.
    what the encoder recognises from content alone; and
    ``homo_prec_content_fg_l{i}`` the latter over foreground queries only.

    Args:
        fg_threshold (float): a patch is foreground when its brightest
            pixel (0-255 scale, the data preprocessor's normalisation
            undone) exceeds this; the blank background patches of
            Fashion-MNIST (about 30% of them, all 0) carry nothing to
            recognise their source by. Defaults to 0.5.
        Others: as :class:`BaseSelfSupervisor`.
    """

    log_step: bool = True

    def __init__(self, *args, fg_threshold: float = 0.5, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if not isinstance(fg_threshold, (int, float)):
            raise ValueError('`model.fg_threshold` must be a number (0-255 '
                             f'scale), got {fg_threshold!r}.')
        self.fg_threshold = fg_threshold
        self._check_sizes()

    def _check_sizes(self) -> None:
        """The encoder, decoder and head must agree on the patch grid, the
        patch size, the channels and the width: raise a ValueError naming
        the keys now rather than a shape error at the first step."""
        bb, neck, head = self.backbone, self.neck, self.head
        p, C, N = bb.patch_size, bb.in_channels, bb.num_patches
        grid = (f'`model.backbone.img_size`={bb.img_size[0]} and '
                f'`model.backbone.patch_size`={p}')
        problems = []
        if neck.decoder_pos_embed.shape[1] != N + 1:
            problems.append(
                f'`model.neck.num_patches`='
                f'{neck.decoder_pos_embed.shape[1] - 1}, but {grid} give '
                f'N={N} patches')
        if neck.decoder_embed.in_features != bb.embed_dims:
            problems.append(
                f'`model.neck.embed_dim`={neck.decoder_embed.in_features}, '
                f'but the encoder is {bb.embed_dims} wide '
                '(`model.backbone.arch`)')
        if neck.decoder_pred.out_features != p * p * C:
            problems.append(
                f'the decoder predicts {neck.decoder_pred.out_features} '
                f'values per patch (`model.neck.patch_size` squared x '
                f'`model.neck.in_chans`), but patches of {p}x{p} pixels '
                f'with {C} channels (`model.backbone.patch_size`, '
                f'`model.backbone.patch_cfg.in_channels`) hold {p * p * C}')
        if head.patch_size != p:
            problems.append(f'`model.head.patch_size`={head.patch_size}, '
                            f'but `model.backbone.patch_size`={p}')
        if head.in_channels != C:
            problems.append(
                f'`model.head.in_channels`={head.in_channels}, but the '
                f'encoder takes {C} channels '
                '(`model.backbone.patch_cfg.in_channels`)')
        homocon = getattr(head, 'homocon_loss', None)
        projector = getattr(homocon, 'projector', None)
        if projector is not None and \
                projector[0].in_features != bb.embed_dims:
            problems.append(
                '`model.head.homocon_loss.projector.in_channels`='
                f'{projector[0].in_features}, but the encoder is '
                f'{bb.embed_dims} wide (`model.backbone.arch`)')
        if problems:
            raise ValueError('The MixedAE parts do not fit together: ' +
                             '; '.join(problems) + '.')

    def extract_feat(self, inputs: torch.Tensor):
        return self.backbone(inputs, mask=None)

    def loss(self, inputs: torch.Tensor, data_samples: List[DataSample],
             **kwargs) -> Dict[str, torch.Tensor]:
        backbone = self.backbone
        backbone.record_precision(self.log_step)
        # (Q*V, 1+N, D), (Q, V, N), (Q*V, N, D)
        latent, masks, homocon_feats = backbone(inputs)
        pred = self.neck(latent, masks, backbone.group_size)
        losses = self.head.loss(pred, inputs, homocon_feats, masks)
        if backbone.recognition_loss is not None:
            losses['loss_recog'] = backbone.recognition_loss
        if self.log_step:
            losses.update(backbone.homologous_precision())
            losses.update(self.content_precision(inputs, masks))
        backbone.record_precision(False)
        return losses

    def foreground(self, inputs: torch.Tensor,
                   masks: torch.Tensor) -> torch.Tensor:
        """(Q*V, N) bool: the patches of the mixed images whose brightest
        pixel exceeds ``fg_threshold`` (0-255 scale)."""
        pre = self.data_preprocessor
        raw = inputs
        if getattr(pre, '_enable_normalize', False):
            raw = inputs * pre.std + pre.mean
        mixed = mix_images(raw, masks, self.backbone.patch_size)
        p = self.backbone.patch_size
        return patchify(mixed, p).amax(dim=-1) > self.fg_threshold

    @torch.no_grad()
    def content_precision(self, inputs: torch.Tensor,
                          masks: torch.Tensor) -> Dict[str, torch.Tensor]:
        """The homologous precision of ``inputs`` mixed by ``masks`` and
        encoded with no source cue (``homo_prec_content_*``), over all
        patch queries and over foreground ones (``..._fg_*``). Reuses the
        last forward's selection when the encoder has no cue."""
        backbone = self.backbone
        if not backbone.homo_layers:
            return {}
        if backbone.has_source_cue:
            backbone.record_precision(True)
            backbone.encode_mixed(inputs, masks, cues=False)
        fg = self.foreground(inputs, masks)
        precs = backbone.homologous_precision(prefix='homo_prec_content')
        precs.update(backbone.homologous_precision(
            fg, prefix='homo_prec_content_fg'))
        return precs

    def parse_losses(
        self, losses: Dict[str, torch.Tensor]
    ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        """mmengine's ``parse_losses``; the logged values are the means since
        the previous logged iteration, averaged over ranks.

        mmengine logs rank 0's values only; averaging detached copies makes
        the log describe the whole global batch. The returned loss, the one
        back-propagated, stays this rank's (DDP averages the gradients).
        Off ``log_step`` the terms are only summed on the device (see the
        class docstring) and the log variables are empty.
        """
        loss, log_vars = super().parse_losses(losses)
        # detached terms present on every iteration (not the precision)
        terms = OrderedDict((k, v.detach().float()) for k, v in
                            log_vars.items() if not k.startswith('homo_prec'))
        pending = getattr(self, '_pending_log', None)
        if pending is not None and pending[0] == list(terms):
            sums, count = pending[1] + torch.stack(list(terms.values())), \
                pending[2] + 1
        else:  # first iteration, or the terms changed
            sums, count = torch.stack(list(terms.values())), 1
        if not self.log_step:
            self._pending_log = (list(terms), sums, count)
            return loss, OrderedDict()
        self._pending_log = None
        log_vars = OrderedDict(zip(terms, sums / count))
        log_vars.update((k, v.detach().float()) for k, v in losses.items()
                        if k.startswith('homo_prec'))
        if get_world_size() > 1:
            values = torch.stack(list(log_vars.values()))
            all_reduce(values, op='mean')  # one collective for all terms
            log_vars = OrderedDict(zip(log_vars, values))
        return loss, log_vars

    @torch.no_grad()
    def recognition(self, inputs: torch.Tensor,
                    masks: Optional[torch.Tensor] = None
                    ) -> Dict[str, torch.Tensor]:
        """The homologous precision of a batch of normalised images, mixed
        by ``masks`` (drawn when None): as the model runs now
        (``homo_prec_*``, with its source cues) and from content alone
        (``homo_prec_content_*``, over all and foreground queries), and the
        share of foreground patches (``fg_share``). Put the model in eval
        mode first to measure it as it would run after training."""
        backbone = self.backbone
        if masks is None:
            masks = backbone.draw_masks(inputs)
        backbone.record_precision(True)
        backbone.encode_mixed(inputs, masks)
        out = backbone.homologous_precision()
        out.update(self.content_precision(inputs, masks))
        backbone.record_precision(False)
        out['fg_share'] = self.foreground(inputs, masks).float().mean()
        return out

    @torch.no_grad()
    def reconstruct(self, inputs: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Mix, encode and unmix a batch, for visualisation.

        Returns:
            dict: ``mixed`` (Q*V, C, H, W) mixed images; ``recon``
            (B*V, C, H, W) reconstructions, with ``norm_pix`` undone by
            each target patch's mean and variance and the source's own
            visible patches pasted back; ``masks`` (Q, V, N).
        """
        backbone, head = self.backbone, self.head
        masks = backbone.draw_masks(inputs)
        latent = backbone.encode_mixed(inputs, masks)  # (Q*V, 1+N, D)
        pred = self.neck(latent, masks, backbone.group_size)  # (B*V, N, P)
        Q, V, N = masks.shape
        G = backbone.group_size
        target = head.patchify(inputs)  # (B, N, P)
        target = target.unsqueeze(1).expand(-1, V, -1, -1).flatten(0, 1)
        if head.norm_pix:
            mean = target.mean(dim=-1, keepdim=True)
            std = (target.var(dim=-1, keepdim=True) + 1.e-6)**.5
            pred = pred * std + mean
        slot = torch.arange(G, device=masks.device).view(1, G, 1, 1)
        own = (masks.unsqueeze(1) == slot).flatten(0, 2).unsqueeze(-1)
        pred = torch.where(own, target, pred)
        H, W = inputs.shape[-2:]
        p = backbone.patch_size
        recon = unpatchify(pred, p, inputs.shape[1], (H // p, W // p))
        return dict(
            mixed=mix_images(inputs, masks, p), recon=recon, masks=masks)
