"""float16 and bfloat16 against torch: every value a half tensor holds is one the format holds,
rounded as torch rounds (creation, casts, every op's result); promotion; gradients; printing;
torch and NumPy interop; safetensors F16/BF16 bytes as the safetensors library writes them.

Runs in every mode (PUREDL_ACCEL=pure|torch|auto): the checks read values through tolist().
"""

from __future__ import annotations

import itertools
import math
import random
import struct

import pytest

torch = pytest.importorskip("torch")

from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import puredl as pd  # noqa: E402
from torch_ref import TORCH_DTYPE, assert_close, make_pair, seeds, shapes  # noqa: E402

HALVES = [pd.float16, pd.bfloat16]
half_dtypes = st.sampled_from(HALVES)
# every kind of float: ordinary, huge (overflow to inf), tiny (subnormal, flush to 0), ties, specials
any_floats = st.one_of(
    st.floats(-70000, 70000, allow_nan=False),
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.floats(-1e-4, 1e-4),
    st.integers(-3000, 3000).map(lambda k: k / 1024 + 2**-11),  # float16 halfway cases
)


def _flat(v):
    if isinstance(v, list):
        return [x for item in v for x in _flat(item)]
    return [v]


def _same_values(p: pd.Tensor, t: torch.Tensor) -> None:
    """Same dtype and shape, and bit-for-bit the same values (NaN matching NaN)."""
    assert p.dtype is pd.dtypes.as_dtype(t.dtype), (p.dtype, t.dtype)
    assert p.shape == tuple(t.shape)
    got, want = _flat(p.tolist()), _flat(t.tolist())
    for i, (g, w) in enumerate(zip(got, want)):
        assert (g != g and w != w) or (g == w and math.copysign(1, g) == math.copysign(1, w)), (i, g, w)


def _representable(p: pd.Tensor) -> None:
    """Every value of ``p`` is a value of its dtype (torch's own conversion leaves it unchanged)."""
    vals = _flat(p.tolist())
    back = torch.tensor(vals, dtype=torch.float32).to(TORCH_DTYPE[p.dtype]).float().tolist()
    for v, b in zip(vals, back):
        assert (v != v and b != b) or v == b, f"{v!r} is not a {p.dtype.name} value (nearest {b!r})"


def _both(vals, dtype):
    return pd.tensor(vals, dtype=dtype), torch.tensor(vals, dtype=TORCH_DTYPE[dtype])


# --------------------------------------------------------------------------- the dtypes themselves


def test_dtype_attributes_match_torch():
    for d, t in ((pd.float16, torch.float16), (pd.bfloat16, torch.bfloat16), (pd.int8, torch.int8)):
        assert d.itemsize == t.itemsize
        assert d.is_floating_point == t.is_floating_point
        assert pd.dtypes.as_dtype(t) is d and pd.dtypes.as_dtype(str(t)) is d
        assert pd.zeros(2, dtype=d).dtype is d and pd.zeros(2, dtype=d).element_size() == t.itemsize
    assert pd.half is pd.float16 and pd.dtypes.as_dtype("half") is pd.float16
    assert pd.dtypes.as_dtype(torch.half) is pd.float16


@pytest.mark.parametrize("dtype", [pd.float16, pd.bfloat16, pd.float32, pd.float64, None])
def test_finfo_matches_torch(dtype):
    got = pd.finfo(dtype) if dtype is not None else pd.finfo()
    want = torch.finfo(TORCH_DTYPE[dtype]) if dtype is not None else torch.finfo()
    for name in ("bits", "eps", "max", "min", "tiny", "smallest_normal", "resolution", "dtype"):
        assert getattr(got, name) == getattr(want, name), name
    assert repr(got) == repr(want)


@pytest.mark.parametrize("dtype", [pd.int8, pd.uint8, pd.int16, pd.int32, pd.int64])
def test_iinfo_matches_torch(dtype):
    got, want = pd.iinfo(dtype), torch.iinfo(TORCH_DTYPE[dtype])
    assert (got.bits, got.min, got.max, got.dtype) == (want.bits, want.min, want.max, want.dtype)
    assert repr(got) == repr(want)


