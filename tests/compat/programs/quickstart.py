# The shape of the official "Quickstart" tutorial: accelerator-aware device choice, a Sequential
# with Flatten, train/test loops over DataLoaders, progress lines formatted from tensors,
# `.type(torch.float)` accuracy counting, and a state_dict saved and loaded with weights_only.
import os
import random
import tempfile

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

rng = random.Random(9)


def make(n):
    xs, ys = [], []
    for _ in range(n):
        label = rng.randrange(4)
        img = [[rng.gauss(0.5 if (r + c) % 4 == label else 0.0, 0.3) for c in range(6)] for r in range(6)]
        xs.append([img])
        ys.append(label)
    return TensorDataset(torch.tensor(xs), torch.tensor(ys))


training_data, test_data = make(64), make(32)
train_dataloader = DataLoader(training_data, batch_size=16)
test_dataloader = DataLoader(test_data, batch_size=16)

device = torch.accelerator.current_accelerator().type if torch.accelerator.is_available() else "cpu"
print(f"Using {device} device")


class NeuralNetwork(nn.Module):
    def __init__(self):
        super().__init__()
        self.flatten = nn.Flatten()
        self.linear_relu_stack = nn.Sequential(nn.Linear(36, 32), nn.ReLU(), nn.Linear(32, 4))

    def forward(self, x):
        x = self.flatten(x)
        return self.linear_relu_stack(x)


model = NeuralNetwork().to(device)
r = random.Random(10)
with torch.no_grad():
    for p in model.parameters():
        p.copy_(torch.tensor([r.uniform(-0.3, 0.3) for _ in range(p.numel())]).reshape(p.shape))
loss_fn = nn.CrossEntropyLoss()
optimizer = torch.optim.SGD(model.parameters(), lr=1e-1)
log = []


def train(dataloader, model, loss_fn, optimizer):
    size = len(dataloader.dataset)
    model.train()
    for batch, (X, y) in enumerate(dataloader):
        X, y = X.to(device), y.to(device)
        pred = model(X)
        loss = loss_fn(pred, y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if batch % 2 == 0:
            loss, current = loss.item(), (batch + 1) * len(X)
            print(f"loss: {loss:>7f}  [{current:>5d}/{size:>5d}]")
            log.append(loss)


def test(dataloader, model, loss_fn):
    size = len(dataloader.dataset)
    num_batches = len(dataloader)
    model.eval()
    test_loss, correct = 0, 0
    with torch.no_grad():
        for X, y in dataloader:
            X, y = X.to(device), y.to(device)
            pred = model(X)
            test_loss += loss_fn(pred, y).item()
            correct += (pred.argmax(1) == y).type(torch.float).sum().item()
    test_loss /= num_batches
    correct /= size
    print(f"Test Error: \n Accuracy: {(100 * correct):>0.1f}%, Avg loss: {test_loss:>8f} \n")
    return test_loss, correct


results = []
for t in range(3):
    print(f"Epoch {t + 1}\n-------------------------------")
    train(train_dataloader, model, loss_fn, optimizer)
    results.append(test(test_dataloader, model, loss_fn))

path = os.path.join(tempfile.mkdtemp(), "model.pth")
torch.save(model.state_dict(), path)
model = NeuralNetwork().to(device)
model.load_state_dict(torch.load(path, weights_only=True))
model.eval()
with torch.no_grad():
    x, y = test_data[0][0], test_data[0][1]
    pred = model(x.unsqueeze(0).to(device))
    predicted = pred[0].argmax(0).item()
RESULT = {"log": log, "results": [list(r) for r in results], "predicted": predicted, "label": y.item()}
