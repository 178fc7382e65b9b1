"""Training: the Trainer loop, its History, metrics and callbacks.

>>> from puredl.train import Trainer, History, EarlyStopping, ModelCheckpoint
"""

from puredl.train import metrics
from puredl.train.callbacks import Callback, EarlyStopping, ModelCheckpoint, ProgressLogger, format_logs
from puredl.train.history import History
from puredl.train.metrics import Accuracy, accuracy
from puredl.train.trainer import NonFiniteLossError, Trainer

__all__ = [
    "Accuracy",
    "Callback",
    "EarlyStopping",
    "History",
    "ModelCheckpoint",
    "NonFiniteLossError",
    "ProgressLogger",
    "Trainer",
    "accuracy",
    "format_logs",
    "metrics",
]
