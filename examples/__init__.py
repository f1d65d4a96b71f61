"""Runnable examples: ``examples/demo.py`` and the paper reproductions in ``examples.reproduce``."""
