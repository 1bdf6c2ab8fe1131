"""The methods the study compares: a pre-training config and the overrides
that make each method, spelled out so that a method does not depend on the
config's defaults."""
import os.path as osp
from typing import Optional

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.dirname(
    osp.abspath(__file__)))))
MAE_CFG = 'configs/mae/mae_vit-tiny-p4_1xb128-coslr-3e_fashion-mnist-32px.py'
MIXEDAE_CFG = ('configs/mixedae/'
               'mixedae_vit-tiny-p4_1xb128-coslr-3e_fashion-mnist-32px.py')
FLOOR = 'random init'
# the demo's patch grid: N patches, G sources per mixed image
NUM_PATCHES, GROUP_SIZE = 64, 4


def _mixedae(segment_embed='tokens', homo_layers='all', homocon=True,
             segment_embed_std=0.02, homo_bias=None, recognition=None,
             **keys) -> dict:
    """Overrides of the MixedAE demo config that spell out every switch the
    study varies, so that a method does not change with the config's
    defaults. Keys of the rarely varied switches (``segment_embed_std``,
    ``bias_drop``, ``bias_anneal``) appear only when not at the config's
    value."""
    loss = dict(type='HomologousContrastiveLoss', temperature=0.25,
                loss_weight=0.1, negatives='image', projector=None)
    loss.update(keys.pop('loss', {}))
    out = {
        'model.backbone.segment_embed': segment_embed,
        'model.backbone.homo_layers': homo_layers,
        'model.backbone.homo_bias': homo_bias,
        'model.backbone.homocon_layer': keys.pop('layer', -1),
        'model.backbone.recognition_weight': recognition,
        'model.head.homocon_loss': loss if homocon else None,
    }
    optional = (('segment_embed_std', segment_embed_std, 0.02),
                ('homo_bias_drop', keys.pop('bias_drop', 0.), 0.),
                ('homo_bias_anneal', keys.pop('bias_anneal', None), None))
    assert not keys, keys
    for key, value, default in optional:
        if value != default:
            out[f'model.backbone.{key}'] = value
    return out


# a 2-layer MLP between the encoder and HomoCon (SimCLR's projection head)
PROJECTOR = dict(in_channels=192, hid_channels=512, out_channels=128)

