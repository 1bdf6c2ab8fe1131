"""Homologous precision from content alone: the cue-free pass that tells a
given source prior from a learned ability, its foreground variant, the
warning when recognition is all prior, and the recipes that make the
encoder recognise from content (a bias dropped per image or annealed to
0, the attention recognition loss)."""
import logging
import math

import pytest
import torch
from mmengine.logging import MMLogger

from conftest import build_tiny
from mixedae.engine.hooks import MixedAEHook
from mixedae.utils.visualization import recording_keep_masks
from mixedae.models.utils.homologous_attention import (
    _same_source, homologous_precision, recognition_loss, topk_attention,
    topk_attention_reference)

CHANCE = 4 / 17  # tiny model: N = 16 patches, G = 4, K = 4


def _batch(seed=0):
    torch.manual_seed(seed)
    return torch.randn(8, 3, 32, 32)


def test_content_pass_is_the_encoder_without_its_cue():
    """With a huge homologous bias the precision as trained is ~1, and the
    content-only one equals that of the same weights built without any
    bias; the same holds for the segment embedding on the tokens."""
    for cue in (dict(homo_bias=1.0), dict(segment_embed='tokens')):
        torch.manual_seed(0)
        model = build_tiny(segment_embed=cue.get('segment_embed'),
                           homo_bias=cue.get('homo_bias')).eval()
        plain = build_tiny(segment_embed=None).eval()
        state = {k: v for k, v in model.state_dict().items()
                 if 'homo_bias' not in k and 'segment_embed' not in k}
        plain.load_state_dict(state)
        bb = model.backbone
        with torch.no_grad():
            if 'homo_bias' in cue:
                bb.homo_bias.fill_(50.)
            else:
                bb.segment_embed.mul_(1000.)
        x = _batch()
        masks = bb.draw_masks(x)
        got = model.recognition(x, masks)
        ref = plain.recognition(x, masks)
        for i in bb.homo_layers:
            assert got[f'homo_prec_content_l{i}'] == pytest.approx(
                ref[f'homo_prec_l{i}'].item())
            assert got[f'homo_prec_content_fg_l{i}'] == pytest.approx(
                ref[f'homo_prec_content_fg_l{i}'].item())
        assert bb.has_source_cue and not plain.backbone.has_source_cue
        if 'homo_bias' in cue:  # the prior alone selects the own source
            assert got['homo_prec_l0'] > 0.99
            assert got['homo_prec_content_l0'] < 0.6


def test_foreground_precision_counts_only_non_black_query_patches():
    model = build_tiny(segment_embed=None, homo_bias=1.0).eval()
    pre = model.data_preprocessor
    raw = torch.zeros(8, 3, 32, 32)  # black, 0-255
    raw[:, :, :16] = torch.rand(8, 3, 16, 32) * 255  # top half bright
    raw[:, :, 16:24, :8] = 0.4  # below the 0.5 threshold: still blank
    x = (raw - pre.mean) / pre.std
    masks = model.backbone.draw_masks(x)
    fg = model.foreground(x, masks)  # (Q*V, N): rows 0-1 of the 4x4 grid
    assert fg.shape == (2, 16)
    assert fg[:, :8].all() and not fg[:, 8:].any()
    with torch.no_grad(), recording_keep_masks(model.backbone) as keeps:
        model.backbone.encode_mixed(x, masks, cues=False)
        out = model.recognition(x, masks)
    assert out['fg_share'] == pytest.approx(0.5)
    source_ids = torch.cat((torch.full((2, 1), -1), masks.flatten(0, 1)),
                           dim=1)
    for i, keep in keeps.items():
        # by hand, over the foreground queries (tokens 1-8: patches 0-7)
        same = _same_source(source_ids)[:, None] & keep
        hom = same[:, :, 1:9].sum()
        kept = keep[:, :, 1:9].sum()
        assert out[f'homo_prec_content_fg_l{i}'].item() == pytest.approx(
            (hom / kept).item())
        assert out[f'homo_prec_content_l{i}'] == pytest.approx(
            homologous_precision(keep, source_ids).item())


