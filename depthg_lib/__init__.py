"""DepthG course library: one module per pipeline stage (see README and docs/method.md)."""

__version__ = "0.1.0"
