"""Symmetric mixing: masks, patchify, and the mixing of images.

Conventions used across the package (B images, G = 1 / mix_ratio images per
group, Q = B / G groups, V mixed views per group, N patches, K = N / G):

* images of a batch are grouped consecutively: image ``b`` is slot
  ``b % G`` of group ``b // G``;
* a mixing mask has shape (Q, V, N) and holds, for every patch position, the
  slot of the source image that fills it. View ``v`` is the cyclic shift
  ``(M + v) mod G`` of the group's base mask ``M``, in which every slot holds
  exactly K positions;
* mixed images are ordered group-major: mixed image ``q * V + v``.
"""
import torch


def check_mix_ratio(mix_ratio: float, num_patches: int) -> int:
    """Validate ``mix_ratio`` and return the group size G = 1 / mix_ratio.

    Raises:
        ValueError: naming ``mix_ratio`` when 1/r is not an integer >= 2 or
            r * N is not an integer.
    """
    if not 0 < mix_ratio <= 0.5:
        raise ValueError(f'`mix_ratio` must be in (0, 0.5], got {mix_ratio}.')
    group_size = round(1 / mix_ratio)
    if abs(group_size * mix_ratio - 1) > 1e-6:
        raise ValueError(
            f'`mix_ratio` must be 1/G for an integer G >= 2 (the group size),'
            f' got {mix_ratio} (1/r = {1 / mix_ratio:.4g}).')
    if num_patches % group_size:
        raise ValueError(
            f'`mix_ratio`={mix_ratio} needs r * N to be an integer, but the '
            f'image has N={num_patches} patches (set by `img_size` and '
            f'`patch_size`): {num_patches} * {mix_ratio} is not an integer.')
    return group_size


def random_mixing_masks(num_groups: int,
                        num_patches: int,
                        group_size: int,
                        num_views: int = 1,
                        device=None) -> torch.Tensor:
    """Draw one symmetric mixing mask per group and its cyclic views.

    A random permutation of the N positions is cut into G chunks of K; chunk
    ``s`` is filled by slot ``s``.

    Returns:
        torch.Tensor: long tensor (Q, V, N) with values in [0, G).
    """
    k = num_patches // group_size
    perm = torch.rand(num_groups, num_patches, device=device).argsort(dim=1)
    slot_of_rank = torch.arange(
        num_patches, device=device).div(k, rounding_mode='floor')
    base = torch.empty_like(perm).scatter_(
        1, perm, slot_of_rank.expand(num_groups, -1))  # (Q, N)
    shifts = torch.arange(num_views, device=device).view(1, -1, 1)
    return (base.unsqueeze(1) + shifts) % group_size  # (Q, V, N)


def patchify(imgs: torch.Tensor, patch_size: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, N, p*p*C), patches row-major, MAE's pixel order."""
    B, C, H, W = imgs.shape
    p = patch_size
    h, w = H // p, W // p
    x = imgs.reshape(B, C, h, p, w, p)
    x = torch.einsum('nchpwq->nhwpqc', x)
    return x.reshape(B, h * w, p * p * C)


def unpatchify(x: torch.Tensor, patch_size: int, channels: int,
               grid: tuple) -> torch.Tensor:
    """(B, N, p*p*C) -> (B, C, H, W); inverse of :func:`patchify`."""
    p = patch_size
    h, w = grid
    x = x.reshape(x.shape[0], h, w, p, p, channels)
    x = torch.einsum('nhwpqc->nchpwq', x)
    return x.reshape(x.shape[0], channels, h * p, w * p)


def mix_images(imgs: torch.Tensor, masks: torch.Tensor,
               patch_size: int) -> torch.Tensor:
    """Compose the mixed images: patch j of view v of group q is patch j of
    source ``q * G + masks[q, v, j]``.

    Args:
        imgs (Tensor): (B, C, H, W) sources, B = Q * G.
        masks (Tensor): (Q, V, N) mixing masks.

    Returns:
        Tensor: (Q * V, C, H, W) mixed images, group-major.
    """
    B, C, H, W = imgs.shape
    Q, V, N = masks.shape
    group_size = B // Q
    patches = patchify(imgs, patch_size)  # (B, N, P)
    source = masks + group_size * torch.arange(
        Q, device=masks.device).view(Q, 1, 1)  # (Q, V, N) image index
    position = torch.arange(N, device=masks.device)
    mixed = patches[source, position]  # (Q, V, N, P)
    return unpatchify(
        mixed.flatten(0, 1), patch_size, C,
        (H // patch_size, W // patch_size))