def test_training_step_logs_both_precisions_only_on_logged_steps():
    model = build_tiny(segment_embed=None, homo_bias=1.0)
    model.backbone.set_progress(0.)
    x = _batch()
    model.log_step = False
    losses = model.loss(x, [])
    assert not any(k.startswith('homo_prec') for k in losses)
    assert all(model.backbone.layers[i].attn.precision_counts is None
               for i in model.backbone.homo_layers)  # nothing recorded
    model.log_step = True
    losses = model.loss(x, [])
    for prefix in ('homo_prec', 'homo_prec_content', 'homo_prec_content_fg'):
        assert {f'{prefix}_l0', f'{prefix}_l1', prefix} <= set(losses)
    assert not losses['homo_prec_content_l0'].requires_grad


def test_per_image_bias_matches_the_plain_graph_and_its_gradient():
    torch.manual_seed(0)
    B, h, T, d = 3, 2, 9, 4
    q, k, v = (torch.randn(B, h, T, d, requires_grad=True) for _ in range(3))
    src = torch.randint(0, 3, (B, T))
    src[:, 0] = -1
    bias = torch.tensor([[2., 1.], [0., 0.], [1., 3.]], requires_grad=True)
    out, _, _ = topk_attention(q, k, v, 4, d**-0.5, bias, src)
    ref = topk_attention_reference(q, k, v, 4, d**-0.5, bias=bias,
                                   source_ids=src)
    assert torch.allclose(out, ref, atol=1e-6)
    g = torch.randn_like(out)
    grads = torch.autograd.grad(out, (q, k, bias), g)
    refs = torch.autograd.grad(ref, (q, k, bias), g)
    for a, b in zip(grads, refs):
        assert torch.allclose(a, b, atol=1e-5)


def test_bias_dropped_for_a_share_of_the_images():
    torch.manual_seed(0)
    bb = build_tiny(segment_embed=None, homo_bias=1.0,
                    homo_bias_drop=0.5).backbone
    bias = bb._homo_bias(4000)  # (layers, images, heads)
    assert bias.shape == (2, 4000, 2)
    dropped = (bias[0, :, 0] == 0).float().mean().item()
    assert abs(dropped - 0.5) < 0.03
    assert torch.equal(bias[0] == 0, bias[1] == 0)  # per image, all layers
    bb.eval()  # no dropping outside training
    assert bb._homo_bias(10).shape == (2, 2)


def test_annealed_bias_falls_to_zero_with_the_progress():
    bb = build_tiny(segment_embed=None, homo_bias=1.0,
                    homo_bias_anneal=0.5).backbone
    with pytest.raises(RuntimeError, match='homo_bias_anneal'):
        bb._homo_bias(4)  # training without the hook's progress
    full = torch.nn.functional.softplus(bb.homo_bias)
    for progress, scale in ((0., 1.), (0.25, 0.5), (0.5, 0.), (0.9, 0.)):
        bb.set_progress(progress)
        assert torch.allclose(bb._homo_bias(4), scale * full)
    assert not bb.has_source_cue  # at 0 the pass is content only
    assert 'backbone.homo_bias_scale' in build_tiny(
        segment_embed=None, homo_bias=1.0,
        homo_bias_anneal=0.5).state_dict()  # resumes with the checkpoint


@pytest.mark.parametrize('keys, name', [
    (dict(homo_bias_drop=0.5), 'homo_bias'),
    (dict(homo_bias=1.0, homo_bias_drop=1.0), 'homo_bias_drop'),
    (dict(homo_bias=1.0, homo_bias_anneal=0.), 'homo_bias_anneal'),
    (dict(homo_bias_anneal=0.5), 'homo_bias'),
    (dict(recognition_weight=0.), 'recognition_weight'),
    (dict(recognition_weight=0.1, homo_layers=[]), 'recognition_weight'),
])
def test_recipe_keys_are_checked_when_built(keys, name):
    with pytest.raises(ValueError, match=name):
        build_tiny(segment_embed=None, **keys)


