"""A joint subword tokenizer: SentencePiece BPE trained on source and target text together.

Byte-pair encoding (Sennrich et al. 2016, arXiv:1508.07909) as the Transformer paper used it: one
vocabulary shared by both languages, so that the model can tie its embeddings. The implementation
is SentencePiece (Kudo and Richardson 2018, arXiv:1808.06226), trained in memory from an iterator
and kept as its serialized model (one ``tokenizer.model`` file, saved beside the weights).

SentencePiece normalizes text before splitting it (NFKC, runs of spaces collapsed, no leading or
trailing space), so ``decode(encode(text)) == text`` holds for text already in that form.

Special ids are fixed for every tokenizer of the project: pad 0, BOS 1, EOS 2, unknown 3.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import sentencepiece as spm
import torch

from formers.data.corpus import DataError

FILENAME = "tokenizer.model"
# Larger corpora are sampled down to this many sentences (at random, from the seed) for training:
# BPE merges settle long before, and SentencePiece holds every training sentence in memory.
MAX_TRAINING_SENTENCES = 2_000_000
# SentencePiece writes its options, num_threads included, into the model: a thread count taken
# from the machine would make the same corpus give different bytes (and fingerprints) on different
# machines. BPE training barely uses threads (2.3 s for 232k sentences on 1 thread or 2).
TRAINING_THREADS = 1


def _threads() -> int:
    return max(1, torch.get_num_threads())  # follows --threads and the test suite's one thread


class Tokenizer:
    """A SentencePiece model with the project's fixed special ids.

    Build one with :meth:`train` or :meth:`load`; the constructor takes serialized model bytes.
    """

    pad_id = 0
    bos_id = 1
    eos_id = 2
    unk_id = 3

    def __init__(self, model_proto: bytes) -> None:
        self._proto = bytes(model_proto)
        self._sp = spm.SentencePieceProcessor()
        try:
            self._sp.LoadFromSerializedProto(self._proto)
        except RuntimeError:
            raise DataError("not a SentencePiece model (the bytes do not parse)") from None
        found = (self._sp.pad_id(), self._sp.bos_id(), self._sp.eos_id(), self._sp.unk_id())
        expected = (self.pad_id, self.bos_id, self.eos_id, self.unk_id)
        if found != expected:
            raise DataError(
                f"SentencePiece model has pad/bos/eos/unk ids {found}, expected {expected}; "
                "train it with Tokenizer.train"
            )

    @classmethod
    def train(
        cls,
        texts: Iterable[str],
        vocab_size: int,
        *,
        model_type: str = "bpe",
        character_coverage: float = 1.0,
        seed: int = 0,
    ) -> Tokenizer:
        """Learn a subword vocabulary from sentences of both languages.

        Args:
            texts: sentences, source and target together (e.g. ``src_lines + tgt_lines``).
            vocab_size: pieces in the vocabulary, the 4 specials included.
            model_type: ``"bpe"`` or SentencePiece's ``"unigram"``.
            character_coverage: share of characters that get their own piece; 1.0 for
                alphabetic languages, about 0.9995 for Chinese or Japanese.
            seed: drives the sampling of corpora over ``MAX_TRAINING_SENTENCES`` sentences.

        Returns:
            The trained tokenizer; the same texts and arguments give the same model bytes on
            any machine.

        Raises:
            DataError: there is no text to train on.
            ValueError: ``vocab_size`` does not fit the corpus (the message says the limit).
        """
        if model_type not in ("bpe", "unigram"):
            raise ValueError(f"model_type must be 'bpe' or 'unigram', got {model_type!r}")
        if vocab_size < 5:
            raise ValueError(f"vocab_size must be > 4 (the special tokens), got {vocab_size}")
        counter = _NonEmpty(texts)
        writer = io.BytesIO()
        spm.set_random_generator_seed(seed)
        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=counter,
                model_writer=writer,
                vocab_size=vocab_size,
                model_type=model_type,
                character_coverage=character_coverage,
                pad_id=cls.pad_id,
                bos_id=cls.bos_id,
                eos_id=cls.eos_id,
                unk_id=cls.unk_id,
                input_sentence_size=MAX_TRAINING_SENTENCES,
                shuffle_input_sentence=True,
                num_threads=TRAINING_THREADS,
                minloglevel=1,  # warnings only: the INFO log is hundreds of lines
            )
        except RuntimeError as error:
            raise counter.error or _training_error(error, vocab_size, counter.count) from None
        if counter.error:
            raise counter.error
        return cls(writer.getvalue())

    @classmethod
    def load(cls, path: str | Path) -> Tokenizer:
        """A tokenizer from a directory holding ``tokenizer.model``, or from the file itself.

        Raises:
            FileNotFoundError: there is no such file.
            DataError: the file is not a SentencePiece model with the project's special ids.
        """
        path = Path(path)
        file = path / FILENAME if path.is_dir() else path
        if not file.is_file():
            raise FileNotFoundError(f"no tokenizer at {file}")
        try:
            return cls(file.read_bytes())
        except DataError as error:
            raise DataError(f"{file}: {error}") from None

    def save(self, directory: str | Path) -> Path:
        """Write ``DIRECTORY/tokenizer.model`` atomically (a temporary file, then a rename).

        Returns:
            The path of the written file.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / FILENAME
        tmp = directory / f".{FILENAME}.{os.getpid()}.tmp"
        with tmp.open("wb") as f:
            f.write(self._proto)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        return path

    @property
    def vocab_size(self) -> int:
        """Pieces in the vocabulary, the special tokens included."""
        return self._sp.get_piece_size()

    def encode(self, text: str) -> list[int]:
        """Token ids of one sentence, without BOS or EOS."""
        return self._sp.encode(text, out_type=int)

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """Token ids of many sentences, encoded in parallel (``torch.get_num_threads()``)."""
        return self._sp.encode(list(texts), out_type=int, num_threads=_threads())

    def decode(self, ids: Sequence[int]) -> str:
        """Detokenized text of token ids; pad, BOS and EOS are dropped wherever they are."""
        specials = (self.pad_id, self.bos_id, self.eos_id)
        return self._sp.decode([i for i in map(int, ids) if i not in specials])

    def decode_batch(self, batch: Sequence[Sequence[int]]) -> list[str]:
        """:meth:`decode` for many sentences."""
        return [self.decode(ids) for ids in batch]

    def pieces(self, ids: Sequence[int]) -> list[str]:
        """The subword of each id (``▁`` marks a word start), e.g. to label attention maps."""
        return [self._sp.id_to_piece(int(i)) for i in ids]

    def fingerprint(self) -> str:
        """SHA-256 of the serialized model: equal fingerprints mean identical tokenization."""
        return hashlib.sha256(self._proto).hexdigest()

    def __repr__(self) -> str:
        return f"Tokenizer(vocab_size={self.vocab_size}, fingerprint={self.fingerprint()[:12]})"


