import math

import pytest
import torch

from rest.algo.entropy import entropy_and_logprob, entropy_and_logprob_from_hidden, entropy_and_logprob_naive


def test_hand_computed_two_token_vocab():
    # logits [0, log 3] -> p = [1/4, 3/4]; H = -(1/4 ln 1/4 + 3/4 ln 3/4); log p(y=1) = ln 3/4
    logits = torch.tensor([[0.0, math.log(3.0)]])
    h, lp = entropy_and_logprob(logits, torch.tensor([1]))
    expected_h = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    assert h.item() == pytest.approx(expected_h, abs=1e-6)
    assert lp.item() == pytest.approx(math.log(0.75), abs=1e-6)


def test_uniform_entropy_is_log_v():
    h, lp = entropy_and_logprob(torch.zeros(3, 5, 7), torch.zeros(3, 5, dtype=torch.long), chunk_size=4)
    assert h.shape == (3, 5)
    assert torch.allclose(h, torch.full((3, 5), math.log(7.0)))
    assert torch.allclose(lp, torch.full((3, 5), -math.log(7.0)))


@pytest.mark.parametrize("chunk", [1, 3, 64, 1000])
def test_chunked_matches_naive(chunk):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 37, 50, generator=g) * 4
    labels = torch.randint(0, 50, (2, 37), generator=g)
    labels[0, :3] = -100
    h, lp = entropy_and_logprob(logits, labels, chunk_size=chunk)
    h0, lp0 = entropy_and_logprob_naive(logits, labels)
    assert torch.allclose(h, h0, atol=1e-5) and torch.allclose(lp, lp0, atol=1e-5)
    assert (lp[0, :3] == 0).all()


def test_logits_path_gradients_match_naive():
    g = torch.Generator().manual_seed(1)
    base = torch.randn(19, 23, generator=g)
    labels = torch.randint(0, 23, (19,), generator=g)
    coef = torch.randn(19, generator=g)
    grads = []
    for fn in (lambda x: entropy_and_logprob(x, labels, chunk_size=4), lambda x: entropy_and_logprob_naive(x, labels)):
        x = base.clone().requires_grad_(True)
        h, lp = fn(x)
        (lp * coef).sum().backward()
        grads.append(x.grad)
    assert torch.allclose(grads[0], grads[1], atol=1e-5)


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_from_hidden_values_and_gradients_match_naive(temperature):
    g = torch.Generator().manual_seed(2)
    hidden0 = torch.randn(41, 8, generator=g)
    weight0 = torch.randn(30, 8, generator=g)
    labels = torch.randint(0, 30, (41,), generator=g)
    coef = torch.randn(41, generator=g)

    def run(fused: bool):
        hidden = hidden0.clone().requires_grad_(True)
        weight = weight0.clone().requires_grad_(True)
        if fused:
            h, lp = entropy_and_logprob_from_hidden(hidden, weight, labels, temperature, chunk_size=16)
        else:
            h, lp = entropy_and_logprob_naive(hidden @ weight.t() / temperature, labels)
        assert not (fused and h.requires_grad)  # entropy is returned detached
        (lp * coef).sum().backward()
        return h.detach(), lp.detach(), hidden.grad, weight.grad

    fused, naive = run(True), run(False)
    for a, b in zip(fused, naive):
        assert torch.allclose(a, b, atol=1e-5)


def test_from_hidden_no_grad_and_empty():
    h, lp = entropy_and_logprob_from_hidden(torch.randn(5, 4), torch.randn(6, 4), torch.tensor([0, 1, 2, 3, 4]))
    assert h.dtype == torch.float32 and h.shape == (5,) and not h.requires_grad
    h, lp = entropy_and_logprob_from_hidden(torch.zeros(0, 4), torch.randn(6, 4), torch.zeros(0, dtype=torch.long))
    assert h.shape == (0,) and lp.shape == (0,)
    with pytest.raises(ValueError):
        entropy_and_logprob_from_hidden(torch.randn(5, 4), torch.randn(6, 4), torch.zeros(5, dtype=torch.long), 0.0)


@pytest.mark.parametrize("need", ["hidden", "weight"])
def test_from_hidden_gradient_of_one_input_only(need):
    g = torch.Generator().manual_seed(3)
    hidden0, weight0 = torch.randn(19, 6, generator=g), torch.randn(23, 6, generator=g)
    labels = torch.randint(0, 23, (19,), generator=g)
    labels[4] = -100  # ignored rows give zero log-prob and no gradient

    def grad(fused: bool):
        hidden = hidden0.clone().requires_grad_(need == "hidden")
        weight = weight0.clone().requires_grad_(need == "weight")
        if fused:
            _, lp = entropy_and_logprob_from_hidden(hidden, weight, labels, 0.8, chunk_size=5)
        else:
            _, lp = entropy_and_logprob_naive(hidden @ weight.t() / 0.8, labels.clamp_min(0))
            lp = torch.where(labels >= 0, lp, torch.zeros_like(lp))
        lp.sum().backward()
        return (hidden if need == "hidden" else weight).grad

    assert torch.allclose(grad(True), grad(False), atol=1e-5)


def test_from_hidden_bf16_matmul_matches_autograd_through_float():
    """Mixed precision: the matmul runs in bf16 like the model's lm_head, the softmax in fp32; gradients come
    back in bf16 as autograd through `.float()` would give them."""
    g = torch.Generator().manual_seed(4)
    hidden0, weight0 = torch.randn(33, 16, generator=g).bfloat16(), torch.randn(40, 16, generator=g).bfloat16()
    labels = torch.randint(0, 40, (33,), generator=g)

    def run(fused: bool):
        hidden, weight = hidden0.clone().requires_grad_(True), weight0.clone().requires_grad_(True)
        if fused:
            h, lp = entropy_and_logprob_from_hidden(hidden, weight, labels, chunk_size=8)
        else:
            h, lp = entropy_and_logprob_naive((hidden @ weight.t()).float(), labels)
        lp.sum().backward()
        return h.detach(), lp.detach(), hidden.grad, weight.grad

    fused, reference = run(True), run(False)
    assert fused[0].dtype == fused[1].dtype == torch.float32 and fused[2].dtype == fused[3].dtype == torch.bfloat16
    for a, b in zip(fused[:2], reference[:2]):
        assert torch.allclose(a, b, atol=1e-4)
    for a, b in zip(fused[2:], reference[2:]):
        assert torch.allclose(a.float(), b.float(), rtol=2e-2, atol=2e-2)
