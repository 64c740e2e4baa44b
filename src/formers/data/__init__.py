"""Data: synthetic tasks, parallel corpora, the joint subword tokenizer and token-count batching."""

from formers.data.corpus import DataError, FilterStats, read_parallel, read_tsv
from formers.data.parallel import EncodedParallel, TokenBatchSampler, collate, load_or_build
from formers.data.synthetic import SyntheticTask
from formers.data.tokenizer import Tokenizer

__all__ = [
    "DataError",
    "EncodedParallel",
    "FilterStats",
    "SyntheticTask",
    "TokenBatchSampler",
    "Tokenizer",
    "collate",
    "load_or_build",
    "read_parallel",
    "read_tsv",
]
