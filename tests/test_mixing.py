import pytest
import torch

from mixedae.utils import (check_mix_ratio, mix_images, patchify,
                           random_mixing_masks, unpatchify)


@pytest.mark.parametrize('G,N', [(2, 16), (4, 16), (4, 196), (8, 64)])
def test_every_source_holds_exactly_k_positions(G, N):
    torch.manual_seed(0)
    masks = random_mixing_masks(5, N, G, num_views=1)
    assert masks.shape == (5, 1, N)
    counts = torch.stack([(masks == s).sum(-1) for s in range(G)], -1)
    assert (counts == N // G).all()


def test_masks_differ_between_groups_and_calls():
    torch.manual_seed(0)
    a = random_mixing_masks(8, 64, 4)
    b = random_mixing_masks(8, 64, 4)
    assert not torch.equal(a, b)
    assert len({tuple(m.tolist()) for m in a[:, 0]}) == 8


def test_views_are_cyclic_shifts_and_full_views_cover_every_patch_once():
    torch.manual_seed(0)
    G, N = 4, 16
    masks = random_mixing_masks(3, N, G, num_views=G)
    for v in range(G):
        assert torch.equal(masks[:, v], (masks[:, 0] + v) % G)
    # with V = G every source fills every position in exactly one view
    for s in range(G):
        assert ((masks == s).sum(1) == 1).all()


def test_mixed_image_patch_j_is_source_mj_patch_j_pixel_exact():
    torch.manual_seed(0)
    G, p, V = 4, 8, 2
    imgs = torch.rand(2 * G, 3, 32, 32)
    masks = random_mixing_masks(2, 16, G, num_views=V)
    mixed = mix_images(imgs, masks, p)
    assert mixed.shape == (2 * V, 3, 32, 32)
    for q in range(2):
        for v in range(V):
            for j in range(16):
                r, c = divmod(j, 4)
                src = imgs[q * G + masks[q, v, j], :, r * p:(r + 1) * p,
                           c * p:(c + 1) * p]
                got = mixed[q * V + v, :, r * p:(r + 1) * p,
                            c * p:(c + 1) * p]
                assert torch.equal(src, got)


def test_patchify_roundtrip_and_order():
    imgs = torch.arange(2 * 3 * 8 * 8, dtype=torch.float).view(2, 3, 8, 8)
    x = patchify(imgs, 4)
    assert x.shape == (2, 4, 48)
    # patch 1 is the top-right 4x4 block, channel-last inside the patch
    assert torch.equal(x[0, 1].view(4, 4, 3).permute(2, 0, 1),
                       imgs[0, :, :4, 4:])
    assert torch.equal(unpatchify(x, 4, 3, (2, 2)), imgs)


@pytest.mark.parametrize('ratio,msg', [(0.3, '1/G'), (0.6, r'\(0, 0.5\]'),
                                       (0.0, r'\(0, 0.5\]')])
def test_bad_mix_ratio_names_the_key(ratio, msg):
    with pytest.raises(ValueError, match=f'mix_ratio.*{msg}'):
        check_mix_ratio(ratio, 16)


def test_mix_ratio_needs_integer_rn():
    with pytest.raises(ValueError, match='mix_ratio.*r \\* N'):
        check_mix_ratio(0.25, 18)
    assert check_mix_ratio(0.5, 18) == 2
