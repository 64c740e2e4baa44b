"""Synthetic sequence-to-sequence tasks generated on the fly: copy, reverse and sort.

The copy task is the Annotated Transformer's first example (random sequences of the symbols
1..10, which the model must reproduce); reversing and sorting need attention to move
information across positions, which makes their attention maps worth looking at.

Token ids: 0 padding, 1 BOS, 2 EOS, then symbol ``i`` (1-based) has id ``i + 2``.

Shapes: b batch, s source length, t target length (``s + 1`` with BOS or EOS).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

PAD, BOS, EOS = 0, 1, 2
NUM_SPECIAL = 3
TASKS = ("copy", "reverse", "sort")


@dataclass(frozen=True)
class SyntheticTask:
    """A task on random symbol sequences.

    Attributes:
        kind: ``"copy"``, ``"reverse"`` or ``"sort"``.
        num_symbols: symbols 1..num_symbols.
        min_len, max_len: source lengths are drawn uniformly from this range.
    """

    kind: str = "copy"
    num_symbols: int = 10
    min_len: int = 10
    max_len: int = 10

    def __post_init__(self) -> None:
        if self.kind not in TASKS:
            raise ValueError(f"unknown task {self.kind!r}; choose one of {list(TASKS)}")
        if not 1 <= self.min_len <= self.max_len:
            raise ValueError(f"need 1 <= min_len <= max_len, got {self.min_len}, {self.max_len}")
        if self.num_symbols < 2:
            raise ValueError(f"num_symbols must be >= 2, got {self.num_symbols}")

    @property
    def vocab_size(self) -> int:
        return self.num_symbols + NUM_SPECIAL

    def target_of(self, symbols: Tensor) -> Tensor:
        """The expected output symbols for ``(n,)`` source symbols (no specials)."""
        if self.kind == "reverse":
            return symbols.flip(0)
        if self.kind == "sort":
            return symbols.sort().values
        return symbols

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> Batch:
        """A batch of right-padded sources with teacher-forcing targets."""
        lengths = torch.randint(self.min_len, self.max_len + 1, (batch_size,), generator=generator)
        symbols = torch.randint(
            NUM_SPECIAL, self.vocab_size, (batch_size, self.max_len), generator=generator
        )
        src = torch.full((batch_size, self.max_len), PAD)
        tgt = torch.full((batch_size, self.max_len + 2), PAD)  # BOS + symbols + EOS
        for i, n in enumerate(lengths.tolist()):  # one row per sentence, not per token
            src[i, :n] = symbols[i, :n]
            tgt[i, 0] = BOS
            tgt[i, 1 : n + 1] = self.target_of(symbols[i, :n])
            tgt[i, n + 1] = EOS
        return Batch(src, tgt[:, :-1], tgt[:, 1:])


@dataclass
class Batch:
    """A batch for teacher forcing.

    Attributes:
        src: ``(b, s)`` right-padded sources.
        tgt_in: ``(b, t)`` decoder inputs, starting with BOS.
        tgt_out: ``(b, t)`` expected outputs, ending with EOS.
    """

    src: Tensor
    tgt_in: Tensor
    tgt_out: Tensor