def test_finfo_and_iinfo_refuse_the_other_kind_as_torch():
    for fn, tfn, d in (
        (pd.finfo, torch.finfo, pd.int32),
        (pd.iinfo, torch.iinfo, pd.float16),
        (pd.iinfo, torch.iinfo, pd.bool),
    ):
        with pytest.raises(TypeError):
            tfn(TORCH_DTYPE[d])
        with pytest.raises(TypeError):
            fn(d)


@pytest.mark.parametrize("dtype", [pd.float16, pd.bfloat16, pd.int8, pd.float64, pd.int32])
def test_tensor_of_a_tensor_keeps_its_dtype(dtype):
    p, t = _both([1, 2], dtype)
    with pytest.warns(UserWarning):  # torch suggests clone().detach() here
        expected = torch.tensor(t)
    _same_values(pd.tensor(p), expected)


def test_methods_and_legacy_names():
    p, t = _both([0.1, 1e5, -2.5], pd.float32)
    _same_values(p.half(), t.half())
    _same_values(p.bfloat16(), t.bfloat16())
    _same_values(p.to(torch.float16), t.to(torch.float16))  # a torch dtype object is accepted
    _same_values(p.to(dtype=pd.bfloat16), t.to(dtype=torch.bfloat16))
    _same_values(p.to(pd.int64).char(), t.to(torch.int64).char())
    for name in ("HalfTensor", "BFloat16Tensor", "CharTensor"):
        x, y = getattr(pd, name)([1, 2]), getattr(torch, name)([1, 2])
        _same_values(x, y)
        assert x.type() == y.type() == f"torch.{name}"


@given(shape=shapes(max_dims=3, max_side=5), seed=seeds, dtype=half_dtypes)
def test_repr_matches_torch(shape, seed, dtype):
    rng = random.Random(seed)
    vals = [
        rng.choice([rng.uniform(-50, 50), rng.uniform(-1, 1), 1e5, math.nan, -math.inf])
        for _ in range(math.prod(shape))
    ]
    p = pd.tensor(vals, dtype=dtype).reshape(shape)
    t = torch.tensor(vals, dtype=TORCH_DTYPE[dtype]).reshape(shape)

    def norm(s: str) -> str:
        return s.replace("torch.", "puredl.").replace(",\n       dtype=", ", dtype=")

    assert norm(repr(p)) == norm(repr(t)), f"\n{p!r}\n{t!r}"


# --------------------------------------------------------------------------- rounding where values are made


@given(xs=st.lists(any_floats, min_size=1, max_size=12), dtype=half_dtypes)
def test_creation_rounds_as_torch(xs, dtype):
    p, t = _both(xs, dtype)
    _same_values(p, t)
    for n in (1, 3):  # torch checks the range when it fills more than one element
        try:
            expected = torch.full((n,), xs[0], dtype=TORCH_DTYPE[dtype])
        except RuntimeError:  # a finite value beyond the dtype's range: puredl refuses it too
            with pytest.raises(RuntimeError, match="overflow"):
                pd.full((n,), xs[0], dtype=dtype)
            with pytest.raises(RuntimeError, match="overflow"):
                pd.zeros(n, dtype=dtype).fill_(xs[0])
            continue
        _same_values(pd.full((n,), xs[0], dtype=dtype), expected)
        filled = torch.zeros(n, dtype=TORCH_DTYPE[dtype]).fill_(xs[0])
        _same_values(pd.zeros(n, dtype=dtype).fill_(xs[0]), filled)


@given(xs=st.lists(any_floats, min_size=1, max_size=12), src=st.sampled_from([pd.float32, pd.float64]))
def test_casts_round_as_torch(xs, src):
    p, t = _both(xs, src)
    for d in HALVES:
        _same_values(p.to(d), t.to(TORCH_DTYPE[d]))
        _same_values(p.to(d).to(src), t.to(TORCH_DTYPE[d]).to(TORCH_DTYPE[src]))  # widening is exact
    _same_values(p.half().bfloat16(), t.half().bfloat16())
    _same_values(p.bfloat16().half(), t.bfloat16().half())
    finite = [x for x in xs if math.isfinite(x) and abs(x) < 60000]
    if finite:
        _same_values(pd.tensor(finite).half().long(), torch.tensor(finite).half().long())