def test_recognition_loss_has_its_analytic_value_and_minimum():
    B, h, T, d = 2, 3, 17, 8  # cls + N = 16 patches, 4 sources of K = 4
    src = torch.cat((torch.full((B, 1), -1),
                     torch.arange(16).repeat(B, 1) % 4), dim=1)
    zeros = torch.zeros(B, h, T, d)
    # uniform attention over the other patches: -log((K - 1) / (N - 1))
    assert recognition_loss(zeros, zeros, 1., src).item() == pytest.approx(
        math.log(15 / 3))
    # keys and queries that encode the source: the loss tends to 0
    onehot = torch.nn.functional.one_hot(src.clamp(min=0), d).float()
    onehot = onehot[:, None].expand(B, h, T, d) * 20
    assert recognition_loss(onehot, onehot, 1., src).item() < 1e-6
    q = torch.randn(B, h, T, d, requires_grad=True)
    recognition_loss(q, q, 1., src).backward()
    assert q.grad.abs().sum() > 0


def test_recognition_loss_joins_the_losses_in_training_only():
    model = build_tiny(segment_embed=None, recognition_weight=0.5)
    model.log_step = False
    losses = model.loss(_batch(), [])
    assert losses['loss_recog'].requires_grad
    # 0.5 x the mean over the layers, each at most ln(15 / 3) + a margin
    assert 0 < losses['loss_recog'].item() < 0.5 * math.log(5) * 1.5
    model.eval()
    with torch.no_grad():
        model.backbone.encode_mixed(_batch(), model.backbone.draw_masks(
            _batch()))
    assert model.backbone.recognition_loss is None


class _Runner:
    def __init__(self, model):
        self.model = model
        self.logger = MMLogger.get_instance('test_content_recognition')
        self.messages = []
        handler = logging.Handler()
        handler.emit = lambda record: self.messages.append(
            record.getMessage())
        self.logger.addHandler(handler)


def test_hook_warns_when_recognition_is_all_prior():
    model = build_tiny(segment_embed=None, homo_bias=1.0)
    hook, runner = MixedAEHook(), _Runner(model)
    model.log_step = True
    outputs = dict(homo_prec=torch.tensor(0.9),
                   homo_prec_content=torch.tensor(CHANCE + 0.01))
    hook.after_train_iter(runner, 0, outputs=outputs)
    text = ' '.join(runner.messages)
    assert 'source prior' in text and '`model.backbone.homo_bias`' in text
    # a content precision clearly above chance: no warning
    runner.messages.clear()
    hook._warned.clear()
    outputs['homo_prec_content'] = torch.tensor(CHANCE + 0.1)
    hook.after_train_iter(runner, 0, outputs=outputs)
    assert not any('source prior' in m for m in runner.messages)


def test_lean_core_computes_the_recognition_loss_and_its_gradient():
    """The recognition loss computed inside the lean top-k pass equals the
    plain graph's, and so do the gradients of the attention output and
    the loss together (also with a bias, which the loss ignores); no
    (T, T) tensor is kept for backward."""
    from mixedae.utils.profiling import saved_tensor_bytes
    torch.manual_seed(0)
    B, h, T, d = 2, 3, 17, 8
    src = torch.cat((torch.full((B, 1), -1),
                     torch.randperm(16).repeat(B, 1) % 4), dim=1)
    for bias in (None, torch.tensor([0.5, 1., 2.], requires_grad=True)):
        q, k, v = (torch.randn(B, h, T, d, requires_grad=True)
                   for _ in range(3))
        out, _, loss = topk_attention(q, k, v, 5, d**-0.5, bias, src, True)
        ref_out = topk_attention_reference(q, k, v, 5, d**-0.5, bias=bias,
                                           source_ids=src)
        ref_loss = recognition_loss(q, k, d**-0.5, src)
        assert torch.allclose(loss, ref_loss, atol=1e-6)
        g = torch.randn_like(out)
        inputs = (q, k, v) + (() if bias is None else (bias, ))
        got = torch.autograd.grad((out * g).sum() + 0.7 * loss, inputs)
        want = torch.autograd.grad((ref_out * g).sum() + 0.7 * ref_loss,
                                   inputs)
        for a, b in zip(got, want):
            assert torch.isfinite(a).all()
            assert torch.allclose(a, b, atol=1e-5)
    q, k, v = (torch.randn(B, h, T, d, requires_grad=True)
               for _ in range(3))
    with saved_tensor_bytes(square=T) as saved:
        topk_attention(q, k, v, 5, d**-0.5, None, src, True)
    assert saved['square'] == 0 and saved['total'] > 0  # q, k, v, kth, ids
