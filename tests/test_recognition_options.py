"""The switches of homologous recognition: where the segment embedding
goes, which features and negatives HomoCon uses, its floor, and the size
checks made when a MixedAE is built."""
import math

import pytest
import torch
import torch.nn.functional as F
from mmpretrain.registry import MODELS

from conftest import build_tiny, tiny_cfg
from mixedae.models import HomologousAttention
from mixedae.models.utils.homologous_attention import \
    topk_attention_reference


def test_segment_rows_enter_queries_and_keys_not_values():
    torch.manual_seed(0)
    attn = HomologousAttention(embed_dims=16, num_heads=2).eval()
    x = torch.randn(2, 5, 16)
    src = torch.tensor([[-1, 0, 1, 1, 0]] * 2)  # cls, then two sources
    seg = torch.randn(2, 16)
    out = attn(x, topk=3, source_ids=src, qk_segments=seg)
    # by hand: the source's row added to the input of q and k only
    e = torch.cat((torch.zeros(1, 16), seg))[src + 1]  # (B, T, C)
    W, b = attn.qkv.weight, attn.qkv.bias
    q = F.linear(x + e, W[:16], b[:16])
    k = F.linear(x + e, W[16:32], b[16:32])
    v = F.linear(x, W[32:], b[32:])
    heads = [t.view(2, 5, 2, 8).transpose(1, 2) for t in (q, k, v)]
    ref = topk_attention_reference(*heads, 3, 8**-0.5)
    ref = attn.proj(ref.transpose(1, 2).reshape(2, 5, 16))
    assert torch.allclose(out, ref, atol=1e-5)


