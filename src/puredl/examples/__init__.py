"""Runnable examples: `puredl example NAME` or `python -m puredl.examples.NAME`.

Each example is a module here with ``main(argv: list[str] | None = None) -> int``.
"""
