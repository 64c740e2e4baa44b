"""Data: synthetic tasks, corpora, tokenizers (SentencePiece, characters, WordPiece, symbols),
token-count batching and MLM masking."""

from formers.data.char_tokenizer import CharTokenizer
from formers.data.corpus import DataError, FilterStats, read_parallel, read_tsv
from formers.data.hf_tokenizer import HFTokenizer
from formers.data.masking import mask_tokens
from formers.data.parallel import EncodedParallel, TokenBatchSampler, collate, load_or_build
from formers.data.symbol_tokenizer import SymbolTokenizer
from formers.data.synthetic import SyntheticTask
from formers.data.tokenizer import Tokenizer
from formers.data.tokenizers import load_tokenizer

__all__ = [
    "CharTokenizer",
    "load_tokenizer",
    "mask_tokens",
    "DataError",
    "EncodedParallel",
    "FilterStats",
    "HFTokenizer",
    "SymbolTokenizer",
    "SyntheticTask",
    "TokenBatchSampler",
    "Tokenizer",
    "collate",
    "load_or_build",
    "read_parallel",
    "read_tsv",
]