def _outputs_after_changing_a_source(segment_embed):
    """A MixedAE whose queries and keys see the segment embedding as it is
    (q = k = identity on it, a large norm): encoder outputs at source 0's
    positions before and after replacing the pixels of source 1."""
    torch.manual_seed(0)
    model = build_tiny(segment_embed=segment_embed, homo_topk=4).eval()
    bb = model.backbone
    D = bb.embed_dims
    with torch.no_grad():
        for i in bb.homo_layers:
            bb.layers[i].attn.qkv.weight[:2 * D] = torch.cat(
                (torch.eye(D), torch.eye(D)))
        if segment_embed is not None:  # in the dims of both heads
            rows = torch.eye(bb.group_size, D)
            bb.segment_embed.copy_((rows + rows.roll(D // 2, 1)) * 300.)
    x = torch.randn(4, 3, 32, 32)
    masks = bb.draw_masks(x)
    y = x.clone()
    y[1] = torch.randn(3, 32, 32)
    with torch.no_grad():
        a, b = bb.encode_mixed(x, masks), bb.encode_mixed(y, masks)
    pos = (masks[0, 0] == 0).nonzero().flatten() + 1  # +1: cls first
    return a[0, pos], b[0, pos]


def test_segment_embedding_in_attention_can_isolate_each_source():
    # the selection follows the segment embedding: each token keeps its
    # own source's K patches in every layer, so another source's pixels
    # cannot reach it
    before, after = _outputs_after_changing_a_source('attention')
    assert torch.allclose(before, after, atol=1e-5)
    # without it the content decides, and other sources leak in
    before, after = _outputs_after_changing_a_source(None)
    assert not torch.allclose(before, after, atol=1e-3)


def test_segment_embedding_in_attention_steers_the_attention():
    model = build_tiny(segment_embed='attention').eval()
    bb = model.backbone
    x = torch.randn(4, 3, 32, 32)
    masks = bb.draw_masks(x)
    with torch.no_grad():
        before = bb.encode_mixed(x, masks)
        bb.segment_embed.add_(torch.randn_like(bb.segment_embed))
        assert not torch.allclose(before, bb.encode_mixed(x, masks))
        # it enters through the homologous-attention layers only: in the
        # unmixed (fine-tuning) path it does nothing
        plain = bb(x, mask=None)[0]
        bb.segment_embed.zero_()
        assert torch.equal(plain, bb(x, mask=None)[0])


def test_homologous_bias_is_non_negative_and_steers_the_selection():
    model = build_tiny(homo_bias=1.0)
    bb = model.backbone
    assert torch.allclose(F.softplus(bb.homo_bias), torch.ones(2, 2))
    x = torch.randn(8, 3, 32, 32)
    losses = model.loss(x, None)
    (losses['loss_rec'] + losses['loss_homocon']).backward()
    assert bb.homo_bias.grad.abs().sum() > 0
    # a large bias makes every kept key homologous; it cannot go below 0,
    # so it can never favour the other sources
    with torch.no_grad():
        bb.homo_bias.fill_(50.)
    losses = model.loss(x, None)
    assert float(losses['homo_prec']) == 1.0
    with torch.no_grad():
        bb.homo_bias.fill_(-50.)
    assert F.softplus(bb.homo_bias).min() >= 0
    # a pre-training checkpoint's encoder drops it, like the segment
    # embedding: a plain ViT has no such parameter
    from mixedae.utils.checkpoint import convert_to_vit
    vit = convert_to_vit(dict(state_dict=model.state_dict()))
    assert 'homo_bias' not in vit and 'segment_embed' not in vit


def test_homocon_layer_feeds_features_of_that_layer():
    torch.manual_seed(0)
    model = build_tiny(homocon_layer=0)
    x = torch.randn(8, 3, 32, 32)
    latent, masks, feats = model.backbone(x)
    loss = model.head.homocon_loss(feats, masks.flatten(0, 1))
    loss.backward()
    layers = model.backbone.layers
    # HomoCon on layer 0's output trains layer 0 and nothing after it
    assert layers[0].ffn.layers[1].weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in layers[1].parameters())
    assert not torch.allclose(feats, latent[:, 1:])
    # the default: the final, normalised patch tokens
    model = build_tiny()
    latent, _, feats = model.backbone(x)
    assert torch.equal(feats, latent[:, 1:])


def _slot_features(num_images=8, N=16, G=4, D=32):
    """Features that cluster perfectly by slot, the same in every image:
    what the segment embedding on the tokens makes trivially reachable."""
    slots = torch.arange(N).remainder(G).expand(num_images, N)
    directions = torch.eye(D)[:G] * 20
    return directions[slots], slots


def test_batch_negatives_defeat_the_slot_shortcut():
    feats, slots = _slot_features()
    # a low temperature, so that perfect clusters reach the floor
    cfg = dict(type='HomologousContrastiveLoss', temperature=0.02,
               loss_weight=1.0)
    image = MODELS.build(dict(cfg, negatives='image'))
    batch = MODELS.build(dict(cfg, negatives='batch'))
    K = 4
    # the 4 slot directions are orthogonal, not a simplex: at t = 0.02 the
    # floor (simplex) and these features both give ln(K - 1) to 1e-4
    floor = image.floor(16, 4)
    assert floor == pytest.approx(math.log(K - 1), abs=1e-4)
    assert image(feats, slots) == pytest.approx(floor, abs=1e-4)
    # with the other images' same slot as negatives, identical features
    # cost ln(#same-slot patches - 1) instead of ln(K - 1)
    assert batch(feats, slots) == pytest.approx(math.log(8 * K - 1),
                                                abs=1e-3)


def test_homocon_floor_is_reached_by_simplex_clusters():
    # G = 4 sources on a regular simplex (cosine -1/3), K = 4 patches each
    simplex = torch.eye(4) - 0.25
    simplex = F.normalize(simplex, dim=1)
    slots = torch.arange(16).remainder(4).expand(2, 16)
    feats = simplex[slots]
    for t in (0.25, 1.0):
        loss = MODELS.build(dict(type='HomologousContrastiveLoss',
                                 temperature=t, loss_weight=1.0))
        assert float(loss(feats, slots)) == pytest.approx(
            loss.floor(16, 4), abs=1e-5)
        # any other arrangement is above it: orthogonal sources
        ortho = torch.eye(4)[slots]
        assert float(loss(ortho, slots)) > loss.floor(16, 4) + 1e-3
    # at t = 1 the floor is far above ln(K - 1): HomoCon cannot saturate
    assert loss.floor(16, 4) > math.log(3) + 0.3


def test_projector_is_part_of_the_head_and_trained():
    cfg = tiny_cfg()
    cfg['head']['homocon_loss'] = dict(
        type='HomologousContrastiveLoss',
        projector=dict(in_channels=64, hid_channels=32, out_channels=16))
    model = MODELS.build(cfg)
    losses = model.loss(torch.randn(8, 3, 32, 32), None)
    losses['loss_homocon'].backward()
    proj = model.head.homocon_loss.projector
    assert all(p.grad.abs().sum() > 0 for p in proj.parameters())
    assert not any('projector' in k for k in model.backbone.state_dict())
    with pytest.raises(ValueError, match='projector'):
        MODELS.build(dict(type='HomologousContrastiveLoss',
                          projector=dict(in_channels=64)))


@pytest.mark.parametrize('backbone, match', [
    (dict(segment_embed='token'), 'segment_embed'),
    (dict(segment_embed='attention', homo_layers=[]), 'segment_embed'),
    (dict(homocon_layer=2), 'homocon_layer'),
    (dict(homo_bias=0.), 'homo_bias'),
    (dict(homo_bias=1., homo_layers=[]), 'homo_bias'),
    (dict(segment_embed_std=0.), 'segment_embed_std'),
])
def test_bad_recognition_keys_name_the_key(backbone, match):
    with pytest.raises(ValueError, match=match):
        MODELS.build(tiny_cfg(**backbone))


@pytest.mark.parametrize('part, key, value, match', [
    ('neck', 'num_patches', 64, 'model.neck.num_patches'),
    ('neck', 'embed_dim', 32, 'model.neck.embed_dim'),
    ('neck', 'in_chans', 1, 'model.neck.in_chans'),
    ('head', 'patch_size', 16, 'model.head.patch_size'),
    ('head', 'in_channels', 1, 'model.head.in_channels'),
    ('head', 'homocon_loss', dict(
        type='HomologousContrastiveLoss',
        projector=dict(in_channels=32, hid_channels=8, out_channels=8)),
     'projector.in_channels'),
])
def test_parts_that_do_not_fit_are_refused_when_built(part, key, value,
                                                      match):
    cfg = tiny_cfg()
    cfg[part][key] = value
    with pytest.raises(ValueError, match=match):
        MODELS.build(cfg)
