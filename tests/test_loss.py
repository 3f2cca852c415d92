"""The fused label-smoothed loss equals the composed formula it replaces, value and gradient."""

from __future__ import annotations

import pytest
import torch

from nmt.training.loss import composed_loss, label_smoothed_loss
from nmt.training.validation import label_smoothed_loss as reexported
from nmt.vocab import PAD


def batch(shape=(3, 5), vocab=11, dtype=torch.float64, seed=0):
    """Random logits (leaf, requiring grad) and targets with some PAD."""
    g = torch.Generator().manual_seed(seed)
    logits = (3 * torch.randn(*shape, vocab, generator=g)).to(dtype).requires_grad_()
    target = torch.randint(0, vocab, shape, generator=g)
    target.view(-1)[::4] = PAD
    return logits, target


def grads(fn, logits, target, smoothing, scale=1.0):
    logits = logits.detach().clone().requires_grad_()
    loss, nll, count = fn(logits, target, smoothing)
    (loss * scale).backward()
    return loss.detach(), nll, count, logits.grad


def test_the_loss_module_is_the_one_validation_exports():
    assert reexported is label_smoothed_loss


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("shape", [(3, 5), (15,)])
def test_values_and_gradients_equal_the_reference_in_float64(smoothing, shape):
    logits, target = batch(shape)
    new, old = (grads(fn, logits, target, smoothing) for fn in (label_smoothed_loss, composed_loss))
    for a, b in zip(new, old, strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-12), (a, b)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_float32_equals_the_reference(smoothing):
    logits, target = batch((4, 9), vocab=50, dtype=torch.float32)
    new, old = (grads(fn, logits, target, smoothing) for fn in (label_smoothed_loss, composed_loss))
    for a, b in zip(new, old, strict=True):
        assert a.dtype == b.dtype
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6), (a, b)


def test_bf16_logits_get_a_bf16_gradient_and_a_float32_loss():
    logits, target = batch((4, 9), vocab=50, dtype=torch.bfloat16)
    loss, nll, count, grad = grads(label_smoothed_loss, logits, target, 0.1)
    ref_loss, ref_nll, ref_count, ref_grad = grads(composed_loss, logits, target, 0.1)
    assert loss.dtype == nll.dtype == torch.float32 and grad.dtype == torch.bfloat16
    assert torch.allclose(loss, ref_loss) and torch.allclose(nll, ref_nll)
    assert count == ref_count
    assert torch.allclose(grad.float(), ref_grad.float(), rtol=1e-2, atol=1e-3)


def test_the_gradient_scales_with_the_loss():
    logits, target = batch()
    n = int((target != PAD).sum())
    *_, once = grads(label_smoothed_loss, logits, target, 0.1)
    *_, scaled = grads(label_smoothed_loss, logits, target, 0.1, scale=3 / n)
    assert torch.allclose(scaled, once * 3 / n, rtol=1e-12, atol=0)


def test_an_all_pad_batch_gives_zero_loss_and_zero_gradient():
    logits, _ = batch()
    target = torch.full((3, 5), PAD)
    loss, nll, count, grad = grads(label_smoothed_loss, logits, target, 0.1)
    assert loss == 0 and nll == 0 and count == 0
    assert grad.shape == logits.shape and not grad.any()


def test_gradcheck_and_a_retained_graph():
    logits, target = batch((2, 3), vocab=5)
    assert torch.autograd.gradcheck(lambda x: label_smoothed_loss(x, target, 0.1)[0], (logits,))
    loss = label_smoothed_loss(logits, target, 0.1)[0]
    first = torch.autograd.grad(loss, logits, retain_graph=True)[0]
    assert torch.equal(torch.autograd.grad(loss, logits)[0], first)


def test_the_nll_and_the_count_carry_no_gradient():
    logits, target = batch()
    loss, nll, count = label_smoothed_loss(logits, target, 0.1)
    assert loss.requires_grad and not nll.requires_grad and not count.requires_grad
    with pytest.raises(RuntimeError):
        nll.backward()


def test_under_no_grad_it_computes_the_same_values():
    logits, target = batch()
    with torch.no_grad():
        values = label_smoothed_loss(logits, target, 0.1)
    assert not values[0].requires_grad
    for a, b in zip(values, composed_loss(logits.detach(), target, 0.1), strict=True):
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-12)
