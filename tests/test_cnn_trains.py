"""A small CNN learns the bundled 8x8 digits on the pure tier (standard library alone): the loss
goes down and held-out accuracy is far above chance (10%)."""

from __future__ import annotations

import puredl as pd
from puredl import accel, datasets, nn, optim


def test_cnn_learns_bundled_digits_on_the_pure_tier():
    accel.set_acceleration(accel.AccelMode.PURE)
    pd.manual_seed(0)
    x, y = datasets.digits()
    x = (x / 16.0).reshape(-1, 1, 8, 8)
    train_x, train_y, test_x, test_y = x[:320], y[:320], x[1500:1700], y[1500:1700]
    model = nn.Sequential(
        nn.Conv2d(1, 6, 3, padding=1),
        nn.BatchNorm2d(6),
        nn.ReLU(),
        nn.MaxPool2d(2),  # 4x4
        nn.Conv2d(6, 8, 3, padding="same"),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(8 * 2 * 2, 10),
    )
    opt = optim.Adam(model.parameters(), lr=0.02)
    loss_fn = nn.CrossEntropyLoss()
    losses = []
    for _ in range(4):
        for i in range(0, 320, 32):
            opt.zero_grad()
            loss = loss_fn(model(train_x[i : i + 32]), train_y[i : i + 32])
            loss.backward()
            opt.step()
            losses.append(loss.item())
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.6 * first, (first, last)
    model.eval()
    with pd.no_grad():
        accuracy = (model(test_x).argmax(dim=1) == test_y).float().mean().item()
    assert accuracy > 0.5, accuracy  # chance is 0.1
