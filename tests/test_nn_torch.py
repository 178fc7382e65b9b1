"""Layers and losses against PyTorch: same inputs and weights give the same outputs and gradients."""

from __future__ import annotations

import random

import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(1)  # tiny tensors: extra threads only add contention on a busy CPU

import puredl as pd  # noqa: E402
import torch_ref as tr  # noqa: E402
from puredl import nn  # noqa: E402
from puredl.nn import functional as F  # noqa: E402

DTYPES = [pd.float32, pd.float64]


def pair(shape, dtype, seed, low=-3.0, high=3.0):
    x, t, _, _ = tr.make_pair(shape, dtype, "contiguous", seed, low, high)
    return x, t


def copy_params(pd_module, torch_module):
    """Give the puredl module the torch module's parameter values."""
    state = {k: tr.from_torch(v.detach()) for k, v in torch_module.state_dict().items()}
    pd_module.load_state_dict(state)


def int_targets(n, classes, seed):
    rng = random.Random(seed)
    vals = [rng.randrange(classes) for _ in range(n)]
    return pd.tensor(vals), torch.tensor(vals)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
def test_cross_entropy_matches_torch(dtype, reduction, label_smoothing):
    x, xt = pair((5, 4), dtype, 1)
    y, yt = int_targets(5, 4, 2)
    out = F.cross_entropy(x, y, reduction=reduction, label_smoothing=label_smoothing)
    ref = torch.nn.functional.cross_entropy(xt, yt, reduction=reduction, label_smoothing=label_smoothing)
    tr.assert_close(out, ref)
    tr.backward_both(out, ref, 3)
    tr.assert_grads_close([x], [xt])


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_cross_entropy_weights_and_ignore_index(label_smoothing):
    x, xt = pair((6, 3), pd.float64, 4)
    y, yt = pd.tensor([0, 2, -100, 1, 2, 0]), torch.tensor([0, 2, -100, 1, 2, 0])
    w, wt = pd.tensor([0.2, 1.0, 3.0], dtype=pd.float64), torch.tensor([0.2, 1.0, 3.0], dtype=torch.float64)
    for reduction in ("mean", "sum", "none"):
        xi, xti = x.detach().requires_grad_(), xt.detach().requires_grad_()
        out = nn.CrossEntropyLoss(weight=w, reduction=reduction, label_smoothing=label_smoothing)(xi, y)
        ref = torch.nn.CrossEntropyLoss(weight=wt, reduction=reduction, label_smoothing=label_smoothing)(
            xti, yt
        )
        tr.assert_close(out, ref, what=reduction)
        tr.backward_both(out, ref, 5)
        tr.assert_grads_close([xi], [xti])


def test_cross_entropy_probabilities_and_extra_dims():
    x, xt = pair((2, 3, 4), pd.float64, 6)  # (N, C, d1)
    y, yt = pd.tensor([[0, 1, 2, 1], [2, 2, 0, 1]]), torch.tensor([[0, 1, 2, 1], [2, 2, 0, 1]])
    out, ref = F.cross_entropy(x, y), torch.nn.functional.cross_entropy(xt, yt)
    tr.assert_close(out, ref)
    tr.backward_both(out, ref, 7)
    tr.assert_grads_close([x], [xt])
    p, pt = pair((3, 4), pd.float64, 8, 0.0, 1.0)
    p, pt = p / p.sum(-1, keepdim=True), pt / pt.sum(-1, keepdim=True)
    z, zt = pair((3, 4), pd.float64, 9)
    tr.assert_close(F.cross_entropy(z, p), torch.nn.functional.cross_entropy(zt, pt))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_nll_loss_with_log_softmax_matches_torch(reduction):
    x, xt = pair((4, 5), pd.float64, 10)
    y, yt = int_targets(4, 5, 11)
    w, wt = (
        pd.tensor([1.0, 2.0, 0.5, 1.0, 3.0], dtype=pd.float64),
        torch.tensor([1.0, 2.0, 0.5, 1.0, 3.0], dtype=torch.float64),
    )
    out = nn.NLLLoss(weight=w, reduction=reduction)(nn.LogSoftmax(dim=1)(x), y)
    ref = torch.nn.NLLLoss(weight=wt, reduction=reduction)(torch.nn.LogSoftmax(dim=1)(xt), yt)
    tr.assert_close(out, ref)
    tr.backward_both(out, ref, 12)
    tr.assert_grads_close([x], [xt])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_bce_matches_torch(dtype, reduction):
    p, pt = pair((6, 2), dtype, 13, 0.02, 0.98)
    y, yt = pair((6, 2), dtype, 14, 0.0, 1.0)
    y, yt = y.detach(), yt.detach()
    out = nn.BCELoss(reduction=reduction)(p, y)
    ref = torch.nn.BCELoss(reduction=reduction)(pt, yt)
    tr.assert_close(out, ref)
    tr.backward_both(out, ref, 15)
    tr.assert_grads_close([p], [pt])


