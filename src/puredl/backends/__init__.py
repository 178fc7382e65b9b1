"""Kernel backends: pure (standard library) and torch (lazy)."""
