"""nn.Module bookkeeping and the layers: registration, state_dict, repr, modes, dtypes, no cycles."""

from __future__ import annotations

import gc
import math
import os

import pytest

import puredl as pd
import puredl.io
from puredl import nn, optim


class TwoLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(2, 3)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(3, 1)
        self.register_buffer("steps", pd.zeros(1))
        self.register_buffer("scratch", pd.zeros(2), persistent=False)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


def test_registration_by_attribute_and_traversal():
    m = TwoLayer()
    assert [n for n, _ in m.named_parameters()] == ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
    assert [n for n, _ in m.named_children()] == ["fc1", "act", "fc2"]
    assert [type(x).__name__ for x in m.modules()] == ["TwoLayer", "Linear", "ReLU", "Linear"]
    assert [n for n, _ in m.named_buffers()] == ["steps", "scratch"]
    # torch order: a module's own entries, then its children's
    assert list(m.state_dict()) == ["steps", "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
    assert m.num_parameters() == 2 * 3 + 3 + 3 + 1
    # reassigning a parameter slot to a plain tensor is refused, None is allowed
    with pytest.raises(TypeError, match="parameter 'weight'"):
        m.fc1.weight = pd.zeros(3, 2)
    m.fc2.bias = None
    assert [n for n, _ in m.named_parameters()] == ["fc1.weight", "fc1.bias", "fc2.weight"]
    del m.act
    assert [n for n, _ in m.named_children()] == ["fc1", "fc2"]


def test_setattr_before_init_gives_clear_error():
    class Bad(nn.Module):
        def __init__(self):
            self.fc = nn.Linear(1, 1)

    with pytest.raises(AttributeError, match="super\\(\\).__init__"):
        Bad()


def test_plain_attributes_and_property_setters():
    class WithProperty(nn.Module):
        def __init__(self):
            self.note = "set before init is fine for plain values"
            super().__init__()
            self._scale = 1.0
            self.scale = 3.0

        @property
        def scale(self):
            return self._scale

        @scale.setter
        def scale(self, v):
            self._scale = float(v) * 2

    m = WithProperty()
    assert m.scale == 6.0 and m.note.startswith("set before")
    assert list(m.state_dict()) == []


def test_shared_parameter_listed_once():
    lin = nn.Linear(2, 2)
    m = nn.Sequential(lin, nn.ReLU(), lin)
    assert len(list(m.parameters())) == 2


def test_state_dict_round_trip_and_errors():
    pd.manual_seed(0)
    a, b = TwoLayer(), TwoLayer()
    result = b.load_state_dict(a.state_dict())
    assert result.missing_keys == [] and result.unexpected_keys == []
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and va.tolist() == vb.tolist()
    # loading copies: changing the source afterwards leaves b alone
    with pd.no_grad():
        a.fc1.weight.fill_(7.0)
    assert b.fc1.weight.tolist() != a.fc1.weight.tolist()

    sd = a.state_dict()
    sd["fc1.weight"] = pd.zeros(4, 2)
    del sd["fc2.bias"]
    sd["extra"] = pd.zeros(1)
    with pytest.raises(RuntimeError) as err:
        b.load_state_dict(sd)
    msg = str(err.value)
    assert "size mismatch for fc1.weight" in msg and "(4, 2)" in msg and "(3, 2)" in msg
    assert "missing keys: 'fc2.bias'" in msg and "unexpected keys: 'extra'" in msg
    # non-strict still refuses wrong shapes but tolerates missing/unexpected keys
    sd["fc1.weight"] = pd.ones(3, 2)
    res = b.load_state_dict(sd, strict=False)
    assert res.missing_keys == ["fc2.bias"] and res.unexpected_keys == ["extra"]
    assert b.fc1.weight.tolist() == [[1.0, 1.0]] * 3


def test_state_dict_survives_safetensors(tmp_path):
    pd.manual_seed(1)
    a, b = TwoLayer(), TwoLayer()
    path = tmp_path / "m.safetensors"
    puredl.io.save(a.state_dict(), path)
    b.load_state_dict(puredl.io.load(path))
    x = pd.randn(5, 2)
    assert a(x).tolist() == b(x).tolist()


def test_train_eval_modes_reach_every_layer():
    m = nn.Sequential(nn.Linear(2, 2), nn.Sequential(nn.Dropout(0.5), nn.ReLU()))
    assert all(x.training for x in m.modules())
    m.eval()
    assert not any(x.training for x in m.modules())
    m.train()
    assert all(x.training for x in m.modules())


def test_zero_grad_and_requires_grad():
    m = TwoLayer()
    m(pd.randn(4, 2)).sum().backward()
    assert all(p.grad is not None for p in m.parameters())
    m.zero_grad(set_to_none=False)
    assert all(set(p.grad.reshape(-1).tolist()) == {0.0} for p in m.parameters())
    m.zero_grad()
    assert all(p.grad is None for p in m.parameters())
    m.requires_grad_(False)
    assert not any(p.requires_grad for p in m.parameters())


def test_apply_and_init():
    m = nn.Sequential(nn.Linear(3, 3), nn.Tanh(), nn.Linear(3, 2))

    def init_fn(mod):
        if isinstance(mod, nn.Linear):
            nn.init.constant_(mod.weight, 0.5)
            nn.init.zeros_(mod.bias)

    m.apply(init_fn)
    assert m[0].weight.tolist() == [[0.5] * 3] * 3 and m[2].bias.tolist() == [0.0, 0.0]


def test_to_dtype_keeps_parameter_identity_for_optimizers():
    m = TwoLayer()
    opt = optim.SGD(m.parameters(), lr=0.1)
    w = m.fc1.weight
    m.double()
    assert m.fc1.weight is w and w.dtype is pd.float64 and m.steps.dtype is pd.float64
    assert isinstance(w, nn.Parameter) and w.requires_grad
    x = pd.randn(3, 2, dtype=pd.float64)
    before = w.tolist()
    m(x).sum().backward()
    opt.step()
    assert w.tolist() != before
    with pytest.raises(TypeError, match="floating point"):
        m.to(pd.int64)


def test_repr_tree_like_the_seed_documents():
    m = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 1), nn.Sigmoid())
    assert str(m) == (
        "Sequential(\n"
        "  (0): Linear(2 -> 4, bias=True)\n"
        "  (1): ReLU()\n"
        "  (2): Linear(4 -> 1, bias=True)\n"
        "  (3): Sigmoid()\n"
        ")\n"
        "Total parameters: 17"
    )
    nested = TwoLayer()
    text = repr(nested)
    assert text.startswith("TwoLayer(\n  (fc1): Linear(2 -> 3, bias=True)") and "Total" not in text
    assert repr(nn.Dropout(0.25)) == "Dropout(p=0.25)" and str(nn.ReLU()) == "ReLU()"


