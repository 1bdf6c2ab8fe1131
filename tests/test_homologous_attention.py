import pytest
import torch
from mmpretrain.models.utils import MultiheadAttention

from mixedae.models import HomologousAttention
from mixedae.models.utils import homologous_precision
from mixedae.models.utils.homologous_attention import (
    topk_attention, topk_attention_reference)
from mixedae.utils.profiling import saved_tensor_bytes


def _pair(seed=0):
    torch.manual_seed(seed)
    homo = HomologousAttention(embed_dims=32, num_heads=4)
    vanilla = MultiheadAttention(embed_dims=32, num_heads=4)
    # same parameter names: the state dicts are interchangeable
    assert homo.state_dict().keys() == vanilla.state_dict().keys()
    vanilla.load_state_dict(homo.state_dict())
    return homo.eval(), vanilla.eval()


def test_topk_n_equals_vanilla_attention():
    homo, vanilla = _pair()
    x = torch.randn(3, 17, 32)
    ref = vanilla(x)
    assert torch.allclose(homo(x, topk=17), ref, atol=1e-6)  # top-k path
    assert torch.allclose(homo(x), ref, atol=1e-6)  # no top-k: vanilla


def test_topk_one_returns_argmax_value():
    homo, _ = _pair(1)
    x = torch.randn(2, 9, 32)
    out = homo(x, topk=1)
    B, T, _ = x.shape
    qkv = homo.qkv(x).reshape(B, T, 3, 4, 8).permute(2, 0, 3, 1, 4)
    q, k, v = qkv
    idx = (q @ k.transpose(-2, -1)).argmax(-1)  # (B, h, T)
    picked = torch.gather(v, 2, idx.unsqueeze(-1).expand(-1, -1, -1, 8))
    expected = homo.proj(picked.transpose(1, 2).reshape(B, T, 32))
    assert torch.allclose(out, expected, atol=1e-6)


def test_topk_changes_the_output_and_keeps_gradients():
    homo, vanilla = _pair(2)
    x = torch.randn(2, 9, 32, requires_grad=True)
    out = homo(x, topk=3)
    assert not torch.allclose(out, vanilla(x), atol=1e-4)
    out.sum().backward()
    assert homo.qkv.weight.grad.abs().sum() > 0
    assert x.grad.abs().sum() > 0


def test_homologous_precision_counts_kept_keys_of_own_source():
    # 1 query-less cls token (-1) and 4 patches from sources 0, 0, 1, 1
    src = torch.tensor([[-1, 0, 0, 1, 1]])
    keep = torch.zeros(1, 1, 5, 5, dtype=torch.bool)
    keep[0, 0, 1, [1, 2]] = True  # source-0 query keeps 2 own keys
    keep[0, 0, 2, [0, 3]] = True  # keeps cls + a foreign key: 0 own
    keep[0, 0, 3, [3, 4]] = True  # 2 own
    keep[0, 0, 4, [1, 4]] = True  # 1 own
    keep[0, 0, 0, :] = True  # the cls query is not counted
    prec = homologous_precision(keep, src)
    assert torch.isclose(prec, torch.tensor(5 / 8))


def test_precision_is_stored_only_when_recording():
    homo, _ = _pair(3)
    x = torch.randn(2, 5, 32)
    src = torch.tensor([[-1, 0, 0, 1, 1]] * 2)
    homo(x, topk=2, source_ids=src)
    assert homo.homologous_precision is None  # off by default: no cost
    homo.record_precision = True
    homo(x, topk=2, source_ids=src)
    # the same selection recomputed by hand
    B, T, _ = x.shape
    q, k, _ = homo.qkv(x).reshape(B, T, 3, 4, 8).permute(2, 0, 3, 1, 4)
    logits = q @ k.transpose(-2, -1) * 8**-0.5
    keep = logits >= logits.topk(2, dim=-1).values[..., -1:]
    assert torch.equal(homo.homologous_precision,
                       homologous_precision(keep, src))
    homo(x)
    assert homo.homologous_precision is None


