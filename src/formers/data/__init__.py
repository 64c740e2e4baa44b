"""Data: synthetic tasks (tokenizers and corpora come with the translation pipeline)."""

from formers.data.synthetic import SyntheticTask

__all__ = ["SyntheticTask"]