def test_bce_clamps_log_at_minus_100_like_torch():
    p, pt = pd.tensor([0.0, 1.0, 0.5], dtype=pd.float64), torch.tensor([0.0, 1.0, 0.5], dtype=torch.float64)
    y, yt = pd.tensor([1.0, 0.0, 1.0], dtype=pd.float64), torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64)
    tr.assert_close(
        F.binary_cross_entropy(p, y, reduction="none"),
        torch.nn.functional.binary_cross_entropy(pt, yt, reduction="none"),
    )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_bce_with_logits_matches_torch(dtype, reduction):
    x, xt = pair((5, 3), dtype, 16, -30.0, 30.0)  # large logits: the stable formula matters
    y, yt = pair((5, 3), dtype, 17, 0.0, 1.0)
    y, yt = y.detach(), yt.detach()
    pw, pwt = (
        pd.tensor([0.5, 1.0, 3.0], dtype=dtype),
        torch.tensor([0.5, 1.0, 3.0], dtype=tr.TORCH_DTYPE[dtype]),
    )
    for kwargs, tkwargs in [({}, {}), ({"pos_weight": pw}, {"pos_weight": pwt})]:
        xi, xti = x.detach().requires_grad_(), xt.detach().requires_grad_()
        out = nn.BCEWithLogitsLoss(reduction=reduction, **kwargs)(xi, y)
        ref = torch.nn.BCEWithLogitsLoss(reduction=reduction, **tkwargs)(xti, yt)
        tr.assert_close(out, ref)
        tr.backward_both(out, ref, 18)
        tr.assert_grads_close([xi], [xti])


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_mse_and_l1_match_torch(reduction):
    a, at = pair((3, 4), pd.float64, 19)
    b, bt = pair((3, 4), pd.float64, 20)
    for ours, theirs in [(nn.MSELoss, torch.nn.MSELoss), (nn.L1Loss, torch.nn.L1Loss)]:
        ai, ati = a.detach().requires_grad_(), at.detach().requires_grad_()
        bi, bti = b.detach().requires_grad_(), bt.detach().requires_grad_()
        out, ref = ours(reduction=reduction)(ai, bi), theirs(reduction=reduction)(ati, bti)
        tr.assert_close(out, ref)
        tr.backward_both(out, ref, 21)
        tr.assert_grads_close([ai, bi], [ati, bti])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,normalized", [((4, 6), (6,)), ((2, 3, 4), (3, 4))])
def test_layer_norm_matches_torch(dtype, shape, normalized):
    torch.manual_seed(0)
    ref_layer = torch.nn.LayerNorm(normalized, dtype=tr.TORCH_DTYPE[dtype])
    with torch.no_grad():  # non-trivial affine parameters
        ref_layer.weight.uniform_(0.5, 1.5)
        ref_layer.bias.uniform_(-0.5, 0.5)
    layer = nn.LayerNorm(normalized, dtype=dtype)
    copy_params(layer, ref_layer)
    x, xt = pair(shape, dtype, 22)
    out, ref = layer(x), ref_layer(xt)
    tr.assert_close(out, ref)
    tr.backward_both(out, ref, 23)
    tr.assert_grads_close([x, layer.weight, layer.bias], [xt, ref_layer.weight, ref_layer.bias])


