"""The torch-compatible surface (issue #13) works with the standard library alone."""

from __future__ import annotations

from test_no_deps import _run_isolated


def test_torch_style_program_runs_without_any_installed_package():
    proc = _run_isolated(
        """
        import importlib.util, os, sys, tempfile
        assert importlib.util.find_spec("torch") is None and importlib.util.find_spec("numpy") is None
        import puredl as torch
        from puredl.utils.data import DataLoader, TensorDataset

        class Double(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                return x * 2

            @staticmethod
            def backward(ctx, g):
                return g * 2

        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        assert device == "cpu" and not torch.accelerator.is_available()
        torch.cuda.manual_seed_all(0)
        model = torch.nn.Linear(2, 1).to(device)
        opt = torch.optim.RMSprop(model.parameters(), lr=0.01)
        data = TensorDataset(torch.Tensor([[1, 2], [3, 4], [5, 6]]), torch.Tensor([1, 2, 3]))
        for xb, yb in DataLoader(data, batch_size=2, shuffle=True, num_workers=2, pin_memory=True):
            loss = torch.nn.functional.smooth_l1_loss(Double.apply(model(xb)).squeeze(1), yb)
            opt.zero_grad(); loss.backward(); opt.step()
        path = os.path.join(tempfile.mkdtemp(), "ckpt.pt")
        torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "step": 2}, path)
        assert torch.load(path, map_location=device)["step"] == 2
        with torch.inference_mode():
            print(f"loss {loss:.4f}", model(torch.ones(1, 2)).requires_grad)
        try:
            torch.ones(2).numpy()
        except ImportError as e:
            print("numpy:", e)
        third_party = sorted(
            name for name in sys.modules
            if name.split(".")[0] not in (*sys.stdlib_module_names, "puredl", "__main__")
        )
        assert not third_party, third_party
        print("ok")
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert "pip install 'puredl[numpy]'" in proc.stdout
    assert "False" in proc.stdout and proc.stdout.strip().endswith("ok")
