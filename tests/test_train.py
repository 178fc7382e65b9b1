"""Trainer: fit/evaluate/predict, progress lines, History, callbacks, and NaN handling."""

from __future__ import annotations

import gc
import os
import re

import pytest

import puredl as pd
import puredl.io
from puredl import datasets, nn, optim
from puredl.data import DataLoader
from puredl.train import EarlyStopping, History, ModelCheckpoint, NonFiniteLossError, Trainer, metrics


def xor_trainer(seed=0, hidden=8, lr=0.5, **kwargs):
    pd.manual_seed(seed)
    model = nn.Sequential(nn.Linear(2, hidden), nn.Tanh(), nn.Linear(hidden, 1), nn.Sigmoid())
    opt = optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    return Trainer(model, opt, nn.MSELoss(), metrics=["accuracy"], **kwargs)


LINE = re.compile(r"^Epoch (\d+)/(\d+) - Loss: \d+\.\d{4} - Acc: \d+\.\d{2}%$")


def test_fit_prints_seed_style_lines_and_records_history(capsys):
    trainer = xor_trainer()
    history = trainer.fit(datasets.xor(), epochs=100)
    lines = capsys.readouterr().out.strip().splitlines()
    assert [LINE.match(s).group(1) for s in lines] == [str(e) for e in range(10, 101, 10)], lines
    assert isinstance(history, History) and history is trainer.history
    assert history.epochs == list(range(1, 101)) and len(history.losses) == 100
    assert len(history.accuracies) == 100 and history.accuracies[-1] == 1.0
    assert history.losses[-1] < history.losses[0]
    result = trainer.evaluate(datasets.xor())
    assert set(result) == {"loss", "accuracy"} and result["accuracy"] == 1.0
    # the last line reports the same numbers as the history
    assert lines[-1] == f"Epoch 100/100 - Loss: {history.losses[-1]:.4f} - Acc: {history.accuracies[-1]:.2%}"


def test_quiet_fit_prints_nothing_and_log_every(capsys):
    xor_trainer().fit(datasets.xor(), epochs=5, verbose=False)
    assert capsys.readouterr().out == ""
    xor_trainer().fit(datasets.xor(), epochs=5, log_every=2)
    out = capsys.readouterr().out.splitlines()
    assert [s.split()[1] for s in out] == ["2/5", "4/5", "5/5"]


def test_validation_metrics_and_data_forms(capsys):
    x, y = datasets.iris()
    x = (x - x.mean(0)) / x.std(0)
    pd.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    trainer = Trainer(
        model, optim.Adam(model.parameters(), lr=0.05), nn.CrossEntropyLoss(), metrics="accuracy"
    )
    train, val = (x[:120], y[:120]), (x[120:], y[120:])
    history = trainer.fit(train, epochs=3, batch_size=32, val_data=val, log_every=1)
    out = capsys.readouterr().out.splitlines()
    assert re.match(
        r"^Epoch 1/3 - Loss: [\d.]+ - Acc: [\d.]+% - Val Loss: [\d.]+ - Val Acc: [\d.]+%$", out[0]
    )
    assert len(history.val_losses) == 3 and len(history.val_accuracies) == 3
    # a DataLoader and a list of batches work as data too, and give the same evaluation
    loader_eval = trainer.evaluate(DataLoader(val, batch_size=7))
    list_eval = trainer.evaluate([(x[120:135], y[120:135]), (x[135:], y[135:])])
    assert loader_eval["accuracy"] == pytest.approx(list_eval["accuracy"])
    assert loader_eval["loss"] == pytest.approx(list_eval["loss"], rel=1e-5)
    assert trainer.predict(x[:10]).shape == (10, 3)
    assert trainer.predict(val, batch_size=8).shape == (30, 3)
    assert model.training  # evaluate/predict restore the mode


