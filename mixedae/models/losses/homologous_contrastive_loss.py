"""Homologous contrastive loss (HomoCon)."""
import math
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule
from mmpretrain.registry import MODELS


def homocon_floor(num_patches: int, group_size: int, temperature: float,
                  num_images: int = 1) -> float:
    """The infimum of the (unweighted) HomoCon loss.

    One softmax holds M = ``num_images`` x N patches of C = ``num_images`` x
    G sources, K = N / G each. With each source's patches on one unit
    vector and the C vectors on a regular simplex (cosine -1 / (C - 1): the
    best C unit vectors can do, given enough dimensions), every patch sees
    K - 1 positives at cosine 1 and M - K negatives at -1 / (C - 1):

        ln( (K - 1) + (M - K) exp(-(1 + 1 / (C - 1)) / t) ).

    Args:
        num_patches (int): N, patches per mixed image.
        group_size (int): G, sources per mixed image.
        temperature (float): t.
        num_images (int): mixed images in one softmax (1 for
            ``negatives='image'``).
    """
    K = num_patches // group_size
    C, M = num_images * group_size, num_images * num_patches
    gap = 1 + 1 / (C - 1)
    return math.log(max(K - 1, 1) + (M - K) * math.exp(-gap / temperature))


@MODELS.register_module()
class HomologousContrastiveLoss(BaseModule):
    """Supervised-contrastive loss over the patches of mixed images.

    For every patch, the other patches from the same source are positives;
    similarity is cosine over ``temperature``:

        L = mean_j  -1/|P(j)| sum_{p in P(j)}
                    log( exp(s_jp / t) / sum_{a in A(j)} exp(s_ja / t) ),

    with A(j) the candidates: the other patches of the same mixed image
    (``negatives='image'``, the patches of the other sources are the
    negatives) or of every mixed image of the batch (``negatives='batch'``:
    the same slot of another group is a negative too, so the segment
    embedding alone cannot solve it).

    It is a regulariser next to the reconstruction loss
    (``L = L_rec + loss_weight * L_homocon``). The defaults are this
    toolbox's choice: the slides give none.

    The loss has a floor that features reach once they are clustered by
    source as well as unit vectors can be: every source's patches on one
    point, the sources on a regular simplex (cosine -1 / (C - 1) between
    the C sources of one softmax). :func:`homocon_floor` gives it; at a
    low temperature it tends to ``ln(K - 1)``.

    Args:
        temperature (float): softmax temperature. Defaults to 0.25.
        loss_weight (float): lambda. Defaults to 0.1.
        negatives (str): ``'image'`` or ``'batch'``, see above. Defaults to
            ``'image'``.
        projector (dict, optional): a 2-layer MLP applied to the features
            first (``in_channels``, ``hid_channels``, ``out_channels``), as
            contrastive methods put between the encoder and the loss; None
            for none. It is part of the head, so it is dropped with it at
            conversion. Defaults to None.
    """

    NEGATIVES = ('image', 'batch')

    def __init__(self,
                 temperature: float = 0.25,
                 loss_weight: float = 0.1,
                 negatives: str = 'image',
                 projector: Optional[dict] = None,
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        if temperature <= 0:
            raise ValueError(
                f'`temperature` must be positive, got {temperature}.')
        if loss_weight < 0:
            raise ValueError(
                f'`loss_weight` must be non-negative, got {loss_weight}.')
        if negatives not in self.NEGATIVES:
            raise ValueError(f'`negatives` must be one of {self.NEGATIVES}, '
                             f'got {negatives!r}.')
        self.temperature = temperature
        self.loss_weight = loss_weight
        self.negatives = negatives
        self.projector = None
        if projector is not None:
            keys = {'in_channels', 'hid_channels', 'out_channels'}
            if set(projector) != keys:
                raise ValueError(f'`projector` needs exactly the keys '
                                 f'{sorted(keys)}, got {sorted(projector)}.')
            self.projector = nn.Sequential(
                nn.Linear(projector['in_channels'],
                          projector['hid_channels']), nn.GELU(),
                nn.Linear(projector['hid_channels'],
                          projector['out_channels']))

    def floor(self, num_patches: int, group_size: int,
              num_images: int = 1) -> float:
        """The weighted loss's floor (:func:`homocon_floor`) for mixed
        images of ``num_patches`` patches from ``group_size`` sources,
        ``num_images`` mixed images per batch (``negatives='batch'``)."""
        return self.loss_weight * homocon_floor(
            num_patches, group_size, self.temperature,
            num_images if self.negatives == 'batch' else 1)

    def forward(self, feats: torch.Tensor,
                source_ids: torch.Tensor) -> torch.Tensor:
        """
        Args:
            feats (Tensor): (S, N, D) patch features of S mixed images.
            source_ids (Tensor): (S, N) source slot of each patch.

        Returns:
            Tensor: the weighted scalar loss.
        """
        if self.projector is not None:
            feats = self.projector(feats)
        if self.negatives == 'batch':
            # one sequence of all S*N patches; (image, slot) is the source
            S, N = source_ids.shape
            source_ids = source_ids + N * torch.arange(
                S, device=source_ids.device).view(S, 1)
            feats, source_ids = feats.reshape(1, S * N, -1), \
                source_ids.reshape(1, S * N)
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
