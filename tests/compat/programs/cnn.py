# An MNIST-shaped CNN classifier (two conv layers, max pooling, dropout, batch norm) on
# synthetic 28x28 "digits", trained for a few SGD steps.
import random

import torch
import torch.nn as nn
import torch.nn.functional as F


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, 1)
        self.conv2 = nn.Conv2d(4, 8, 3, 1)
        self.bn = nn.BatchNorm2d(8)
        self.fc1 = nn.Linear(8 * 12 * 12, 16)
        self.fc2 = nn.Linear(16, 10)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = F.relu(self.bn(self.conv2(x)))
        x = F.max_pool2d(x, 2)
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        return F.log_softmax(self.fc2(x), dim=1)


r = random.Random(8)
images = torch.tensor([[[[r.random() for _ in range(28)] for _ in range(28)]] for _ in range(8)])
labels = torch.tensor([r.randrange(10) for _ in range(8)])
model = Net()
with torch.no_grad():
    for name, p in model.named_parameters():
        if "bn" not in name:
            p.copy_(torch.tensor([r.gauss(0, 0.1) for _ in range(p.numel())]).reshape(p.shape))
opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
losses = []
for _ in range(3):
    opt.zero_grad()
    loss = F.nll_loss(model(images), labels)
    loss.backward()
    opt.step()
    losses.append(loss.item())
model.eval()
with torch.no_grad():
    pred = model(images).argmax(dim=1, keepdim=True)
RESULT = {"losses": losses, "pred": pred.view(-1).tolist()}