def test_storage_keeps_the_rounding_through_in_place_writes():
    for d in HALVES:
        p, t = _both([0.0, 0.0, 0.0], d)
        for lib, x in ((pd, p), (torch, t)):
            x[0] = 0.1
            x[1:] = lib.tensor([1 / 3, 1e6])
        _same_values(p, t)
        p += 0.001
        t += 0.001
        _same_values(p, t)
        for lib, x in ((pd, p), (torch, t)):
            x.copy_(lib.tensor([2.0001, -7.77, 3.3]))
        _same_values(p, t)
        for x in (p, t):
            x.mul_(1.01)
        _same_values(p, t)
        for lib, x in ((pd, p), (torch, t)):
            x.zero_().add_(lib.tensor([0.3, 0.3, 0.3], dtype=x.dtype), alpha=0.5)
        _same_values(p, t)


# --------------------------------------------------------------------------- promotion


OTHERS = [
    pd.bool,
    pd.uint8,
    pd.int8,
    pd.int16,
    pd.int32,
    pd.int64,
    pd.float16,
    pd.bfloat16,
    pd.float32,
    pd.float64,
]


@pytest.mark.parametrize("a", [pd.float16, pd.bfloat16, pd.int8])
@pytest.mark.parametrize("b", OTHERS)
def test_promotion_matches_torch(a, b):
    pa, ta = _both([3, 1, 2], a)
    pb, tb = _both([True, True, False] if b is pd.bool else [2, 1, 1], b)
    for name, fn in {
        "add": lambda x, y: x + y,
        "mul": lambda x, y: x * y,
        "div": lambda x, y: x / y,
        "maximum": lambda x, y: x.maximum(y),
        "lt": lambda x, y: x < y,
    }.items():
        if name == "div" and b is pd.bool:
            continue
        assert_close(fn(pa, pb), fn(ta, tb), what=f"{a.name} {name} {b.name}")
        assert_close(fn(pb, pa), fn(tb, ta), what=f"{b.name} {name} {a.name}")
        assert_close(fn(pa, pb[0]), fn(ta, tb[0]), what=f"{a.name} {name} 0-d {b.name}")
        assert_close(fn(pb, pa[0]), fn(tb, ta[0]), what=f"{b.name} {name} 0-d {a.name}")


@pytest.mark.parametrize("a", [pd.float16, pd.bfloat16, pd.int8])
@pytest.mark.parametrize("scalar", [2, 2.6, True, -3, 1e-3])
def test_python_scalars_keep_the_dtype(a, scalar):
    pa, ta = _both([3, 1, 2], a)
    assert_close(pa + scalar, ta + scalar)
    assert_close(pa * scalar, ta * scalar)
    assert_close(pa / scalar, ta / scalar)
    if not isinstance(scalar, bool):
        assert_close(scalar - pa, scalar - ta)


# --------------------------------------------------------------------------- ops: forward and gradient

