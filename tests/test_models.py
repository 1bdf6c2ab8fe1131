import pytest
import torch
from mmpretrain.models import VisionTransformer
from mmpretrain.registry import MODELS

from conftest import TINY_ARCH, build_tiny, tiny_cfg
from mixedae.models import HomologousAttention


def test_decoder_input_of_source_holds_only_its_own_tokens(tiny_model):
    model = tiny_model
    torch.manual_seed(0)
    G, V, N = 4, 2, 16
    Q = 2
    latent = torch.randn(Q * V, 1 + N, 64)
    masks = torch.randint(0, G, (Q, V, N))
    dec_in = model.neck.unmix(latent, masks, G)  # (B*V, 1+N, Dd)
    assert dec_in.shape == (Q * G * V, 1 + N, 32)
    embedded = model.neck.decoder_embed(latent)
    mask_token = model.neck.mask_token[0, 0]
    for q in range(Q):
        for s in range(G):
            for v in range(V):
                row = dec_in[(q * G + s) * V + v]
                view = embedded[q * V + v]
                assert torch.equal(row[0], view[0])  # the view's cls token
                own = masks[q, v] == s
                assert torch.equal(row[1:][own], view[1:][own])
                assert (row[1:][~own] == mask_token).all()


def test_full_views_see_every_patch_of_every_image_once():
    torch.manual_seed(0)
    model = build_tiny(num_views=4)
    imgs = torch.randn(8, 3, 32, 32)
    masks = model.backbone.draw_masks(imgs)
    assert masks.shape == (2, 4, 16)
    for s in range(4):
        assert ((masks == s).sum(dim=1) == 1).all()


def test_loss_terms_finite_and_gradients_reach_every_trainable_param(
        tiny_model):
    torch.manual_seed(0)
    imgs = torch.randn(8, 3, 32, 32)
    losses = tiny_model.loss(imgs, None)
    assert {'loss_rec', 'loss_homocon', 'homo_prec', 'homo_prec_l0',
            'homo_prec_l1'} <= set(losses)
    for key in ('loss_rec', 'loss_homocon'):
        assert torch.isfinite(losses[key]) and losses[key] > 0
    # the logged precision is the mean over the homologous layers (the
    # per-layer count is tested in test_homologous_attention.py)
    per_layer = [losses[f'homo_prec_l{i}'].item() for i in (0, 1)]
    assert per_layer[0] != per_layer[1]
    assert losses['homo_prec'].item() == pytest.approx(sum(per_layer) / 2)
    loss, _ = tiny_model.parse_losses(losses)
    loss.backward()
    for name, p in tiny_model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and p.grad.abs().sum() > 0, name
    # fixed sin-cos position embeddings stay fixed
    assert not tiny_model.backbone.pos_embed.requires_grad
    assert not tiny_model.neck.decoder_pos_embed.requires_grad


def test_reconstruction_loss_only_on_positions_the_source_did_not_fill(
        tiny_model):
    torch.manual_seed(0)
    head = tiny_model.head
    imgs = torch.randn(4, 3, 32, 32)
    masks = torch.randint(0, 4, (1, 1, 16))
    target = head.construct_target(imgs)
    pred = target.clone()
    own = torch.stack([masks[0, 0] == s for s in range(4)])  # (B, N)
    pred[own] += 10.  # errors only where the source is visible
    feats = torch.randn(1, 16, 64)
    assert head.loss(pred, imgs, feats, masks)['loss_rec'] == 0
    pred[~own] += 1.
    assert torch.isclose(
        head.loss(pred, imgs, feats, masks)['loss_rec'], torch.tensor(1.))


def test_homocon_prefers_features_clustered_by_source():
    loss = MODELS.build(
        dict(type='HomologousContrastiveLoss', temperature=0.1,
             loss_weight=1.))
    src = torch.tensor([[0, 0, 1, 1, 2, 2, 3, 3]])
    centres = torch.eye(4) * 5
    clustered = centres[src] + 0.01 * torch.randn(1, 8, 4)
    shuffled = clustered[:, torch.tensor([0, 2, 4, 6, 1, 3, 5, 7])]
    assert loss(clustered, src) < 0.1 < loss(shuffled, src)


def test_state_dict_loads_into_vision_transformer_with_same_features(
        tiny_model):
    backbone = tiny_model.backbone
    vit = VisionTransformer(
        arch=TINY_ARCH, img_size=32, patch_size=8, out_type='raw')
    backbone.eval()  # mmpretrain's backbones' train() returns None
    vit.eval()
    missing, unexpected = vit.load_state_dict(
        backbone.state_dict(), strict=False)
    assert missing == []
    assert unexpected == ['segment_embed']
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(
            backbone(x, mask=None)[0], vit(x)[0], atol=1e-6)
    # the homologous attention keeps mmpretrain's parameter names
    assert isinstance(backbone.layers[0].attn, HomologousAttention)
    assert 'layers.0.attn.qkv.weight' in backbone.state_dict()


