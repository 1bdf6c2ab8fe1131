# MixedAE with ViT-B/16: r = 0.25 (groups of G = 4), homologous attention in
# every layer with top-k = K = rN from the content alone (no segment
# embedding, no homologous bias), trained to recognise the sources by the
# attention recognition loss on its content logits; no HomoCon on the
# features (on Fashion-MNIST it cost k-NN accuracy; with it:
# configs/mixedae/mixedae-feature-homocon_*.py). Why this recipe, and not
# our first reading of the paper (configs/mixedae/mixedae-paper-reading_*.py)
# or the ground-truth prior (configs/mixedae/mixedae-gt-prior_*.py):
# docs/homologous_recognition.md.
model = dict(
    type='MixedAE',
    backbone=dict(
        type='MixedAEViT',
        arch='b',
        patch_size=16,
        mix_ratio=0.25,
        num_views=1,
        segment_embed=None,
        homo_bias=None,
        recognition_weight=0.1,
        homo_layers='all',
        homo_topk=None),  # None: K = mix_ratio * num_patches
    neck=dict(
        type='MixedAEPretrainDecoder',
        patch_size=16,
        in_chans=3,
        embed_dim=768,
        decoder_embed_dim=512,
        decoder_depth=8,
        decoder_num_heads=16,
        mlp_ratio=4.,
    ),
    head=dict(
        type='MixedAEPretrainHead',
        norm_pix=True,
        patch_size=16,
        loss=dict(type='PixelReconstructionLoss', criterion='L2'),
        homocon_loss=None),
    init_cfg=[
        dict(type='Xavier', layer='Linear', distribution='uniform'),
        dict(type='Constant', layer='LayerNorm', val=1.0, bias=0.0)
    ])