def test_seed_style_list_of_samples():
    pd.manual_seed(0)
    x, y = datasets.xor()
    samples = [(x[i : i + 1], y[i : i + 1]) for i in range(4)]  # per-sample pairs, as in the seed
    trainer = xor_trainer(seed=1, lr=0.1)  # per-sample steps: a smaller rate than full-batch
    trainer.fit(samples, epochs=150, verbose=False)
    assert trainer.evaluate(samples)["accuracy"] == 1.0


def test_metrics_functions():
    out = pd.tensor([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])
    assert metrics.accuracy(out, pd.tensor([1, 0, 0])) == pytest.approx(2 / 3)
    assert metrics.accuracy(out, pd.tensor([[0.0, 1.0], [1.0, 0.0], [1.0, 0.0]])) == pytest.approx(2 / 3)
    assert metrics.accuracy(pd.tensor([-0.5, 2.0]), pd.tensor([0.0, 1.0]), threshold=0.0) == 1.0
    mae = metrics.get("mae")
    mae.update(pd.tensor([1.0, 2.0]), pd.tensor([2.0, 2.0]))
    mae.update(pd.tensor([0.0]), pd.tensor([3.0]))
    assert mae.compute() == pytest.approx(4 / 3)
    with pytest.raises(ValueError, match="unknown metric"):
        metrics.get("f1")
    with pytest.raises(ValueError, match="predictions"):
        metrics.accuracy(out, pd.tensor([1, 0]))


def test_early_stopping_restores_best_weights(capsys):
    trainer = xor_trainer(lr=0.0)  # nothing improves after the first epoch
    stopper = EarlyStopping(monitor="loss", patience=3, restore_best_weights=True)
    history = trainer.fit(datasets.xor(), epochs=50, callbacks=[stopper])
    assert len(history.epochs) == 4 and stopper.stopped_epoch == 4 and stopper.best_epoch == 1
    assert "early stopping at epoch 4" in history.stop_reason
    assert "Early stopping at epoch 4" in capsys.readouterr().out


def test_model_checkpoint_saves_best_and_loads(tmp_path):
    path = tmp_path / "ckpt" / "best.safetensors"
    trainer = xor_trainer()
    ckpt = ModelCheckpoint(path, monitor="loss")
    history = trainer.fit(datasets.xor(), epochs=30, verbose=False, callbacks=[ckpt])
    assert path.exists() and ckpt.last_saved_epoch == history.best("loss")[0]
    assert os.listdir(path.parent) == ["best.safetensors"]  # no temporary files left behind
    assert puredl.io.load_metadata(path)["epoch"] == str(ckpt.last_saved_epoch)
    fresh = xor_trainer(seed=5).model
    fresh.load_state_dict(puredl.io.load(path))
    assert list(fresh.state_dict()) == list(trainer.model.state_dict())
    every = ModelCheckpoint(tmp_path / "e{epoch}.safetensors", save_best_only=False)
    xor_trainer().fit(datasets.xor(), epochs=3, verbose=False, callbacks=[every])
    assert sorted(p.name for p in tmp_path.glob("e*.safetensors")) == [
        "e1.safetensors",
        "e2.safetensors",
        "e3.safetensors",
    ]


class NaNAt:
    """MSE that returns NaN on the n-th call (counted from 1)."""

    def __init__(self, n):
        self.n, self.calls = n, 0

    def __call__(self, out, target):
        self.calls += 1
        loss = nn.functional.mse_loss(out, target)
        return loss * float("nan") if self.calls == self.n else loss