def test_sequential_indexing_and_editing():
    layers = [nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1)]
    m = nn.Sequential(*layers)
    assert m[0] is layers[0] and m[-1] is layers[2] and len(m) == 3
    head = m[:2]
    assert isinstance(head, nn.Sequential) and list(head) == layers[:2]
    x = pd.randn(4, 2)
    assert head(x).tolist() == layers[1](layers[0](x)).tolist()
    m.append(nn.Sigmoid())
    assert len(m) == 4 and isinstance(m[3], nn.Sigmoid)
    del m[1]
    assert [n for n, _ in m.named_children()] == ["0", "1", "2"] and isinstance(m[1], nn.Linear)
    with pytest.raises(IndexError):
        m[10]
    with pytest.raises(TypeError, match="expected a Module"):
        nn.Sequential(nn.ReLU(), lambda x: x)


def test_module_list_and_dict():
    ml = nn.ModuleList([nn.Linear(1, 1), nn.Linear(1, 1)])
    md = nn.ModuleDict({"a": nn.Linear(1, 2)})

    class Holder(nn.Module):
        def __init__(self):
            super().__init__()
            self.ml, self.md = ml, md

    assert [n for n, _ in Holder().named_parameters()] == [
        "ml.0.weight",
        "ml.0.bias",
        "ml.1.weight",
        "ml.1.bias",
        "md.a.weight",
        "md.a.bias",
    ]


def test_dropout_train_and_eval():
    pd.manual_seed(0)
    d = nn.Dropout(0.25)
    x = pd.ones(4000)
    y = d(x).tolist()
    kept = [v for v in y if v != 0.0]
    assert all(abs(v - 1 / 0.75) < 1e-6 for v in kept)
    assert abs(len(kept) / 4000 - 0.75) < 0.03
    d.eval()
    assert d(x) is x
    # the mask comes from puredl's generator: same seed, same mask
    d.train()
    pd.manual_seed(3)
    a = d(x).tolist()
    pd.manual_seed(3)
    assert d(x).tolist() == a
    with pytest.raises(ValueError, match="probability"):
        nn.Dropout(1.5)


def test_identity_flatten_shapes():
    x = pd.randn(2, 3, 4)
    assert nn.Identity()(x) is x
    assert nn.Flatten()(x).shape == (2, 12)
    assert nn.Flatten(0, 1)(x).shape == (6, 4)


