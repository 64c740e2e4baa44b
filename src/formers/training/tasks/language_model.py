"""Language modelling: a decoder-only model predicts each next token of a text (GPT, Radford et
al. 2018; nanoGPT's training setup).

The training text becomes one stream of token ids; a batch is ``batch_size`` windows of
``context_length + 1`` tokens at random offsets (nanoGPT's ``get_batch``), drawn from the seed
and the epoch so that a resumed run sees the same windows. An "epoch" is as many windows as the
text has tokens. Validation reads the whole validation text once, in consecutive windows, and
reports its cross-entropy per token (``loss``, never label-smoothed) and perplexity; nanoGPT's
estimate averages random windows instead, which has the same expectation.

Tokenizers: characters (nanoGPT's shakespeare_char) or SentencePiece BPE; with BPE each line of
the text ends with the end-of-sequence token.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from formers.nn.modes import evaluating
from formers.training.distributed import Distributed
from formers.training.losses import summed_cross_entropy
from formers.training.tasks.base import Batch, Task


class LanguageModelTask(Task):
    """See the module docstring."""

    default_metric = "loss"

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        from formers.data.text import read_text, split_text

        d = self.cfg.data
        text = read_text(d.train)
        if d.valid:
            valid_text = read_text(d.valid)
        elif d.valid_fraction > 0:
            text, valid_text = split_text(text, d.valid_fraction)
        else:
            valid_text = ""
        self.tokenizer = self._tokenizer(text)
        tok = self.tokenizer
        self.train_ids = self._encode(text)
        self.valid_ids = self._encode(valid_text) if valid_text else None
        ids = {"pad_id": tok.pad_id, "bos_id": tok.bos_id, "eos_id": tok.eos_id}
        self.model = self.build_model(vocab_size=tok.vocab_size, **ids)
        self.context = int(self.model_config.context_length)
        if self.cfg.train.batch_size < 1:
            raise ValueError("[train] batch_size must be set (>= 1) for task = 'lm'")
        if len(self.train_ids) <= self.context:
            raise ValueError(
                f"the training text has {len(self.train_ids)} tokens, fewer than the context "
                f"length {self.context} + 1"
            )
        self.log({"type": "data", "split": "train", "tokens": len(self.train_ids)})
        if self.valid_ids is not None:
            self.log({"type": "data", "split": "valid", "tokens": len(self.valid_ids)})

    def _tokenizer(self, text: str):
        from formers.data.tokenizers import load_tokenizer

        saved = load_tokenizer(self.run_dir) if self.run_dir.is_dir() else None
        if saved is not None:
            return saved
        tc = self.cfg.tokenizer
        if tc.path:
            tokenizer = load_tokenizer(tc.path)
        elif tc.kind == "char":
            from formers.data.char_tokenizer import CharTokenizer

            tokenizer = CharTokenizer.train(text)
        elif tc.kind == "sentencepiece":
            from formers.data.tokenizer import Tokenizer

            lines = [line for line in text.splitlines() if line.strip()]
            tokenizer = Tokenizer.train(
                lines, tc.vocab_size, model_type=tc.model_type,
                character_coverage=tc.character_coverage, seed=self.cfg.train.seed,
            )  # fmt: skip
        else:
            raise ValueError("[tokenizer] kind='wordpiece' is for encoders; use char or bpe")
        tokenizer.save(self.run_dir)
        return tokenizer

    def _encode(self, text: str) -> Tensor:
        tok = self.tokenizer
        if tok.eos_id is None:  # characters: the text as it is, newlines included
            return torch.tensor(tok.encode(text), dtype=torch.long)
        ids: list[int] = []
        for line in tok.encode_batch([line for line in text.splitlines() if line.strip()]):
            ids.extend(line)
            ids.append(tok.eos_id)
        return torch.tensor(ids, dtype=torch.long)

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        b = self.cfg.train.batch_size
        starts = len(self.train_ids) - self.context  # windows of context + 1 tokens
        n = max(1, len(self.train_ids) // (b * self.context))
        rng = np.random.default_rng([self.cfg.train.seed, epoch])
        return rng.integers(0, starts, size=(n, b)).tolist()

    def _windows(self, ids: Tensor, offsets: list[int]) -> tuple[Tensor, Tensor]:
        index = torch.tensor(offsets)[:, None] + torch.arange(self.context + 1)  # (b, T + 1)
        windows = ids[index]
        return windows[:, :-1].to(self.device), windows[:, 1:].to(self.device)

    def collate(self, item: list[int]) -> Batch:
        x, y = self._windows(self.train_ids, item)
        return Batch({"x": x, "y": y}, y.numel(), y.numel())

    def loss(self, model: nn.Module, batch: Batch) -> tuple[Tensor, Tensor]:
        logits = model(batch.tensors["x"])  # (b, T, V)
        y = batch.tensors["y"].flatten()
        flat = logits.flatten(0, 1).float()  # (b*T, V)
        return summed_cross_entropy(flat, y, self.cfg.train.label_smoothing)

    def validate(self, model: nn.Module, dist: Distributed | None = None) -> dict[str, Any] | None:
        if self.valid_ids is None or len(self.valid_ids) <= 1:
            return None
        t = self.cfg.train
        dist = dist or Distributed()
        # consecutive windows; the last one may be shorter
        starts = list(range(0, len(self.valid_ids) - 1, self.context))
        chunks = [starts[i : i + t.batch_size] for i in range(0, len(starts), t.batch_size)]
        if t.valid_batches:
            chunks = chunks[: t.valid_batches]
        nll_sum, count = 0.0, 0
        with evaluating(model):
            for chunk in dist.shard(chunks):
                full = [s for s in chunk if s + self.context < len(self.valid_ids)]
                if full:
                    x, y = self._windows(self.valid_ids, full)
                    nll_sum += float(F.cross_entropy(model(x).flatten(0, 1).float(), y.flatten(),
                                                     reduction="sum"))  # fmt: skip
                    count += y.numel()
                for s in set(chunk) - set(full):  # the tail
                    tail = self.valid_ids[s:].to(self.device)
                    logits = model(tail[None, :-1])[0]
                    nll_sum += float(F.cross_entropy(logits.float(), tail[1:], reduction="sum"))
                    count += tail.numel() - 1
        nll_sum, total = dist.all_reduce_sum([nll_sum, count])  # every process's sums
        count = int(total)
        loss = nll_sum / max(count, 1)
        return {"loss": loss, "ppl": math.exp(min(loss, 100.0)), "tokens": count}
