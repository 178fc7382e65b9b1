"""Errors raised by the fine-tuning engine; each message says what was wrong and what to do.

The CLI prints them as one clean message (no traceback), so they must stand on their own.

>>> str(ConfigError("training.batch_size must be an integer", path="a.sdn"))
'a.sdn: training.batch_size must be an integer'
"""

from __future__ import annotations


class FinetuneError(RuntimeError):
    """Base class: a fine-tuning step failed for a reason the user can act on."""


class ConfigError(FinetuneError, ValueError):
    """A config file has an unknown key, a wrong type or a bad value (message names key and file)."""

    def __init__(self, message: str, path: str | None = None) -> None:
        self.path = path
        super().__init__(f"{path}: {message}" if path else message)


class ModelLoadError(FinetuneError, OSError):
    """A model could not be loaded (offline, missing files, gated repo...)."""


class DeviceError(FinetuneError):
    """The requested device does not exist on this machine."""


class OutOfMemoryError(FinetuneError):
    """Training ran out of accelerator memory; the message lists what to reduce."""


class TrainingDivergedError(FinetuneError):
    """The loss became NaN/inf; the last good checkpoint is left untouched."""