def test_homo_layers_subset_and_none():
    model = build_tiny(homo_layers=[1])
    attns = [type(layer.attn).__name__ for layer in model.backbone.layers]
    assert attns == ['MultiheadAttention', 'HomologousAttention']
    losses = build_tiny(homo_layers=[]).loss(torch.randn(4, 3, 32, 32), None)
    assert 'homo_prec' not in losses and 'loss_homocon' in losses


def test_no_homocon_and_no_segment_embed():
    cfg = tiny_cfg(segment_embed=None)
    cfg['head']['homocon_loss'] = None
    model = MODELS.build(cfg)
    assert not hasattr(model.backbone, 'segment_embed')
    losses = model.loss(torch.randn(4, 3, 32, 32), None)
    assert set(k for k in losses if k.startswith('loss')) == {'loss_rec'}


def test_segment_embedding_changes_the_encoding(tiny_model):
    bb = tiny_model.backbone
    bb.eval()
    x = torch.randn(4, 3, 32, 32)
    masks = bb.draw_masks(x)
    a = bb.encode_mixed(x, masks)
    with torch.no_grad():
        bb.segment_embed.add_(1.)
    assert not torch.allclose(a, bb.encode_mixed(x, masks))


def test_reconstruct_pastes_own_visible_patches(tiny_model):
    torch.manual_seed(0)
    x = torch.randn(4, 3, 32, 32)
    out = tiny_model.eval().reconstruct(x)
    assert out['mixed'].shape == (1, 3, 32, 32)
    assert out['recon'].shape == (4, 3, 32, 32)
    m = out['masks'][0, 0].view(4, 4)
    for s in range(4):
        own = (m == s).repeat_interleave(8, 0).repeat_interleave(8, 1)
        assert torch.allclose(out['recon'][s][:, own], x[s][:, own])
        assert torch.allclose(out['mixed'][0][:, own], x[s][:, own])


@pytest.mark.parametrize('kwargs,match', [
    (dict(mix_ratio=0.3), 'mix_ratio'),
    (dict(mix_ratio=0.125, img_size=24), 'mix_ratio.*r \\* N'),
    (dict(num_views=5), 'num_views'),
    (dict(num_views=0), 'num_views'),
    (dict(homo_topk=18), 'homo_topk'),
    (dict(homo_topk=0), 'homo_topk'),
    (dict(homo_layers=[2]), 'homo_layers'),
    (dict(homo_layers='last'), 'homo_layers'),
    (dict(img_size=30), 'img_size.*patch_size'),
])
def test_bad_config_raises_naming_the_key(kwargs, match):
    cfg = dict(type='MixedAEViT', arch=TINY_ARCH, img_size=32, patch_size=8)
    cfg.update(kwargs)
    with pytest.raises(ValueError, match=match):
        MODELS.build(cfg)


def test_batch_not_divisible_by_group_size_is_a_clear_error(tiny_model):
    with pytest.raises(ValueError, match='batch_size.*multiple of G'):
        tiny_model.loss(torch.randn(6, 3, 32, 32), None)


def test_wrong_input_size_is_a_clear_error(tiny_model):
    with pytest.raises(ValueError, match='img_size'):
        tiny_model.loss(torch.randn(4, 3, 48, 48), None)


def test_loss_under_autocast_keeps_dtypes_consistent(tiny_model):
    # AMP on GPUs runs fp16; the CPU's bfloat16 autocast exercises the same
    # dtype mixing (mask token vs encoder tokens, HomoCon in fp32)
    torch.manual_seed(0)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        losses = tiny_model.loss(torch.randn(8, 3, 32, 32), None)
    assert torch.isfinite(losses['loss_rec'])
    assert torch.isfinite(losses['loss_homocon'])
    assert losses['loss_homocon'].dtype == torch.float32


def test_homologous_attention_keeps_the_layer_settings():
    cfg = dict(type='MixedAEViT', arch=TINY_ARCH, img_size=32, patch_size=8,
               drop_path_rate=0.2, drop_rate=0.1, homo_layers=[1])
    bb = MODELS.build(cfg)
    ref = MODELS.build(dict(cfg, homo_layers=[]))
    homo, vanilla = bb.layers[1].attn, ref.layers[1].attn
    assert isinstance(homo, HomologousAttention)
    assert homo.out_drop.drop_prob == vanilla.out_drop.drop_prob > 0
    assert homo.proj_drop.p == vanilla.proj_drop.p == 0.1
    assert homo.state_dict().keys() == vanilla.state_dict().keys()
