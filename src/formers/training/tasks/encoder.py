"""Encoder-only tasks (BERT, Devlin et al. 2018, arXiv 1810.04805): sequence classification on
``label<TAB>text`` files, and masked language modelling with RoBERTa's dynamic masking (Liu et
al. 2019, arXiv 1907.11692): each batch is masked anew (15% of tokens; 80% [MASK], 10% random,
10% unchanged), from the seed, the epoch and the batch, so that a resumed run masks alike.

Both use a WordPiece tokenizer (Hugging Face ``tokenizers``): trained on the training texts, or
the one of a Hugging Face model whose weights start the run (``[model] init``). Texts longer than
``[data] max_len`` tokens are truncated; batches hold ``batch_size`` texts, shuffled per epoch.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from formers.nn.modes import evaluating
from formers.training.distributed import Distributed
from formers.training.losses import summed_cross_entropy
from formers.training.tasks.base import Batch, Task, resolve_init


class EncoderTask(Task):
    """Shared by :class:`ClassificationTask` and :class:`MaskedLMTask`."""

    def _tokenizer(self, texts: list[str]):
        from formers.data.hf_tokenizer import HFTokenizer
        from formers.data.tokenizers import load_tokenizer

        saved = load_tokenizer(self.run_dir) if self.run_dir.is_dir() else None
        if saved is None:
            tc, init = self.cfg.tokenizer, self.cfg.model.get("init", "")
            if tc.kind != "wordpiece":
                raise ValueError(f"[tokenizer] kind={tc.kind!r}: encoder tasks use 'wordpiece'")
            if tc.path or init:
                saved = HFTokenizer.load(tc.path or resolve_init(init))
            else:
                saved = HFTokenizer.train_wordpiece(texts, tc.vocab_size)
            saved.save(self.run_dir)
        return saved

    def _special_ids(self) -> dict[str, int]:
        tok = self.tokenizer
        return dict(
            vocab_size=tok.vocab_size, pad_id=tok.pad_id, cls_id=tok.cls_id, sep_id=tok.sep_id,
            mask_id=tok.mask_id, unk_id=tok.unk_id,
        )  # fmt: skip

    def _encode(self, texts: list[str]) -> list[list[int]]:
        return [self.tokenizer.encode(t, max_length=self.cfg.data.max_len) for t in texts]

    def _batch_size(self) -> int:
        if self.cfg.train.batch_size < 1:
            raise ValueError(f"[train] batch_size must be set (>= 1) for task = {self.cfg.task!r}")
        return self.cfg.train.batch_size

    def _shuffled(self, n: int, epoch: int) -> list[list[int]]:
        order = np.random.default_rng([self.cfg.train.seed, epoch]).permutation(n)
        b = self._batch_size()
        return [order[i : i + b].tolist() for i in range(0, n, b)]

    def _pad(self, sequences: list[list[int]]) -> Tensor:
        width = max(len(s) for s in sequences)
        out = torch.full((len(sequences), width), self.tokenizer.pad_id, dtype=torch.long)
        for row, ids in enumerate(sequences):
            out[row, : len(ids)] = torch.tensor(ids)
        return out


class ClassificationTask(EncoderTask):
    """Sequence classification: the pooled first token through a linear head."""

    default_metric = "accuracy"

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        from formers.data.text import read_labeled

        d = self.cfg.data
        labels, texts = read_labeled(d.train)
        self.tokenizer = self._tokenizer(texts)
        self.num_labels = max(labels) + 1
        self.train_ids, self.train_labels = self._encode(texts), labels
        self.valid_ids: list[list[int]] | None = None
        if d.valid:
            valid_labels, valid_texts = read_labeled(d.valid)
            if max(valid_labels) >= self.num_labels:
                raise ValueError(
                    f"{d.valid} has label {max(valid_labels)}, but the training labels are "
                    f"0..{self.num_labels - 1}"
                )
            self.valid_ids, self.valid_labels = self._encode(valid_texts), valid_labels
        self.log({"type": "data", "split": "train", "examples": len(labels),
                  "labels": self.num_labels})  # fmt: skip
        self.model = self.build_model(
            **self._special_ids(), num_labels=self.num_labels, mlm_head=False
        )

    def init_options(self, derived: dict[str, Any]) -> dict[str, Any]:
        return {"num_labels": derived["num_labels"]}

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        return self._shuffled(len(self.train_ids), epoch)

    def collate(self, item: list[int]) -> Batch:
        ids = self._pad([self.train_ids[i] for i in item])
        labels = torch.tensor([self.train_labels[i] for i in item])
        tokens = int((ids != self.tokenizer.pad_id).sum())
        return Batch({"ids": ids.to(self.device), "labels": labels.to(self.device)}, len(item),
                     tokens)  # fmt: skip

    def loss(self, model: nn.Module, batch: Batch) -> tuple[Tensor, Tensor]:
        logits = model(batch.tensors["ids"]).float()  # (b, num_labels)
        labels = batch.tensors["labels"]
        return summed_cross_entropy(logits, labels, self.cfg.train.label_smoothing)

    def validate(self, model: nn.Module, dist: Distributed | None = None) -> dict[str, Any] | None:
        if self.valid_ids is None:
            return None
        dist = dist or Distributed()
        correct, nll = 0, 0.0
        b = self._batch_size()
        with evaluating(model):
            for i in dist.shard(range(0, len(self.valid_ids), b)):
                ids = self._pad(self.valid_ids[i : i + b]).to(self.device)
                labels = torch.tensor(self.valid_labels[i : i + b], device=self.device)
                logits = model(ids).float()
                nll += float(F.cross_entropy(logits, labels, reduction="sum"))
                correct += int((logits.argmax(-1) == labels).sum())
        nll, total = dist.all_reduce_sum([nll, correct])  # every process's sums
        correct = int(total)
        n = len(self.valid_ids)
        return {"accuracy": correct / n, "loss": nll / n}


class MaskedLMTask(EncoderTask):
    """Masked language modelling: predict the chosen tokens from both sides."""

    default_metric = "loss"

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        from formers.data.text import read_texts

        d = self.cfg.data
        texts = read_texts(d.train)
        self.tokenizer = self._tokenizer(texts)
        self.train_ids = self._encode(texts)
        self.valid_ids = self._encode(read_texts(d.valid)) if d.valid else None
        self.log({"type": "data", "split": "train", "examples": len(self.train_ids)})
        self.model = self.build_model(**self._special_ids(), num_labels=0, mlm_head=True)

    def init_options(self, derived: dict[str, Any]) -> dict[str, Any]:
        return {"mlm_head": True}

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        batches = self._shuffled(len(self.train_ids), epoch)
        return [[epoch, i, *batch] for i, batch in enumerate(batches)]  # the mask's seed keys

    def _masked(self, sequences: list[list[int]], generator: torch.Generator) -> Batch:
        from formers.data.masking import mask_tokens

        tok = self.tokenizer
        ids = self._pad(sequences)
        inputs, labels = mask_tokens(
            ids, mask_id=tok.mask_id, vocab_size=tok.vocab_size,
            special_ids={tok.pad_id, tok.cls_id, tok.sep_id},
            probability=self.cfg.train.mask_probability, generator=generator,
        )  # fmt: skip
        tensors = {"ids": inputs.to(self.device), "labels": labels.to(self.device)}
        return Batch(tensors, int((labels != -100).sum()), int((ids != tok.pad_id).sum()))

    def collate(self, item: list[int]) -> Batch:
        epoch, index, *rows = item
        return self._masked([self.train_ids[i] for i in rows],
                            self.seeded_generator(epoch, index))  # fmt: skip

    def loss(self, model: nn.Module, batch: Batch) -> tuple[Tensor, Tensor]:
        logits = model(batch.tensors["ids"]).flatten(0, 1).float()  # (b*s, V)
        labels = batch.tensors["labels"].flatten()
        return summed_cross_entropy(logits, labels, self.cfg.train.label_smoothing)

    def validate(self, model: nn.Module, dist: Distributed | None = None) -> dict[str, Any] | None:
        if not self.valid_ids:
            return None
        dist = dist or Distributed()
        loss_sum, nll_sum, count = 0.0, 0.0, 0
        b = self._batch_size()
        with evaluating(model):
            # the same masks at every validation, whichever process draws them
            for i in dist.shard(range(0, len(self.valid_ids), b)):
                batch = self._masked(self.valid_ids[i : i + b], self.seeded_generator(-1, i))
                if batch.count:
                    loss, nll = self.loss(model, batch)
                    loss_sum, nll_sum = loss_sum + float(loss), nll_sum + float(nll)
                count += batch.count
        loss_sum, nll_sum, total = dist.all_reduce_sum([loss_sum, nll_sum, count])  # all ranks'
        count = max(int(total), 1)
        # as translation reports it: the training objective (label-smoothed) as "loss", the
        # plain cross-entropy as "nll", and the perplexity from the latter
        nll = nll_sum / count
        ppl = float(np.exp(min(nll, 100.0)))
        return {"loss": loss_sum / count, "nll": nll, "ppl": ppl, "masked": int(total)}