# method -> (pre-training config, config overrides)
METHODS = {
    'MAE': (MAE_CFG, {}),
    'naive mixing': (MIXEDAE_CFG, _mixedae(homo_layers=[], homocon=False)),
    # the default (docs/homologous_recognition.md): no source cue in the
    # forward pass, the attention recognition loss on every HomoAtt
    # layer's content logits, no HomoCon on the features
    'MixedAE': (MIXEDAE_CFG, _mixedae(segment_embed=None, recognition=0.1,
                                      homocon=False)),
    # the default before: the same with HomoCon on a projector
    'MixedAE with feature HomoCon': (MIXEDAE_CFG, _mixedae(
        segment_embed=None, recognition=0.1,
        loss=dict(projector=PROJECTOR))),
    # the default before that: a homologous bias from the mixing mask, a
    # ground-truth prior that stays; HomoCon on a projector
    'MixedAE (ground-truth prior)': (MIXEDAE_CFG, _mixedae(
        segment_embed=None, homo_bias=1.0, loss=dict(projector=PROJECTOR))),
    # our first reading of the paper: segment embedding on the tokens,
    # HomoCon on the final features against the other sources of the image
    'MixedAE (paper reading)': (MIXEDAE_CFG, _mixedae()),
}
# Diagnosis variants (docs/homologous_recognition.md): each changes one or
# two things of 'MixedAE (paper reading)' or of 'MixedAE'.
VARIANTS = {
    'paper reading w/o HomoCon': _mixedae(homocon=False),
    'no segment embedding': _mixedae(segment_embed=None),
    'no segment embedding, no HomoCon': _mixedae(segment_embed=None,
                                                 homocon=False),
    'HomoAtt in layers 0-4': _mixedae(homo_layers=[0, 1, 2, 3, 4]),
    'HomoAtt in layers 0-2': _mixedae(homo_layers=[0, 1, 2]),
    'HomoCon lambda 0.03': _mixedae(loss=dict(loss_weight=0.03)),
    'HomoCon lambda 0.3': _mixedae(loss=dict(loss_weight=0.3)),
    'HomoCon tau 0.1': _mixedae(loss=dict(temperature=0.1)),
    'HomoCon tau 1.0': _mixedae(loss=dict(temperature=1.0)),
    'HomoCon before the last block': _mixedae(layer=4),
    'HomoCon on a projector': _mixedae(loss=dict(projector=PROJECTOR)),
    'HomoCon with batch negatives': _mixedae(loss=dict(negatives='batch')),
    'segment embedding in attention': _mixedae(segment_embed='attention'),
    'segment embedding in attention, no HomoCon': _mixedae(
        segment_embed='attention', homocon=False),
    'segment embedding in attention, batch negatives': _mixedae(
        segment_embed='attention', loss=dict(negatives='batch')),
    'segment embedding in attention, init std 1': _mixedae(
        segment_embed='attention', segment_embed_std=1.0),
    'homologous bias': _mixedae(segment_embed=None, homo_bias=1.0),
    'homologous bias, batch negatives': _mixedae(
        segment_embed=None, homo_bias=1.0, loss=dict(negatives='batch')),
    'homologous bias 0.5, projector': _mixedae(
        segment_embed=None, homo_bias=0.5, loss=dict(projector=PROJECTOR)),
    'homologous bias, projector, batch negatives': _mixedae(
        segment_embed=None, homo_bias=1.0,
        loss=dict(projector=PROJECTOR, negatives='batch')),
    'ground-truth prior, HomoCon lambda 0.03': _mixedae(
        segment_embed=None, homo_bias=1.0,
        loss=dict(projector=PROJECTOR, loss_weight=0.03)),
    'ground-truth prior w/o HomoCon': _mixedae(
        segment_embed=None, homo_bias=1.0, homocon=False),
    # recognition from content: the candidates (each changes the prior or
    # the default in one way)
    'no source cue, projector': _mixedae(
        segment_embed=None, loss=dict(projector=PROJECTOR)),
    'bias annealed to 0': _mixedae(  # over the first 2/3
        segment_embed=None, homo_bias=1.0, bias_anneal=2 / 3,
        loss=dict(projector=PROJECTOR)),
    'bias dropped for half the images': _mixedae(
        segment_embed=None, homo_bias=1.0, bias_drop=0.5,
        loss=dict(projector=PROJECTOR)),
    'recognition loss 0.3': _mixedae(
        segment_embed=None, recognition=0.3,
        loss=dict(projector=PROJECTOR)),
    'recognition loss, ground-truth prior': _mixedae(
        segment_embed=None, homo_bias=1.0, recognition=0.1,
        loss=dict(projector=PROJECTOR)),
    'recognition loss, bias annealed to 0': _mixedae(
        segment_embed=None, homo_bias=1.0, bias_anneal=2 / 3,
        recognition=0.1, loss=dict(projector=PROJECTOR)),
}
METHODS.update((name, (MIXEDAE_CFG, keys)) for name, keys in VARIANTS.items())

# What one part of the recipe adds: (method, the method it builds on, the
# part); the report pairs them by seed when both ran.
COMPONENTS = (
    # naive mixing keeps the paper's segment embedding; the default has none
    ('MixedAE', 'naive mixing',
     'homologous attention + recognition loss for the segment embedding'),
    ('MixedAE with feature HomoCon', 'MixedAE',
     'HomoCon on the features (on a projector)'),
    ('MixedAE with feature HomoCon', 'no source cue, projector',
     'the recognition loss'),
    ('MixedAE', 'MixedAE (ground-truth prior)',
     'recognition from content instead of the ground-truth prior'),
    ('MixedAE with feature HomoCon', 'MixedAE (ground-truth prior)',
     'recognition from content + feature HomoCon instead of the prior'),
    ('MixedAE', 'MixedAE (paper reading)',
     'the default over the paper reading'),
)


def slug(name: str) -> str:
    """A file-name form of a method's name."""
    return ''.join(c if c.isalnum() or c in '.-' else '-'
                   for c in name.lower().replace('/', ''))


def method_config(method: str):
    """A method's config: its file with its overrides applied, a dict
    override as a whole spec (:func:`mixedae.utils.config.merge_whole`)."""
    from mmengine.config import Config

    from mixedae.utils.config import merge_whole
    path, overrides = METHODS[method]
    cfg = Config.fromfile(osp.join(ROOT, path))
    merge_whole(cfg, overrides)
    return cfg


def homocon_floor_of(method: str, batch_size: int) -> Optional[float]:
    """The weighted HomoCon floor of a MixedAE method's settings (None
    without HomoCon), on the demo's patch grid."""
    from mixedae.models.losses import homocon_floor
    loss = METHODS.get(method, (None, {}))[1].get('model.head.homocon_loss')
    if not loss:
        return None
    images = batch_size // GROUP_SIZE if loss['negatives'] == 'batch' else 1
    return loss['loss_weight'] * homocon_floor(
        NUM_PATCHES, GROUP_SIZE, loss['temperature'], images)
