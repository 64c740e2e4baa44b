"""Language modelling: a decoder-only model predicts each next token of a text (GPT, Radford et
al. 2018; nanoGPT's training setup; Transformer-XL, Dai et al. 2019, arXiv 1901.02860).

The training text becomes one stream of token ids. For a GPT, a batch is ``batch_size`` windows
of ``context_length + 1`` tokens at random offsets (nanoGPT's ``get_batch``), and an "epoch" is as
many windows as the text has tokens. For a model with segment memory (Transformer-XL), batches
are *streams* (the official code's ordered iterator): the text, from an offset drawn per epoch
below one segment, is cut into ``batch_size`` consecutive parts, one per batch row, and step
``s`` of the epoch reads segment ``s`` of every part, so that each row's memory carries its own
context from step to step; the memory is reset at each epoch's start and saved in every
checkpoint (``task_state.safetensors``), so that a resumed run continues with it exactly.
Batches are drawn from the seed and the epoch alone, so that a resumed run sees the same ones.

Validation reads the whole validation text once (:mod:`formers.inference.perplexity`: windows for
a GPT, one stream with the memory for Transformer-XL) and reports its cross-entropy per token
(``loss``, never label-smoothed) and perplexity; nanoGPT's estimate averages random windows
instead, which has the same expectation.

Tokenizers: characters (nanoGPT's shakespeare_char) or SentencePiece BPE; with BPE each line of
the text ends with the end-of-sequence token.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from formers.inference.perplexity import (
    encode_text,
    metrics,
    stream_loss,
    window_chunks,
    window_sums,
)
from formers.nn.recurrent_lm import RecurrentLM
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
        self.train_ids = encode_text(tok, text)
        self.valid_ids = encode_text(tok, valid_text) if valid_text else None
        ids = {"pad_id": tok.pad_id, "bos_id": tok.bos_id, "eos_id": tok.eos_id}
        self.model = self.build_model(vocab_size=tok.vocab_size, **ids)
        self.recurrent = isinstance(self.model, RecurrentLM)
        if self.recurrent:  # segments of streams, with a memory carried across steps
            if int(os.environ.get("WORLD_SIZE", "1")) > 1:
                raise ValueError(
                    "a model with segment memory trains in one process: each batch row's memory "
                    "continues its own stream from step to step, which torchrun's sharding of "
                    "the batches would break"
                )
            self.context = self.model.segment_length
            self.memory = self.model.new_memory()
        else:
            self.context = int(self.model_config.context_length)
        if self.cfg.train.batch_size < 1:
            raise ValueError("[train] batch_size must be set (>= 1) for task = 'lm'")
        needed = self.context * (self.cfg.train.batch_size if self.recurrent else 1) + self.context
        if len(self.train_ids) <= needed:
            what = "batch_size streams of one segment, plus one segment for the offset"
            raise ValueError(
                f"the training text has {len(self.train_ids)} tokens, fewer than the "
                f"{needed} + 1 needed ({what if self.recurrent else 'the context length'})"
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

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        if self.recurrent:
            return self._stream_batches(epoch)
        b = self.cfg.train.batch_size
        starts = len(self.train_ids) - self.context  # windows of context + 1 tokens
        n = max(1, len(self.train_ids) // (b * self.context))
        rng = np.random.default_rng([self.cfg.train.seed, epoch])
        return rng.integers(0, starts, size=(n, b)).tolist()

    def _windows(self, ids: Tensor, offsets: list[int]) -> tuple[Tensor, Tensor]:
        index = torch.tensor(offsets)[:, None] + torch.arange(self.context + 1)  # (b, T + 1)
        windows = ids[index]
        return windows[:, :-1].to(self.device), windows[:, 1:].to(self.device)

    def _stream_batches(self, epoch: int) -> list[list[int]]:
        """``[offset, s]`` for each segment ``s`` of the epoch's streams."""
        b, length = self.cfg.train.batch_size, self.context
        offset = int(np.random.default_rng([self.cfg.train.seed, epoch]).integers(0, length))
        segments = (len(self.train_ids) - 1 - offset) // b // length
        return [[offset, s] for s in range(segments)]

    def _stream_starts(self, offset: int, segment: int) -> list[int]:
        """Where segment ``segment`` of each row's stream starts."""
        b, length = self.cfg.train.batch_size, self.context
        part = (len(self.train_ids) - 1 - offset) // b  # tokens per stream
        return [offset + row * part + segment * length for row in range(b)]

    def collate(self, item: list[int]) -> Batch:
        if self.recurrent:
            offset, segment = item
            x, y = self._windows(self.train_ids, self._stream_starts(offset, segment))
            first = torch.tensor(segment == 0)  # a new epoch's streams start: forget
            return Batch({"x": x, "y": y, "first": first}, y.numel(), y.numel())
        x, y = self._windows(self.train_ids, item)
        return Batch({"x": x, "y": y}, y.numel(), y.numel())

    def training_tensors(self) -> dict[str, Tensor]:
        return self.memory.tensors() if self.recurrent else {}

    def load_training_tensors(self, tensors: dict[str, Tensor]) -> None:
        if self.recurrent:
            self.memory.load_tensors({k: v.to(self.device) for k, v in tensors.items()})

    def loss(self, model: nn.Module, batch: Batch) -> tuple[Tensor, Tensor]:
        if self.recurrent:
            if bool(batch.tensors["first"]):
                self.memory.reset()
            logits = model(batch.tensors["x"], memory=self.memory)  # (b, T, V)
        else:
            logits = model(batch.tensors["x"])  # (b, T, V)
        y = batch.tensors["y"].flatten()
        flat = logits.flatten(0, 1).float()  # (b*T, V)
        return summed_cross_entropy(flat, y, self.cfg.train.label_smoothing)

    def validate(self, model: nn.Module, dist: Distributed | None = None) -> dict[str, Any] | None:
        if self.valid_ids is None or len(self.valid_ids) <= 1:
            return None
        t = self.cfg.train
        if self.recurrent:  # one stream, each segment once with the memory (one process)
            return stream_loss(model, self.valid_ids, max_segments=t.valid_batches)
        dist = dist or Distributed()
        chunks = window_chunks(len(self.valid_ids), self.context, t.batch_size)
        if t.valid_batches:
            chunks = chunks[: t.valid_batches]
        nll_sum, count = window_sums(
            model, self.valid_ids, dist.shard(chunks), self.context, self.device
        )
        nll_sum, total = dist.all_reduce_sum([nll_sum, count])  # every process's sums
        return metrics(nll_sum, int(total))