def _qkv(B=2, h=3, T=33, d=16, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(B, h, T, d, generator=g).to(dtype).requires_grad_()
            for _ in range(3)]


@pytest.mark.parametrize('topk', [1, 8, 33])
def test_lean_core_matches_the_autograd_graph(topk):
    q, k, v = _qkv()
    ref = topk_attention_reference(q, k, v, topk, 0.25)
    grad = torch.randn_like(ref)
    ref_grads = torch.autograd.grad(ref, (q, k, v), grad)
    out, kth, _ = topk_attention(q, k, v, topk, 0.25)
    grads = torch.autograd.grad(out, (q, k, v), grad)
    assert torch.allclose(out, ref, atol=1e-6)
    for a, b in zip(grads, ref_grads):
        assert torch.allclose(a, b, atol=1e-5), (a - b).abs().max()
    # the k-th largest logit of every row: exactly topk keys are kept
    logits = (q @ k.transpose(-2, -1)) * 0.25
    assert ((logits >= kth).sum(-1) == topk).all()


def test_lean_core_with_homologous_bias_matches_the_autograd_graph():
    q, k, v = _qkv(B=2, h=3, T=9)
    src = torch.tensor([[-1, 0, 0, 1, 1, 2, 2, 3, 3]] * 2)
    bias = torch.tensor([0.5, 2.0, 0.0], requires_grad=True)
    ref = topk_attention_reference(q, k, v, 3, 0.25, bias=bias,
                                   source_ids=src)
    grad = torch.randn_like(ref)
    inputs = (q, k, v, bias)
    ref_grads = torch.autograd.grad(ref, inputs, grad)
    out, _, _ = topk_attention(q, k, v, 3, 0.25, bias, src)
    assert torch.allclose(out, ref, atol=1e-6)
    for a, b in zip(torch.autograd.grad(out, inputs, grad), ref_grads):
        assert torch.allclose(a, b, atol=1e-5), (a - b).abs().max()
    assert ref_grads[3].abs().sum() > 0  # the bias is learnt


def test_lean_core_matches_under_bf16_autocast():
    q, k, v = _qkv(dtype=torch.bfloat16)
    ref = topk_attention_reference(q, k, v, 8, 0.25)
    out, _, _ = topk_attention(q, k, v, 8, 0.25)
    grad = torch.randn_like(ref)
    for a, b in zip(torch.autograd.grad(out, (q, k, v), grad),
                    torch.autograd.grad(ref, (q, k, v), grad)):
        assert a.dtype == torch.bfloat16
        assert torch.allclose(a.float(), b.float(), atol=2e-2, rtol=2e-2)
    assert torch.allclose(out.float(), ref.float(), atol=1e-2)


@pytest.mark.parametrize('autocast', [False, True])
def test_homologous_attention_keeps_no_attention_map_for_backward(autocast):
    """The bytes autograd saves for backward in tensors shaped like the
    attention map (T x T), per attention element: the plain graph keeps the
    selection and the softmax (about 5 bytes under bf16 autocast), the lean
    core none."""
    torch.manual_seed(0)
    homo = HomologousAttention(embed_dims=48, num_heads=3).train()
    B, T = 4, 65
    x = torch.randn(B, T, 48, requires_grad=True)
    with torch.autocast('cpu', dtype=torch.bfloat16, enabled=autocast), \
            saved_tensor_bytes(square=T) as saved:
        out = homo(x, topk=16)
    out.float().sum().backward()
    per_element = saved['square'] / (B * 3 * T * T)
    assert per_element <= 0.5, per_element
    assert saved['total'] > 0  # the hook did see the saved tensors

    # the plain graph, measured the same way, keeps the map: the check
    # can fail
    qkv = homo.qkv(x).reshape(B, T, 3, 3, 16).permute(2, 0, 3, 1, 4)
    with torch.autocast('cpu', dtype=torch.bfloat16, enabled=autocast), \
            saved_tensor_bytes(square=T) as ref_saved:
        topk_attention_reference(*qkv, 16, 0.25)
    assert ref_saved['square'] / (B * 3 * T * T) > 2
