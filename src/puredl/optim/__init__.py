"""Optimizers (SGD, Adam, AdamW, RMSprop, Adagrad, Adadelta) and learning-rate schedules.

Each follows PyTorch's update rule.

>>> import puredl as pd
>>> from puredl import nn, optim
>>> model = nn.Linear(1, 1)
>>> opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
>>> sched = optim.lr_scheduler.CosineAnnealingLR(opt, T_max=10)
"""

from puredl.nn.utils import clip_grad_norm_, clip_grad_value_  # re-exported for convenience
from puredl.optim import lr_scheduler
from puredl.optim.adadelta import Adadelta
from puredl.optim.adagrad import Adagrad
from puredl.optim.adam import Adam, AdamW
from puredl.optim.optimizer import Optimizer
from puredl.optim.rmsprop import RMSprop
from puredl.optim.sgd import SGD

__all__ = [
    "SGD",
    "Adadelta",
    "Adagrad",
    "Adam",
    "AdamW",
    "Optimizer",
    "RMSprop",
    "clip_grad_norm_",
    "clip_grad_value_",
    "lr_scheduler",
]
