"""MixedAE unmixing decoder."""
import torch
from mmpretrain.models.necks import MAEPretrainDecoder
from mmpretrain.registry import MODELS


@MODELS.register_module()
class MixedAEPretrainDecoder(MAEPretrainDecoder):
    """MAE's lightweight decoder, run once per (source image, view).

    For source ``s`` of a group and view ``v``, the decoder input holds the
    encoder tokens of mixed image ``(q, v)`` at the positions that source
    filled (``masks[q, v] == s``), the mask token everywhere else, and the
    mixed image's cls token; so the decoder runs on B * V sequences of N + 1
    tokens, as MAE's runs on B. Arguments are :class:`MAEPretrainDecoder`'s.
    """

    def unmix(self, x: torch.Tensor, masks: torch.Tensor,
              group_size: int) -> torch.Tensor:
        """Build the decoder input sequences, before the position embedding.

        Args:
            x (Tensor): (Q*V, 1+N, D) encoder tokens of the mixed images.
            masks (Tensor): (Q, V, N) mixing masks.
            group_size (int): G, sources per group.

        Returns:
            Tensor: (B*V, 1+N, Dd) with row ``(q*G + s) * V + v`` the input
            for source ``s`` of group ``q`` from view ``v``.
        """
        Q, V, N = masks.shape
        G = group_size
        x = self.decoder_embed(x)  # (Q*V, 1+N, Dd)
        Dd = x.shape[-1]
        cls_tok, patches = x[:, :1], x[:, 1:]
        patches = patches.view(Q, 1, V, N, Dd)
        slot = torch.arange(G, device=masks.device).view(1, G, 1, 1)
        own = (masks.unsqueeze(1) == slot).unsqueeze(-1)  # (Q, G, V, N, 1)
        patches = torch.where(own, patches, self.mask_token.to(x.dtype))
        cls_tok = cls_tok.view(Q, 1, V, 1, Dd).expand(Q, G, V, 1, Dd)
        return torch.cat((cls_tok, patches), dim=3).reshape(Q * G * V, N + 1,
                                                             Dd)

    def forward(self, x: torch.Tensor, masks: torch.Tensor,
                group_size: int) -> torch.Tensor:
        """Predict every source's patches: (B*V, N, p*p*C)."""
        x = self.unmix(x, masks, group_size) + self.decoder_pos_embed
        for blk in self.decoder_blocks:
            x = blk(x)
        x = self.decoder_pred(self.decoder_norm(x))
        return x[:, 1:]  # drop the cls token