def test_linear_init_matches_torch_bounds_and_spread():
    pd.manual_seed(0)
    lin = nn.Linear(100, 50)
    bound = 1 / math.sqrt(100)
    w = lin.weight.reshape(-1).tolist()
    b = lin.bias.tolist()
    assert max(abs(v) for v in w) <= bound and max(abs(v) for v in b) <= bound
    # uniform on [-bound, bound]: variance bound^2 / 3
    var = sum(v * v for v in w) / len(w)
    assert abs(var - bound**2 / 3) < 0.1 * bound**2 / 3
    assert nn.Linear(3, 2, bias=False).bias is None


def test_linear_rejects_bad_sizes_and_inputs():
    with pytest.raises(ValueError, match="in_features"):
        nn.Linear(-1, 2)
    with pytest.raises(ValueError, match=r"input \(4, 5\) has 5 features, weight \(2, 3\) expects 3"):
        nn.Linear(3, 2)(pd.zeros(4, 5))


def test_embedding_bounds_and_padding():
    emb = nn.Embedding(5, 3, padding_idx=0)
    assert emb.weight[0].tolist() == [0.0, 0.0, 0.0]
    with pytest.raises(IndexError, match="out of range"):
        emb(pd.tensor([1, 5]))
    with pytest.raises(TypeError, match="int64"):
        emb(pd.tensor([1.0]))
    out = emb(pd.tensor([[0, 2], [2, 4]]))
    out.sum().backward()
    g = emb.weight.grad.tolist()
    assert g[0] == [0.0] * 3 and g[2] == [2.0] * 3 and g[4] == [1.0] * 3 and g[1] == [0.0] * 3


def test_loss_reductions_and_shape_checks():
    a, b = pd.tensor([1.0, 2.0, 4.0]), pd.tensor([1.0, 4.0, 1.0])
    assert nn.MSELoss()(a, b).item() == pytest.approx(13 / 3)
    assert nn.MSELoss(reduction="sum")(a, b).item() == 13.0
    assert nn.L1Loss(reduction="none")(a, b).tolist() == [0.0, 2.0, 3.0]
    with pytest.raises(ValueError, match="reduction"):
        nn.MSELoss(reduction="avg")
    with pytest.raises(ValueError, match="input shape \\(3, 1\\) and target shape \\(3,\\)"):
        nn.MSELoss()(a.reshape(3, 1), b)
    with pytest.raises(ValueError, match="class indices must be int64"):
        nn.CrossEntropyLoss()(pd.randn(2, 3), pd.tensor([0.0, 1.0]).reshape(2, 1))
    with pytest.raises(TypeError, match="int64 class indices"):
        nn.NLLLoss()(pd.randn(2, 3), pd.tensor([0.0, 1.0]))
    with pytest.raises(IndexError, match="out of bounds for 3 classes"):
        nn.CrossEntropyLoss()(pd.randn(2, 3), pd.tensor([0, 3]))
    with pytest.raises(ValueError, match="probabilities in \\[0, 1\\]"):
        nn.BCELoss()(pd.tensor([1.5]), pd.tensor([1.0]))


def test_no_reference_cycles_after_a_training_step():
    pd.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 1), nn.Sigmoid())
    opt = optim.Adam(model.parameters(), lr=0.01)
    x, y = pd.randn(8, 2), pd.rand(8, 1)
    gc.collect()
    gc.disable()
    try:
        for _ in range(3):
            opt.zero_grad()
            loss = nn.BCELoss()(model(x), y)
            loss.backward()
            opt.step()
        del loss
        gc.set_debug(gc.DEBUG_SAVEALL)  # keep what the collector finds, to look at
        gc.collect()
        found = [o for o in gc.garbage if _made_by_puredl(o)]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert found == [], f"gc found {len(found)} puredl objects in reference cycles after training steps"


def _made_by_puredl(o) -> bool:
    """A puredl object, or a frame or function of puredl's code (not garbage other libraries that
    earlier tests used, matplotlib's figures, freed while this test ran)."""
    code = getattr(o, "f_code", None) or getattr(o, "__code__", None)
    if code is not None:
        return f"{os.sep}puredl{os.sep}" in code.co_filename
    return type(o).__module__.startswith("puredl")


def test_backward_order_when_a_node_is_reached_by_paths_of_different_lengths():
    # regression: the graph walk once processed y's node before Sum(y) had sent it its gradient
    # (found through LayerNorm's x - mean(x)); out = (y * y.sum()).sum() = S^2, d/dx = 2S
    x = pd.tensor([1.0, 2.0, 4.0], dtype=pd.float64, requires_grad=True)
    y = x * 1.0
    (y * y.sum()).sum().backward()
    assert x.grad.tolist() == [14.0, 14.0, 14.0]
