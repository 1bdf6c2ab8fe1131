"""The MixedAE self-supervised algorithm."""
from collections import OrderedDict
from typing import Dict, List, Tuple

import torch
from mmengine.dist import all_reduce, get_world_size
from mmpretrain.models.selfsup import BaseSelfSupervisor
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

from ...utils.mixing import mix_images, unpatchify


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
    """

    log_step: bool = True

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
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
        losses.update(backbone.homologous_precision())
        return losses

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
