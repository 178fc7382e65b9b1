"""Packing on a GPU: packed rows give the unpacked per-example losses (float32 and bf16 autocast)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # finetune_helpers

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_packed_equals_unpacked_on_cuda(torch_cuda, dtype):
    pytest.importorskip("transformers")
    pytest.importorskip("peft")
    from puredl.finetune.batching import collate
    from puredl.finetune.packing import check_packing_isolates, pack_examples
    from puredl.finetune.trainer import batch_loss_sum
    from test_finetune_batching import encoded, model_with

    torch = torch_cuda
    examples = encoded(12)
    model = model_with().to("cuda")
    check_packing_isolates(model, examples, "cuda")
    units = pack_examples(examples, 96)
    n = sum(e.n_targets for e in examples)
    amp = getattr(torch, dtype)
    with torch.no_grad(), torch.autocast("cuda", dtype=amp, enabled=dtype != "float32"):
        packed = batch_loss_sum(model, collate(units, 0, "cuda")) / n
        alone = batch_loss_sum(model, collate(examples, 0, "cuda")) / n
    tol = 1e-5 if dtype == "float32" else 2e-2
    torch.testing.assert_close(packed, alone, rtol=tol, atol=tol)
