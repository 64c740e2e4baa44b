"""A BERT-style WordPiece tokenizer on Hugging Face ``tokenizers`` (one ``tokenizer.json`` file).

WordPiece (Wu et al. 2016, arXiv 1609.08144) as BERT uses it (Devlin et al. 2018,
arXiv 1810.04805, section 3): text is cleaned and lower-cased (``BertNormalizer``), split on
whitespace and punctuation (``BertPreTokenizer``), and each word is split greedily into the
longest pieces of the vocabulary, continuations marked ``##``. A single sentence is encoded as
``[CLS] ... [SEP]``.

:class:`HFTokenizer` reads any ``tokenizer.json`` that has BERT's five specials (e.g. that of
all-MiniLM-L6-v2, whose ids equal those of ``transformers.AutoTokenizer``) and trains new ones
with :meth:`HFTokenizer.train_wordpiece` (specials [PAD] 0, [UNK] 1, [CLS] 2, [SEP] 3, [MASK] 4).
Padding and truncation settings stored in a file are switched off: :meth:`encode` returns the
ids of one text, truncated only when ``max_length`` is given, and :meth:`pad_batch` pads.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
from tokenizers import (
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)
from torch import Tensor

from formers.data.corpus import DataError

FILENAME = "tokenizer.json"
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")  # ids 0..4 when trained here


class HFTokenizer:
    """A ``tokenizers.Tokenizer`` with BERT's specials and no padding or truncation of its own.

    Build one with :meth:`load`, :meth:`train_wordpiece` or from a ``tokenizers.Tokenizer``.
    """

    def __init__(self, tokenizer: Tokenizer) -> None:
        self._tok = tokenizer
        self._tok.no_padding()
        self._tok.no_truncation()
        ids = {token: tokenizer.token_to_id(token) for token in SPECIAL_TOKENS}
        missing = [token for token, i in ids.items() if i is None]
        if missing:
            raise DataError(
                f"the tokenizer has no {missing} token(s); HFTokenizer needs BERT's specials "
                f"{list(SPECIAL_TOKENS)} (train one with HFTokenizer.train_wordpiece)"
            )
        self.pad_id, self.unk_id, self.cls_id, self.sep_id, self.mask_id = ids.values()

    @classmethod
    def load(cls, path: str | os.PathLike) -> HFTokenizer:
        """Read ``tokenizer.json``, or a directory that holds one."""
        file = Path(path)
        if file.is_dir():
            file = file / FILENAME
        if not file.is_file():
            raise DataError(f"no tokenizer file at {file} (expected a Hugging Face {FILENAME})")
        try:
            tokenizer = Tokenizer.from_file(str(file))
        except Exception as error:  # tokenizers raises a bare Exception on bad files
            raise DataError(f"{file} is not a Hugging Face tokenizer file: {error}") from None
        return cls(tokenizer)

    def save(self, directory: str | os.PathLike) -> Path:
        """Write ``directory/tokenizer.json`` (created if needed); returns the file's path."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        file = out / FILENAME
        self._tok.save(str(file))
        return file

    @classmethod
    def train_wordpiece(
        cls, texts: Iterable[str], vocab_size: int, *, lowercase: bool = True
    ) -> HFTokenizer:
        """Learn a BERT-style WordPiece vocabulary, the same one in every process.

        ``tokenizers``' trainer numbers the continuation pieces (``##x``) in hash-map order,
        which changes from process to process, and breaks ties between equally frequent merges
        by those numbers, so that it may keep different pieces each time (huggingface/tokenizers
        issue 1794). Here every continuation piece the texts have is handed to the trainer first,
        in sorted order, among its initial tokens: it then numbers them alike in every process
        and keeps the pieces it would keep anyway, and the vocabulary is the same every time.

        Args:
            texts: training text, one sentence or document per item.
            vocab_size: the vocabulary size to reach (specials and single characters included;
                a small corpus may give fewer).
            lowercase: lower-case and strip accents (BERT "uncased") or keep text as is.

        Returns:
            A tokenizer with [PAD] 0, [UNK] 1, [CLS] 2, [SEP] 3, [MASK] 4 that encodes a text as
            ``[CLS] pieces [SEP]`` (a pair as ``[CLS] A [SEP] B [SEP]``).
        """
        if vocab_size <= len(SPECIAL_TOKENS):
            raise ValueError(f"vocab_size must exceed the {len(SPECIAL_TOKENS)} specials")
        texts = list(texts)
        normalizer, pre_tokenizer = _bert_normalizer(lowercase), pre_tokenizers.BertPreTokenizer()
        continuations = sorted({
            f"##{char}"
            for text in texts
            for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text))
            for char in word[1:]
        })  # fmt: skip
        tok = Tokenizer(models.WordPiece(unk_token="[UNK]", continuing_subword_prefix="##"))
        tok.normalizer, tok.pre_tokenizer = normalizer, pre_tokenizer
        trainer = trainers.WordPieceTrainer(
            vocab_size=vocab_size,
            special_tokens=[*SPECIAL_TOKENS, *continuations],
            continuing_subword_prefix="##",
            show_progress=False,
        )
        tok.train_from_iterator(texts, trainer)
        # ids in sorted order (specials first); WordPiece matches by string, so encoding is the
        # trainer's; a fresh tokenizer, so that the continuations are not special tokens
        learned = sorted(set(tok.get_vocab(with_added_tokens=False)) - set(SPECIAL_TOKENS))
        return cls.from_vocab([*SPECIAL_TOKENS, *learned], lowercase=lowercase)

    @classmethod
    def from_vocab(cls, tokens: Sequence[str], *, lowercase: bool = True) -> HFTokenizer:
        """A BERT-style WordPiece tokenizer over ``tokens`` (id = position, as BERT's
        ``vocab.txt``; BERT's five specials among them; continuations start with ``##``)."""
        vocab = {token: i for i, token in enumerate(tokens)}
        if len(vocab) != len(tokens):
            raise DataError("a WordPiece vocabulary must list distinct tokens")
        tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", continuing_subword_prefix="##"))
        tok.normalizer = _bert_normalizer(lowercase)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece(prefix="##")
        tok.add_special_tokens([token for token in SPECIAL_TOKENS if token in vocab])
        cls_id, sep_id = vocab.get("[CLS]"), vocab.get("[SEP]")
        if cls_id is not None and sep_id is not None:
            tok.post_processor = processors.TemplateProcessing(
                single="[CLS] $A [SEP]",
                pair="[CLS] $A [SEP] $B:1 [SEP]:1",
                special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
            )
        return cls(tok)

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size(with_added_tokens=True)

    @property
    def special_ids(self) -> set[int]:
        """The ids of [PAD], [UNK], [CLS], [SEP] and [MASK]."""
        return {self.pad_id, self.unk_id, self.cls_id, self.sep_id, self.mask_id}

    def encode(self, text: str, *, max_length: int | None = None) -> list[int]:
        """Ids of ``[CLS] text [SEP]``; with ``max_length``, at most that many ids (specials
        included: the text is cut, [SEP] is kept)."""
        if max_length is None:
            return self._tok.encode(text).ids
        return self.encode_batch([text], max_length=max_length)[0]

    def encode_batch(
        self, texts: Sequence[str], *, max_length: int | None = None
    ) -> list[list[int]]:
        """:meth:`encode` for several texts (in parallel threads); no padding."""
        if max_length is not None:
            if max_length < 2:
                raise ValueError(
                    f"max_length must leave room for [CLS] and [SEP], got {max_length}"
                )
            self._tok.enable_truncation(max_length)
        try:
            return [e.ids for e in self._tok.encode_batch(list(texts))]
        finally:
            self._tok.no_truncation()

    def pad_batch(self, sequences: Sequence[Sequence[int]]) -> Tensor:
        """Right-pad id lists with [PAD] into a ``(b, s)`` LongTensor (``s`` the longest)."""
        longest = max((len(s) for s in sequences), default=0)
        batch = torch.full((len(sequences), longest), self.pad_id, dtype=torch.long)
        for i, seq in enumerate(sequences):
            batch[i, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
        return batch

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ``ids``, specials skipped and ``##`` continuations joined."""
        return self._tok.decode(list(ids), skip_special_tokens=True)

    def pieces(self, ids: Sequence[int]) -> list[str]:
        """The vocabulary entry of each id (e.g. ``["[CLS]", "play", "##ing", "[SEP]"]``)."""
        return [self._tok.id_to_token(i) for i in ids]


def _bert_normalizer(lowercase: bool) -> normalizers.Normalizer:
    """BERT's: clean the text, space out CJK characters, lower-case and strip accents (or not)."""
    return normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=lowercase
    )
