"""DepthG course library: one module per pipeline stage (see README and ../SPEC)."""

__version__ = "0.1.0"