# correctly rounded in float32, so rounded to half both libraries agree to the bit
EXACT = {
    "add": lambda x, y: x + y,
    "sub": lambda x, y: x - y,
    "mul": lambda x, y: x * y,
    "div": lambda x, y: x / y,
    "maximum": lambda x, y: x.maximum(y),
    "neg": lambda x, y: -x,
    "abs": lambda x, y: x.abs(),
    "relu": lambda x, y: x.relu(),
    "sqrt": lambda x, y: x.abs().sqrt(),
    "square": lambda x, y: x * x,
    "where": lambda x, y: (x > y).float().to(x.dtype) * x,
    "clamp": lambda x, y: x.clamp(-0.7, 1.3),
    "max": lambda x, y: x.max(-1).values if x.ndim else x.max(),
    "cat": lambda x, y: (pd if isinstance(x, pd.Tensor) else torch).cat([x.reshape(-1), y.reshape(-1)]),
    "index": lambda x, y: x.reshape(-1)[[0, -1]] if x.numel() else x.reshape(-1),
}
# computed in float32 by torch and in double by puredl, then rounded: may land one unit apart
CLOSE = {
    "exp": lambda x, y: x.exp(),
    "log": lambda x, y: (x.abs() + 0.5).log(),
    "sigmoid": lambda x, y: x.sigmoid(),
    "tanh": lambda x, y: x.tanh(),
    "sin": lambda x, y: x.sin(),
    "gelu": lambda x, y: x.gelu() if isinstance(x, pd.Tensor) else torch.nn.functional.gelu(x),
    "pow": lambda x, y: x.abs() ** 1.7,
    "sum": lambda x, y: x.sum(),
    "sum_dim": lambda x, y: x.sum(-1) if x.ndim else x.sum(),
    "mean": lambda x, y: x.mean(),
    "softmax": lambda x, y: x.softmax(-1) if x.ndim else x,
}


@pytest.mark.parametrize("name", sorted(EXACT))
@given(shape=shapes(max_dims=3), seed=seeds, dtype=half_dtypes)
def test_exact_ops_match_torch_to_the_bit(name, shape, seed, dtype):
    pa, ta, _, _ = make_pair(shape, dtype, "contiguous", seed, grad=False)
    pb, tb, _, _ = make_pair(shape, dtype, "transposed", seed + 1, grad=False)
    if name == "max" and 0 in shape:
        return
    if name == "div":
        pb, tb = pb.abs() + 0.25, tb.abs() + 0.25
    _same_values(EXACT[name](pa, pb), EXACT[name](ta, tb))


@pytest.mark.parametrize("name", sorted(CLOSE))
@given(shape=shapes(max_dims=3), seed=seeds, dtype=half_dtypes)
def test_float32_computed_ops_match_torch_within_one_unit(name, shape, seed, dtype):
    pa, ta, _, _ = make_pair(shape, dtype, "contiguous", seed, grad=False)
    out_p, out_t = CLOSE[name](pa, None), CLOSE[name](ta, None)
    assert_close(out_p, out_t, what=name)
    _representable(out_p)


@given(
    m=st.integers(1, 5),
    k=st.integers(0, 9),
    n=st.integers(1, 5),
    seed=seeds,
    dtype=half_dtypes,
    bias=st.booleans(),
)
def test_matmul_and_linear_match_torch(m, k, n, seed, dtype, bias):
    pa, ta, _, _ = make_pair((m, k), dtype, "contiguous", seed, grad=False)
    pw, tw, _, _ = make_pair((n, k), dtype, "contiguous", seed + 1, grad=False)
    pb, tb, _, _ = make_pair((n,), dtype, "contiguous", seed + 2, grad=False)
    out_p = pd.nn.functional.linear(pa, pw, pb if bias else None)
    out_t = torch.nn.functional.linear(ta, tw, tb if bias else None)
    assert_close(out_p, out_t, rtol=2**-9)
    _representable(out_p)
    assert_close(pa @ pw.T, ta @ tw.T, rtol=2**-9)
    _representable(pa @ pw.T)


def _loss(lib, a, b):
    h = (a * b + a.exp() * 0.25 - b / (a.abs() + 1.0)).tanh()
    return (h.sum() + (a * a).mean(), h)


@given(shape=shapes(min_dims=1, max_dims=3, min_side=1), seed=seeds, dtype=half_dtypes)
def test_gradients_match_torch(shape, seed, dtype):
    pa, ta, pla, tla = make_pair(shape, dtype, "contiguous", seed, low=-1.5, high=1.5)
    pb, tb, plb, tlb = make_pair(shape, dtype, "expanded", seed + 1, low=-1.5, high=1.5)
    lp, hp = _loss(pd, pa, pb)
    lt, ht = _loss(torch, ta, tb)
    assert lp.dtype is dtype
    assert_close(hp, ht, rtol=2**-8 if dtype is pd.float16 else 2**-6)
    lp.backward()
    lt.backward()
    for p, t in ((pla, tla), (plb, tlb)):
        assert p.grad.dtype is dtype
        _representable(p.grad)
        # several roundings in a row (each op rounds, as torch's half ops do): a few units apart
        assert_close(p.grad, t.grad, rtol=2**-7 if dtype is pd.float16 else 2**-5, atol=2**-7)