@pytest.mark.parametrize("dtype", DTYPES)
def test_embedding_matches_torch(dtype):
    torch.manual_seed(1)
    ref_layer = torch.nn.Embedding(7, 3, padding_idx=2, dtype=tr.TORCH_DTYPE[dtype])
    layer = nn.Embedding(7, 3, padding_idx=2, dtype=dtype)
    copy_params(layer, ref_layer)
    idx = [[0, 2, 6], [6, 6, 1]]
    out, ref = layer(pd.tensor(idx)), ref_layer(torch.tensor(idx))
    tr.assert_close(out, ref)
    tr.backward_both(out, ref, 24)
    tr.assert_grads_close([layer.weight], [ref_layer.weight])


@pytest.mark.parametrize("dtype", DTYPES)
def test_linear_matches_torch_with_batch_dims(dtype):
    torch.manual_seed(2)
    ref_layer = torch.nn.Linear(4, 3, dtype=tr.TORCH_DTYPE[dtype])
    layer = nn.Linear(4, 3, dtype=dtype)
    copy_params(layer, ref_layer)
    x, xt = pair((2, 5, 4), dtype, 25)
    out, ref = layer(x), ref_layer(xt)
    tr.assert_close(out, ref)
    tr.backward_both(out, ref, 26)
    tr.assert_grads_close([x, layer.weight, layer.bias], [xt, ref_layer.weight, ref_layer.bias])


ACTIVATIONS = [
    (lambda: nn.ReLU(), lambda: torch.nn.ReLU()),
    (lambda: nn.LeakyReLU(0.1), lambda: torch.nn.LeakyReLU(0.1)),
    (lambda: nn.GELU(), lambda: torch.nn.GELU()),
    (lambda: nn.GELU("tanh"), lambda: torch.nn.GELU("tanh")),
    (lambda: nn.Sigmoid(), lambda: torch.nn.Sigmoid()),
    (lambda: nn.Tanh(), lambda: torch.nn.Tanh()),
    (lambda: nn.Softmax(dim=1), lambda: torch.nn.Softmax(dim=1)),
    (lambda: nn.LogSoftmax(dim=0), lambda: torch.nn.LogSoftmax(dim=0)),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("make", ACTIVATIONS, ids=lambda m: type(m[0]()).__name__ + repr(m[0]().extra_repr()))
def test_activations_match_torch(dtype, make):
    x, xt = pair((4, 5), dtype, 27)
    out, ref = make[0]()(x), make[1]()(xt)
    tr.assert_close(out, ref)
    tr.backward_both(out, ref, 28)
    tr.assert_grads_close([x], [xt])


def test_init_functions_follow_torch_formulas():
    pd.manual_seed(0)
    w = pd.empty(200, 300)
    nn.init.xavier_uniform_(w)
    bound = (6 / 500) ** 0.5
    vals = w.reshape(-1).tolist()
    assert max(abs(v) for v in vals) <= bound
    assert abs(sum(v * v for v in vals) / len(vals) - bound**2 / 3) < 0.05 * bound**2 / 3
    nn.init.kaiming_normal_(w, nonlinearity="relu")
    std = (2 / 300) ** 0.5
    vals = w.reshape(-1).tolist()
    assert abs((sum(v * v for v in vals) / len(vals)) ** 0.5 - std) < 0.05 * std
    for name, param in [("relu", None), ("leaky_relu", 0.2), ("tanh", None), ("sigmoid", None)]:
        assert nn.init.calculate_gain(name, param) == pytest.approx(torch.nn.init.calculate_gain(name, param))
