"""The CNN family against torch, forward and backward: unfold/fold, conv2d (stride, padding incl.
'same'/'valid', dilation, groups, bias), max/avg/adaptive-avg pooling, batch norm, dropout2d and
their nn layers (runs under PUREDL_ACCEL=pure|torch|auto like the other op suites)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from hypothesis import assume, given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import puredl as pd  # noqa: E402
from puredl import nn  # noqa: E402
from puredl.nn import functional as F  # noqa: E402
from torch_ref import (  # noqa: E402
    TORCH_DTYPE,
    assert_close,
    assert_grads_close,
    backward_both,
    float_dtypes,
    layouts,
    make_pair,
    seeds,
)

TF = torch.nn.functional
# a conv sums up to C*kh*kw float32 products; torch's order of summation differs from the pure one
CONV_TOL = {pd.float32: (1e-4, 2e-5), pd.float64: (1e-9, 1e-11)}

sides = st.integers(1, 3)


@st.composite
def conv_case(draw):
    groups = draw(st.sampled_from([1, 1, 2]))
    cin, cout = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 2))
    kh, kw = draw(sides), draw(sides)
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = draw(st.sampled_from(["int", "pair", "same", "valid"]))
    stride = (1, 1) if padding == "same" else (draw(sides), draw(sides))
    if padding == "int":
        padding = draw(st.integers(0, 2))
    elif padding == "pair":
        padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    h, w = draw(st.integers(1, 7)), draw(st.integers(1, 7))
    pad_h = padding if isinstance(padding, int) else (padding[0] if isinstance(padding, tuple) else 0)
    pad_w = padding if isinstance(padding, int) else (padding[1] if isinstance(padding, tuple) else 0)
    if padding != "same":
        assume(h + 2 * pad_h >= dilation[0] * (kh - 1) + 1 and w + 2 * pad_w >= dilation[1] * (kw - 1) + 1)
    n = draw(st.integers(1, 2))
    return dict(
        x=(n, cin, h, w),
        w=(cout, cin // groups, kh, kw),
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        bias=draw(st.booleans()),
    )


@pytest.mark.filterwarnings("ignore:Using padding='same'")  # torch's own note about its copy
@given(case=conv_case(), dtype=float_dtypes, layout=layouts, seed=seeds)
def test_conv2d_matches_torch(case, dtype, layout, seed):
    px, tx, pxl, txl = make_pair(case["x"], dtype, layout, seed)
    pw, tw, pwl, twl = make_pair(case["w"], dtype, "contiguous", seed + 1)
    pb, tb, pbl, tbl = make_pair((case["w"][0],), dtype, "contiguous", seed + 2)
    if not case["bias"]:
        pb = tb = None
    kw = {k: case[k] for k in ("stride", "padding", "dilation", "groups")}
    out_p, out_t = F.conv2d(px, pw, pb, **kw), TF.conv2d(tx, tw, tb, **kw)
    assert_close(out_p, out_t, *CONV_TOL[dtype], what=f"conv2d {case}")
    backward_both(out_p, out_t, seed)
    leaves_p, leaves_t = (
        [pxl, pwl] + ([pbl] if case["bias"] else []),
        [txl, twl] + ([tbl] if case["bias"] else []),
    )
    assert_grads_close(leaves_p, leaves_t, *CONV_TOL[dtype])


@given(case=conv_case(), seed=seeds)
def test_unfold_fold_match_torch(case, seed):
    assume(isinstance(case["padding"], (int, tuple)))
    k, kw = case["w"][2:], {k: case[k] for k in ("stride", "padding", "dilation")}
    px, tx, pl, tl = make_pair(case["x"], pd.float64, "contiguous", seed)
    cols_p, cols_t = F.unfold(px, k, **kw), TF.unfold(tx, k, **kw)
    assert_close(cols_p, cols_t)
    backward_both(cols_p, cols_t, seed)
    assert_grads_close([pl], [tl])
    pc, tc, pcl, tcl = make_pair(tuple(cols_t.shape), pd.float64, "contiguous", seed + 1)
    out_p, out_t = F.fold(pc, case["x"][2:], k, **kw), TF.fold(tc, case["x"][2:], k, **kw)
    assert_close(out_p, out_t)
    backward_both(out_p, out_t, seed)
    assert_grads_close([pcl], [tcl])


@st.composite
def pool_case(draw):
    kh, kw = draw(sides), draw(sides)
    stride = draw(st.sampled_from([None, (draw(sides), draw(sides))]))
    padding = (draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2)))
    h, w = draw(st.integers(kh, 7)), draw(st.integers(kw, 7))
    return dict(
        shape=(draw(st.integers(1, 2)), draw(st.integers(1, 3)), h, w),
        kernel_size=(kh, kw),
        stride=stride,
        padding=padding,
        ceil_mode=draw(st.booleans()),
    )


@given(case=pool_case(), dilation=st.integers(1, 2), dtype=float_dtypes, layout=layouts, seed=seeds)
def test_max_pool2d_matches_torch(case, dilation, dtype, layout, seed):
    shape = case.pop("shape")
    kh, kw = case["kernel_size"]
    assume(shape[2] >= dilation * (kh - 1) + 1 and shape[3] >= dilation * (kw - 1) + 1)
    pa, ta, pl, tl = make_pair(shape, dtype, layout, seed)
    out_p, out_t = F.max_pool2d(pa, dilation=dilation, **case), TF.max_pool2d(ta, dilation=dilation, **case)
    assert_close(out_p, out_t, what=f"max_pool2d {shape} {case} dilation={dilation}")
    if (
        layout != "expanded"
    ):  # expanded copies tie: torch and puredl may route the gradient to different copies
        backward_both(out_p, out_t, seed)
        assert_grads_close([pl], [tl])
    layer = nn.MaxPool2d(
        case["kernel_size"], case["stride"], case["padding"], dilation, ceil_mode=case["ceil_mode"]
    )
    assert_close(layer(pa), out_t)


@given(case=pool_case(), include=st.booleans(), dtype=float_dtypes, layout=layouts, seed=seeds)
def test_avg_pool2d_matches_torch(case, include, dtype, layout, seed):
    shape = case.pop("shape")
    pa, ta, pl, tl = make_pair(shape, dtype, layout, seed)
    out_p = F.avg_pool2d(pa, count_include_pad=include, **case)
    out_t = TF.avg_pool2d(ta, count_include_pad=include, **case)
    assert_close(out_p, out_t, what=f"avg_pool2d {shape} {case} count_include_pad={include}")
    backward_both(out_p, out_t, seed)
    assert_grads_close([pl], [tl])
    layer = nn.AvgPool2d(case["kernel_size"], case["stride"], case["padding"], case["ceil_mode"], include)
    assert_close(layer(pa), out_t)


@given(
    h=st.integers(1, 7),
    w=st.integers(1, 7),
    oh=st.integers(1, 4),
    ow=st.sampled_from([1, 2, 3, None]),
    dtype=float_dtypes,
    layout=layouts,
    seed=seeds,
)
def test_adaptive_avg_pool2d_matches_torch(h, w, oh, ow, dtype, layout, seed):
    pa, ta, pl, tl = make_pair((2, 2, h, w), dtype, layout, seed)
    out_p, out_t = nn.AdaptiveAvgPool2d((oh, ow))(pa), TF.adaptive_avg_pool2d(ta, (oh, ow))
    assert_close(out_p, out_t, what=f"adaptive_avg_pool2d {(h, w)} -> {(oh, ow)}")
    backward_both(out_p, out_t, seed)
    assert_grads_close([pl], [tl])


@pytest.mark.parametrize(
    "cls,shape", [("BatchNorm1d", (4, 3)), ("BatchNorm1d", (2, 3, 5)), ("BatchNorm2d", (2, 3, 4, 5))]
)
@given(dtype=float_dtypes, momentum=st.sampled_from([0.1, 0.5, None]), affine=st.booleans(), seed=seeds)
def test_batch_norm_layers_match_torch_in_train_and_eval(cls, shape, dtype, momentum, affine, seed):
    pm = getattr(nn, cls)(3, eps=1e-3, momentum=momentum, affine=affine, dtype=dtype)
    tm = getattr(torch.nn, cls)(3, eps=1e-3, momentum=momentum, affine=affine, dtype=TORCH_DTYPE[dtype])
    for step in range(2):
        pa, ta, pl, tl = make_pair(shape, dtype, "contiguous", seed + step)
        out_p, out_t = pm(pa), tm(ta)
        assert_close(out_p, out_t, *CONV_TOL[dtype], what=f"{cls} train step {step}")
        backward_both(out_p, out_t, seed)
        assert_grads_close([pl], [tl], *CONV_TOL[dtype])
    assert_close(pm.running_mean, tm.running_mean, *CONV_TOL[dtype])
    assert_close(pm.running_var, tm.running_var, *CONV_TOL[dtype])
    assert pm.num_batches_tracked.item() == tm.num_batches_tracked.item() == 2
    if affine:
        assert_grads_close([pm.weight, pm.bias], [tm.weight, tm.bias], *CONV_TOL[dtype])
    pm.eval()
    tm.eval()
    pa, ta, _, _ = make_pair(shape, dtype, "contiguous", seed + 7)
    assert_close(pm(pa), tm(ta), *CONV_TOL[dtype], what=f"{cls} eval")
    assert set(pm.state_dict()) == set(tm.state_dict())


def test_batch_norm_refuses_one_value_per_channel_when_training():
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        nn.BatchNorm1d(3)(pd.ones(1, 3))


def test_dropout2d_zeros_whole_channels_and_scales_the_rest():
    pd.manual_seed(0)
    x = pd.ones(8, 16, 3, 3, requires_grad=True)
    y = nn.Dropout2d(0.5)(x)
    per_channel = y.sum(dim=(2, 3)).reshape(-1).tolist()
    assert set(per_channel) == {0.0, 18.0}  # a channel is all dropped or all kept (and doubled)
    assert 30 < per_channel.count(0.0) < 98
    y.sum().backward()
    assert set(x.grad.reshape(-1).tolist()) == {0.0, 2.0}
    layer = nn.Dropout2d(0.5)
    layer.eval()
    assert layer(x) is x
    assert repr(layer) == "Dropout2d(p=0.5)"
    with pytest.raises(ValueError, match="Dropout2d: p must be a probability"):
        nn.Dropout2d(1.5)
    with pytest.raises(NotImplementedError, match="inplace=True"):  # would leave the input untouched
        nn.Dropout2d(0.5, inplace=True)


def test_conv2d_layer_matches_torch_initialisation_shapes_and_refuses_bad_input():
    layer = nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2)
    t = torch.nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2)
    assert layer.weight.shape == tuple(t.weight.shape) and layer.bias.shape == tuple(t.bias.shape)
    bound = 1 / (2 * 9) ** 0.5  # kaiming_uniform_(a=sqrt(5)) over fan_in = in/groups * kh * kw
    assert max(abs(v) for v in layer.weight.reshape(-1).tolist()) <= bound + 1e-7
    assert layer(pd.zeros(1, 4, 9, 9)).shape == tuple(t(torch.zeros(1, 4, 9, 9)).shape)
    with pytest.raises(ValueError, match="channels"):
        layer(pd.zeros(1, 3, 9, 9))
    with pytest.raises(ValueError, match="strided"):
        F.conv2d(pd.zeros(1, 1, 4, 4), pd.zeros(1, 1, 3, 3), stride=2, padding="same")