def test_a_half_model_trains_like_torch():
    rng = random.Random(3)
    xs = [[rng.uniform(-1, 1) for _ in range(4)] for _ in range(16)]
    ys = [[sum(x) > 0] for x in xs]
    w = [[rng.uniform(-0.5, 0.5) for _ in range(4)] for _ in range(3)]
    v = [[rng.uniform(-0.5, 0.5) for _ in range(3)]]
    losses = {}
    for lib in (pd, torch):
        model = lib.nn.Sequential(lib.nn.Linear(4, 3), lib.nn.Tanh(), lib.nn.Linear(3, 1))
        with lib.no_grad():
            model[0].weight.copy_(lib.tensor(w)), model[0].bias.zero_()
            model[2].weight.copy_(lib.tensor(v)), model[2].bias.zero_()
        model.half()
        assert model[0].weight.dtype is (pd.float16 if lib is pd else torch.float16)
        opt = lib.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
        x, y = lib.tensor(xs).half(), lib.tensor(ys).half()
        run = []
        for _ in range(5):
            opt.zero_grad()
            loss = lib.nn.functional.binary_cross_entropy_with_logits(model(x), y)
            loss.backward()
            opt.step()
            run.append(loss.item())
        losses[lib.__name__] = run
        assert model(x).dtype is (pd.float16 if lib is pd else torch.float16)
    for got, want in zip(losses["puredl"], losses["torch"]):
        assert abs(got - want) <= 4e-3 * max(1.0, abs(want)), (losses["puredl"], losses["torch"])


# --------------------------------------------------------------------------- interop


@pytest.mark.parametrize("dtype", HALVES + [pd.int8])
def test_torch_round_trip_keeps_the_dtype(dtype):
    p, t = _both([1.5, -2.25, 1e4] if dtype.is_floating_point else [1, -128, 127], dtype)
    assert p.to_torch().dtype is t.dtype and torch.equal(p.to_torch(), t)
    back = pd.from_torch(t)
    _same_values(back, t)
    _same_values(back + back, t + t)
    _same_values(pd.from_torch(t).to("cpu").clone(), t)


def test_numpy_round_trip():
    np = pytest.importorskip("numpy")
    a = np.array([0.1, -2.5, 6e4], dtype=np.float16)
    x = pd.from_numpy(a)
    assert x.dtype is pd.float16 and x.tolist() == a.astype(np.float64).tolist()
    assert x.numpy().dtype == np.float16 and (x.numpy() == a).all()
    i8 = np.array([-128, 0, 127], dtype=np.int8)
    assert pd.from_numpy(i8).dtype is pd.int8 and pd.from_numpy(i8).numpy().dtype == np.int8
    with pytest.raises(TypeError):
        torch.ones(2, dtype=torch.bfloat16).numpy()
    with pytest.raises(TypeError, match="bfloat16"):
        pd.ones(2, dtype=pd.bfloat16).numpy()


# --------------------------------------------------------------------------- safetensors


@given(xs=st.lists(any_floats, min_size=1, max_size=10))
def test_safetensors_bytes_are_the_libraries(tmp_path_factory, xs):
    st_torch = pytest.importorskip("safetensors.torch")
    folder = tmp_path_factory.mktemp("st")
    ours, theirs = folder / "ours.safetensors", folder / "theirs.safetensors"
    p = {d.name: pd.tensor(xs, dtype=d) for d in HALVES}
    p["i8"] = pd.tensor([(int(x) + 128) % 256 - 128 for x in xs if math.isfinite(x)] or [0], dtype=pd.int8)
    t = {name: v.to_torch() for name, v in p.items()}
    pd.save(p, str(ours))
    st_torch.save_file(t, str(theirs))
    loaded_by_them = st_torch.load_file(str(ours))
    for name in p:
        assert loaded_by_them[name].dtype is t[name].dtype
        # bit-exact: the raw encodings of every number (a NaN's payload bits carry nothing)
        keep = ~t[name].isnan() if t[name].is_floating_point() else torch.ones_like(t[name], dtype=torch.bool)
        assert loaded_by_them[name].isnan().tolist() == (~keep).tolist(), name
        ours_bytes = loaded_by_them[name][keep].view(torch.uint8).tolist()
        assert ours_bytes == t[name][keep].view(torch.uint8).tolist(), name
    loaded_by_us = pd.load(str(theirs))
    for name in p:
        _same_values(loaded_by_us[name], t[name])


