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
    """

    def extract_feat(self, inputs: torch.Tensor):
        return self.backbone(inputs, mask=None)

    def loss(self, inputs: torch.Tensor, data_samples: List[DataSample],
             **kwargs) -> Dict[str, torch.Tensor]:
        latent, masks = self.backbone(inputs)  # (Q*V, 1+N, D), (Q, V, N)
        pred = self.neck(latent, masks, self.backbone.group_size)
        losses = self.head.loss(pred, inputs, latent[:, 1:], masks)
        losses.update(self.backbone.homologous_precision())
        return losses

    def parse_losses(
        self, losses: Dict[str, torch.Tensor]
    ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        """mmengine's ``parse_losses``, with the logged values averaged over
        ranks when distributed.

        mmengine logs rank 0's values only; averaging detached copies makes
        the log describe the whole global batch. The returned loss, the one
        back-propagated, stays this rank's (DDP averages the gradients).
        """
        loss, log_vars = super().parse_losses(losses)
        if get_world_size() > 1:
            values = torch.stack([v.detach().float() for v in
                                  log_vars.values()])
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
        latent = backbone.encode_mixed(inputs, masks)
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
