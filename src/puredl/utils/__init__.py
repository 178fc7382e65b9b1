"""``puredl.utils``: torch.utils's layout (``puredl.utils.data``)."""

from puredl.utils import data

__all__ = ["data"]