def test_safetensors_f16_encoding_is_ieee_half(tmp_path):
    path = tmp_path / "h.safetensors"
    pd.save({"h": pd.tensor([1.0, -2.0, 65504.0], dtype=pd.float16)}, str(path))
    raw = path.read_bytes()
    assert raw.endswith(struct.pack("<3e", 1.0, -2.0, 65504.0))
    assert '"dtype":"F16"' in raw.decode("latin-1")


# --------------------------------------------------------------------------- int8


RANGE8 = (-128, 127)


@given(data=st.data())
def test_int8_arithmetic_wraps_like_torch(data):
    n = data.draw(st.integers(1, 6))
    xs = data.draw(st.lists(st.integers(*RANGE8), min_size=n, max_size=n))
    ys = data.draw(st.lists(st.integers(*RANGE8), min_size=n, max_size=n))
    pa, ta = _both(xs, pd.int8)
    pb, tb = _both(ys, pd.int8)
    for fn in (
        lambda a, b: a + b,
        lambda a, b: a - b,
        lambda a, b: a * b,
        lambda a, b: -a,
        lambda a, b: a.abs(),
        lambda a, b: a * 3 + 100,
        lambda a, b: a.maximum(b),
        lambda a, b: a ** b.clamp(0, 3),
        lambda a, b: a**2,
        lambda a, b: 3 ** a.clamp(0, 9),
        lambda a, b: a // (b.abs() + 1),
        lambda a, b: a.sum(),  # int64, no wrap
        lambda a, b: a / b.clamp(min=1),  # float32
        lambda a, b: a == b,
        lambda a, b: a.reshape(1, n) @ b.reshape(n, 1),
    ):
        assert_close(fn(pa, pb), fn(ta, tb))
    _same_values(pa.to(pd.float16), ta.to(torch.float16))
    _same_values(pa.to(pd.int64).to(pd.int8), ta)
    _same_values(pd.tensor([x * 7 for x in xs]).to(pd.int8), torch.tensor([x * 7 for x in xs]).to(torch.int8))


def test_int8_refuses_what_torch_refuses():
    with pytest.raises(RuntimeError):
        torch.tensor([128], dtype=torch.int8)
    with pytest.raises((OverflowError, RuntimeError)):
        pd.tensor([128], dtype=pd.int8)
    assert not pd.int8.is_floating_point and pd.int8.itemsize == 1
    # bool shares int8's array typecode: the two stay apart
    b = pd.tensor([True, False])
    i = pd.tensor([1, 0], dtype=pd.int8)
    assert b.dtype is pd.bool and i.dtype is pd.int8 and (b + i).dtype is pd.int8
    assert (i * 2).tolist() == [2, 0] and (b * 2).dtype is pd.int64
    assert_close(
        pd.tensor([1, 2], dtype=pd.int8) + pd.tensor([3, 4], dtype=pd.uint8),
        torch.tensor([1, 2], dtype=torch.int8) + torch.tensor([3, 4], dtype=torch.uint8),
    )


def test_all_pairs_of_half_dtypes_promote_as_torch():
    for a, b in itertools.product(HALVES + [pd.float32, pd.int8], repeat=2):
        pa, ta = _both([1, 2], a)
        pb, tb = _both([3, 4], b)
        assert (pa + pb).dtype is pd.dtypes.as_dtype((ta + tb).dtype), (a, b)
