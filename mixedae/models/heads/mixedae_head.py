"""MixedAE pre-training head: reconstruction and HomoCon losses."""
from typing import Dict, Optional

import torch
from mmpretrain.models.heads import MAEPretrainHead
from mmpretrain.registry import MODELS


@MODELS.register_module()
class MixedAEPretrainHead(MAEPretrainHead):
    """Reconstruction of every source plus the homologous contrastive term.

    Reconstruction is MAE's pixel loss (``norm_pix`` for per-patch normalised
    targets) on the positions a source did not fill in the view it was
    decoded from, averaged over them.

    Args:
        loss (dict): reconstruction loss, e.g. ``PixelReconstructionLoss``.
        homocon_loss (dict, optional): ``HomologousContrastiveLoss`` config;
            None disables HomoCon (naive mixing, the no-HomoCon ablation).
        norm_pix, patch_size, in_channels: as in :class:`MAEPretrainHead`.
    """

    def __init__(self,
                 loss: dict,
                 homocon_loss: Optional[dict] = dict(
                     type='HomologousContrastiveLoss'),
                 norm_pix: bool = True,
                 patch_size: int = 16,
                 in_channels: int = 3) -> None:
        super().__init__(
            loss=loss,
            norm_pix=norm_pix,
            patch_size=patch_size,
            in_channels=in_channels)
        self.homocon_loss = (None if homocon_loss is None else
                             MODELS.build(homocon_loss))

    def loss(self, pred: torch.Tensor, imgs: torch.Tensor,
             patch_feats: torch.Tensor,
             masks: torch.Tensor) -> Dict[str, torch.Tensor]:
        """
        Args:
            pred (Tensor): (B*V, N, p*p*C) decoder predictions, row
                ``b * V + v`` for source ``b`` decoded from view ``v``.
            imgs (Tensor): (B, C, H, W) source images.
            patch_feats (Tensor): (Q*V, N, D) encoder patch features.
            masks (Tensor): (Q, V, N) mixing masks.
        """
        Q, V, N = masks.shape
        B = imgs.shape[0]
        G = B // Q
        target = self.construct_target(imgs)  # (B, N, P)
        target = target.unsqueeze(1).expand(-1, V, -1, -1).flatten(0, 1)
        slot = torch.arange(G, device=masks.device).view(1, G, 1, 1)
        # 1 where source s did not fill the position in view v: (B*V, N)
        hidden = (masks.unsqueeze(1) != slot).flatten(0, 2).to(pred.dtype)
        losses = dict(loss_rec=self.loss_module(pred, target, hidden))
        if self.homocon_loss is not None:
            losses['loss_homocon'] = self.homocon_loss(
                patch_feats, masks.flatten(0, 1))
        return losses
