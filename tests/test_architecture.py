"""The layering of src/puredl, checked from the source with ``ast`` (function-level imports count).

- backends hold kernels only: they import nothing from accel (or anything above them);
- bottom modules (shapes, dtypes, the backend contract) import nothing that imports them back;
- import cycles: no cycle longer than 3 modules (#15's target), and the tensor module at the
  bottom of the core imports nothing that computes.
"""

from __future__ import annotations

import ast
import os

import pytest

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src", "puredl")


def _modules() -> dict:
    mods = {}
    for dirpath, _, files in os.walk(SRC):
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(dirpath, f)
                name = os.path.relpath(path, os.path.dirname(SRC))[:-3].replace(os.sep, ".")
                mods[name.removesuffix(".__init__")] = path
    return mods


def import_graph() -> dict:
    """module -> the puredl modules it imports anywhere in its source (module or function level).

    ``from puredl import name`` counts as importing ``puredl.name`` when that is a module, else
    the package ``puredl`` itself.
    """
    mods = _modules()

    def resolve(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph = {}
    for mod, path in mods.items():
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read())
        package = mod if path.endswith("__init__.py") else mod.rpartition(".")[0]
        deps = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                deps.update(resolve(a.name) for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                for a in node.names:
                    full = f"{base}.{a.name}"
                    deps.add(full if full in mods else resolve(base))
        deps.discard(None)
        deps.discard(mod)
        graph[mod] = deps
    return graph


def strongly_connected(graph: dict) -> list:
    """Groups of modules that import each other in a circle (Tarjan), largest first."""
    index, low, stack, on_stack, groups = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.add(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(group)

    for v in graph:
        if v not in index:
            visit(v)
    return sorted(groups, key=len, reverse=True)


def _without_package_root(graph: dict) -> dict:
    # ``from puredl import no_grad`` style imports of the package's re-exports are left out here
    return {m: {d for d in deps if d != "puredl"} for m, deps in graph.items()}


def test_backends_import_nothing_from_accel_or_above():
    graph = import_graph()
    kernels = (
        "puredl.backends.pure",
        "puredl.backends.pure_conv",
        "puredl.backends.pure_optim",
        "puredl.backends.pure_narrow",
        "puredl.backends.torch",
        "puredl.backends.contract",
    )
    for mod in kernels:  # pure_conv, pure_optim: the pure backend's CNN and optimizer kernels
        allowed = {
            "puredl.dtypes",
            "puredl.shapes",
            "puredl.backends",
            "puredl.backends.pure",
            "puredl.backends.pure_conv",
            "puredl.backends.pure_optim",
            "puredl.backends.pure_narrow",
        }
        assert graph[mod] <= allowed, f"{mod} imports {sorted(graph[mod] - allowed)}"


def test_bottom_modules_import_nothing_above_them():
    graph = import_graph()
    assert graph["puredl.shapes"] == set()
    assert graph["puredl.dtypes"] == set()
    assert graph["puredl.backends.contract"] <= {"puredl.dtypes"}


def test_both_backends_supply_every_kernel_of_the_contract():
    pytest.importorskip("torch")
    from puredl.backends import contract, pure
    from puredl.backends import torch as tb

    for be in (pure, tb):
        missing = [k for k in contract.KERNELS if not callable(getattr(be, k, None))]
        assert not missing, f"{be.NAME} lacks {missing}"
        assert isinstance(be.NAME, str)


def test_no_import_cycle_longer_than_three_modules():
    # #15's target: tensor.py sits below the ops (its op methods are attached by tensor_methods),
    # ops reach nothing above them, torch/NumPy interop lives in creation
    groups = strongly_connected(_without_package_root(import_graph()))
    assert all(len(g) <= 3 for g in groups), [sorted(g) for g in groups if len(g) > 3]


def test_the_tensor_module_imports_nothing_that_computes():
    # Tensor's op methods are attached from above (tensor_methods); tensor.py itself stays below the ops
    graph = import_graph()
    below = {"puredl.autograd", "puredl.dtypes", "puredl.shapes", "puredl.printing", "puredl.backends.pure"}
    assert graph["puredl.tensor"] <= below, sorted(graph["puredl.tensor"] - below)
    for mod in graph:
        if mod not in ("puredl", "puredl.tensor_methods"):
            assert "puredl.tensor_methods" not in graph[mod], (
                f"{mod} imports tensor_methods (the top of the core)"
            )


def _names_in_code(path: str, word: str) -> list:
    """Lines where ``word`` is used in code: as a name, an attribute, a string key or argument
    (docstrings and comments do not count)."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id == word:
            lines.append(node.lineno)
        elif isinstance(node, ast.Attribute) and node.attr == word:
            lines.append(node.lineno)
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name == word:
            lines.append(node.lineno)
        elif isinstance(node, ast.Constant) and node.value == word and id(node) not in docstrings:
            lines.append(node.lineno)
    return lines


def test_a_plain_unary_op_is_named_in_ops_table_and_one_kernel_per_backend_only():
    """#15's "must show": erf is one entry of ops.UNARY_OPS and one kernel per backend, nowhere else
    (its method, operator-free function and package export are made from the table)."""
    import puredl as pd
    from puredl import ops

    for op in ops.UNARY_OPS:
        assert callable(getattr(pd, op)) and callable(getattr(pd.Tensor, op)), op
    allowed = {
        os.path.join(SRC, "ops.py"),  # the table entry (and gelu's gradient rule, which uses it)
        os.path.join(SRC, "backends", "pure.py"),  # the pure kernel
        os.path.join(SRC, "backends", "torch.py"),  # the torch kernel
    }
    named = {path: _names_in_code(path, "erf") for path in _modules().values()}
    elsewhere = {os.path.relpath(p, SRC): lines for p, lines in named.items() if lines and p not in allowed}
    assert not elsewhere, f"erf is named outside ops' table and the backends: {elsewhere}"
    for backend in ("pure.py", "torch.py"):
        assert named[os.path.join(SRC, "backends", backend)], f"no erf kernel in backends/{backend}"
    assert "erf" in ops.UNARY_OPS
    x = pd.tensor([0.5, -1.0], requires_grad=True)
    pd.erf(x).sum().backward()
    assert x.erf().tolist() == pytest.approx([0.5204998778, -0.8427007929])
    assert x.grad.tolist() == pytest.approx([0.8787825789, 0.4151074974])


def test_the_grep_sees_a_name_outside_the_table(tmp_path):
    # the check above must be able to fail: a module that calls ops.erf or unary("erf") is caught
    path = tmp_path / "m.py"
    path.write_text(
        '"""erf in a docstring is fine."""\n\n\ndef f(x):\n    return ops.erf(x) + unary("erf", x)\n'
    )
    assert _names_in_code(str(path), "erf") == [5, 5]
