"""Homologous contrastive loss (HomoCon)."""
import torch
import torch.nn.functional as F
from mmengine.model import BaseModule
from mmpretrain.registry import MODELS


@MODELS.register_module()
class HomologousContrastiveLoss(BaseModule):
    """Supervised-contrastive loss over the patches of each mixed image.

    For every patch of a mixed image, the other patches from the same source
    are positives and the patches from other sources negatives; similarity
    is cosine over ``temperature``:

        L = mean_j  -1/|P(j)| sum_{p in P(j)}
                    log( exp(s_jp / t) / sum_{a != j} exp(s_ja / t) ).

    It is a regulariser next to the reconstruction loss
    (``L = L_rec + loss_weight * L_homocon``). The defaults
    ``temperature=0.25`` and ``loss_weight=0.1`` are this toolbox's choice:
    the slides do not give them.

    Args:
        temperature (float): softmax temperature. Defaults to 0.25.
        loss_weight (float): lambda. Defaults to 0.1.
    """

    def __init__(self, temperature: float = 0.25, loss_weight: float = 0.1):
        super().__init__()
        if temperature <= 0:
            raise ValueError(
                f'`temperature` must be positive, got {temperature}.')
        if loss_weight < 0:
            raise ValueError(
                f'`loss_weight` must be non-negative, got {loss_weight}.')
        self.temperature = temperature
        self.loss_weight = loss_weight

    def forward(self, feats: torch.Tensor,
                source_ids: torch.Tensor) -> torch.Tensor:
        """
        Args:
            feats (Tensor): (S, N, D) patch features of S mixed images.
            source_ids (Tensor): (S, N) source slot of each patch.

        Returns:
            Tensor: the weighted scalar loss.
        """
        N = feats.shape[1]
        # in fp32 even under AMP: the similarities are sharpened by 1 / t
        with torch.autocast(device_type=feats.device.type, enabled=False):
            f = F.normalize(feats.float(), dim=-1)
            logits = f @ f.transpose(1, 2) / self.temperature  # (S, N, N)
            self_pair = torch.eye(N, dtype=torch.bool, device=feats.device)
            log_prob = logits.masked_fill(self_pair,
                                          float('-inf')).log_softmax(-1)
            positive = source_ids[:, :, None] == source_ids[:, None, :]
            positive &= ~self_pair  # (S, N, N)
            pos_log_prob = log_prob.masked_fill(~positive, 0).sum(-1)
            loss = -(pos_log_prob / positive.sum(-1).clamp(min=1)).mean()
        return self.loss_weight * loss