class _NonEmpty(Iterator[str]):
    """Passes sentences through to SentencePiece, counting those with any text.

    An error raised inside the iterator would reach the caller wrapped in a multi-line
    RuntimeError from C++, so a bad item ends the iteration and is kept in ``error`` instead.
    """

    def __init__(self, texts: Iterable[str]) -> None:
        self._texts = iter(texts)
        self.count = 0
        self.error: TypeError | None = None

    def __next__(self) -> str:
        text = next(self._texts)
        if not isinstance(text, str):
            self.error = TypeError(
                f"tokenizer training texts must be str, got {type(text).__name__}"
            )
            raise StopIteration
        self.count += bool(text.strip())
        return text


def _training_error(error: RuntimeError, vocab_size: int, sentences: int) -> ValueError:
    """SentencePiece's internal check failures, restated for users."""
    message = str(error).split("] ", 1)[-1].strip()  # drop "INTERNAL: src/file.cc(123) [check]"
    if sentences == 0:
        return DataError("no text to train the tokenizer on: every sentence is empty")
    if high := re.search(r"Vocabulary size too high.*<= (\d+)", message):
        return ValueError(
            f"vocab_size {vocab_size} is too large for this corpus: it yields at most "
            f"{high.group(1)} pieces; choose a smaller vocabulary size"
        )
    if low := re.search(r"smaller than required_chars\. \d+ vs (\d+)", message):
        return ValueError(
            f"vocab_size {vocab_size} is too small for this corpus: its characters and the "
            f"special tokens need at least {low.group(1)}"
        )
    return ValueError(f"SentencePiece could not train a tokenizer: {message or error}")