def test_nan_loss_stops_with_epoch_and_step_and_keeps_checkpoint(tmp_path, capsys):
    pd.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 4), nn.Tanh(), nn.Linear(4, 1))
    x, y = datasets.linear_regression(n=40)
    x = x.expand(40, 2).contiguous()
    # 40 samples in batches of 10: call 4 * 2 + 3 = 11 is epoch 3, step 3
    trainer = Trainer(model, optim.SGD(model.parameters(), lr=0.05), NaNAt(11))
    path = tmp_path / "model.safetensors"
    ckpt = ModelCheckpoint(path, monitor="loss", save_best_only=False)
    history = trainer.fit((x, y), epochs=10, batch_size=10, shuffle=False, callbacks=[ckpt], verbose=False)
    saved_bytes = path.read_bytes()
    err = capsys.readouterr().err
    assert "loss became nan at epoch 3, step 3 of 4" in err and "epoch 2" in err and str(path) in err
    assert history.epochs == [1, 2] and "epoch 3, step 3" in history.stop_reason
    assert ckpt.last_saved_epoch == 2 and path.read_bytes() == saved_bytes
    # parameters are finite: the NaN batch did not update them
    assert all(v == v for p in model.parameters() for v in p.reshape(-1).tolist())

    trainer = Trainer(model, optim.SGD(model.parameters(), lr=0.05), NaNAt(2), on_nonfinite="raise")
    with pytest.raises(NonFiniteLossError, match="epoch 1, step 2"):
        trainer.fit((x, y), epochs=2, batch_size=10, verbose=False)


def test_scheduler_grad_clip_and_history_plot(tmp_path):
    trainer = xor_trainer(grad_clip=0.5)
    trainer.scheduler = optim.lr_scheduler.StepLR(trainer.optimizer, step_size=2, gamma=0.5)
    history = trainer.fit(datasets.xor(), epochs=5, verbose=False)
    assert history.lrs == [0.5, 0.5, 0.25, 0.25, 0.125]
    pytest.importorskip("matplotlib")
    png = history.plot(str(tmp_path / "h.png"))
    with open(png, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_fit_argument_errors():
    trainer = xor_trainer()
    with pytest.raises(ValueError, match="epochs"):
        trainer.fit(datasets.xor(), epochs=0)
    with pytest.raises(TypeError, match="data must be"):
        trainer.fit(42, epochs=1, verbose=False)
    x, y = datasets.xor()
    with pytest.raises(ValueError, match="4 rows but y has 3"):
        trainer.fit((x, y[:3]), epochs=1, verbose=False)
    with pytest.raises(ValueError, match="on_nonfinite"):
        Trainer(trainer.model, trainer.optimizer, nn.MSELoss(), on_nonfinite="ignore")


def test_no_reference_cycles_after_fit():
    trainer = xor_trainer()
    trainer.fit(datasets.xor(), epochs=2, verbose=False, callbacks=[EarlyStopping(patience=5)])
    gc.collect()
    gc.disable()
    try:
        trainer.fit(datasets.xor(), epochs=2, verbose=False, callbacks=[EarlyStopping(patience=5)])
        found = gc.collect()
    finally:
        gc.enable()
    assert found == 0


class FakeTerminal:
    """A text stream that says it is a terminal (so the progress bar turns on)."""

    def __init__(self):
        import io

        self.buffer = io.StringIO()

    def isatty(self):
        return True

    def write(self, s):
        return self.buffer.write(s)

    def flush(self):
        pass


def test_progress_bar_on_a_terminal_keeps_the_epoch_lines():
    pytest.importorskip("tqdm")
    from puredl.train import ProgressLogger

    term = FakeTerminal()
    trainer = xor_trainer()
    trainer.fit(datasets.xor(), epochs=20, verbose=False, callbacks=[ProgressLogger(stream=term)])
    text = term.buffer.getvalue()
    assert "epoch" in text  # the tqdm bar's unit
    assert re.search(r"Epoch 20/20 - Loss: \d\.\d{4} - Acc: \d+\.\d\d%", text)
    plain = FakeTerminal()
    plain.isatty = lambda: False
    trainer.fit(datasets.xor(), epochs=2, verbose=False, callbacks=[ProgressLogger(stream=plain)])
    assert plain.buffer.getvalue().splitlines() == [
        s for s in plain.buffer.getvalue().splitlines() if s.startswith("Epoch ")
    ]
