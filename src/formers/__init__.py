"""formers: the Transformer of "Attention Is All You Need" and its family, in PyTorch."""

__version__ = "0.1.0"
