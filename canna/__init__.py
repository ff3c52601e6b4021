"""CANNA: configurable approximate binary32 arithmetic for neural networks."""
__version__ = "0.1.0"
