"""Translation: an encoder-decoder on a parallel corpus (Vaswani et al. 2017, arXiv 1706.03762).

A joint SentencePiece model trained on both sides, an encoded-data cache, token-count batches
with length bucketing reshuffled every epoch, label-smoothed cross-entropy over target tokens,
and validation by loss, perplexity and BLEU.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from formers.training.distributed import Distributed
from formers.training.losses import smoothed_nll
from formers.training.tasks.base import Batch, Task
from formers.training.validation import ValidationSet, validation_bleu, validation_loss


class TranslationTask(Task):
    """See the module docstring."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.tokenizer = self._tokenizer()
        self._load_data()
        tok = self.tokenizer
        ids = dict(vocab_size=tok.vocab_size, pad_id=tok.pad_id, bos_id=tok.bos_id)
        self.model = self.build_model(**ids, eos_id=tok.eos_id)

    @property
    def default_metric(self) -> str:  # type: ignore[override]
        return "bleu" if self.cfg.train.valid_bleu else "loss"

    def checkpoint_sections(self) -> dict[str, Any]:
        """The recipe's ``[decode]`` table: ``formers translate`` decodes with it by default."""
        return {"decode": dataclasses.asdict(self.cfg.decode)}

    def _tokenizer(self):
        from formers.data.corpus import read_parallel
        from formers.data.tokenizer import Tokenizer

        saved = self.run_dir / "tokenizer.model"
        if saved.exists():
            return Tokenizer.load(saved)
        tc = self.cfg.tokenizer
        if tc.kind != "sentencepiece":
            raise ValueError(f"[tokenizer] kind={tc.kind!r}: translation uses sentencepiece")
        if tc.path:
            tokenizer = Tokenizer.load(tc.path)
        else:
            pairs = read_parallel(self.cfg.data.train_src, self.cfg.data.train_tgt)
            texts = [text for pair in pairs for text in pair]
            tokenizer = Tokenizer.train(
                texts, tc.vocab_size, model_type=tc.model_type,
                character_coverage=tc.character_coverage, seed=self.cfg.train.seed,
            )  # fmt: skip
        tokenizer.save(self.run_dir)
        return tokenizer

    def _load_data(self) -> None:
        from formers.data.corpus import read_parallel
        from formers.data.parallel import TokenBatchSampler, load_or_build

        d, t = self.cfg.data, self.cfg.train
        cache = Path(d.cache_dir) if d.cache_dir else self.run_dir / "cache"
        self.train_data, stats = load_or_build(
            d.train_src, d.train_tgt, self.tokenizer, cache, d.max_len
        )
        self.log({"type": "data", "split": "train", **stats.to_dict()})
        self.sampler = TokenBatchSampler(
            self.train_data.src_lengths, self.train_data.tgt_lengths, t.max_tokens,
            shuffle=True, seed=t.seed,
        )  # fmt: skip
        self.valid: ValidationSet | None = None
        if d.valid_src:
            data, stats = load_or_build(d.valid_src, d.valid_tgt, self.tokenizer, cache, d.max_len)
            self.log({"type": "data", "split": "valid", **stats.to_dict()})
            batches = list(
                TokenBatchSampler(data.src_lengths, data.tgt_lengths, t.max_tokens, shuffle=False)
            )
            pairs = read_parallel(d.valid_src, d.valid_tgt)
            self.valid = ValidationSet(data, batches, [s for s, _ in pairs], [r for _, r in pairs])

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        self.sampler.set_epoch(epoch)
        return list(self.sampler)

    def collate(self, item: list[int]) -> Batch:
        from formers.data.parallel import collate

        b = collate(self.train_data, item)
        tensors = {"src": b.src, "tgt_in": b.tgt_in, "tgt_out": b.tgt_out}
        tensors = {k: v.to(self.device) for k, v in tensors.items()}
        count = int((b.tgt_out != self.tokenizer.pad_id).sum())
        return Batch(tensors, count, count)

    def loss(self, model: nn.Module, batch: Batch) -> tuple[Tensor, Tensor]:
        x = batch.tensors
        logits = model(x["src"], x["tgt_in"])
        loss, nll, _ = smoothed_nll(
            logits, x["tgt_out"], self.tokenizer.pad_id, self.cfg.train.label_smoothing
        )
        return loss, nll

    def validate(self, model: nn.Module, dist: Distributed | None = None) -> dict[str, Any] | None:
        if self.valid is None:
            return None
        t = self.cfg.train
        metrics: dict[str, Any] = validation_loss(
            model, self.valid, self.device, t.label_smoothing, dist
        )
        if t.valid_bleu:
            metrics.update(
                validation_bleu(
                    model, self.tokenizer, self.valid, self.device, beam=t.valid_beam,
                    tokenized=t.bleu_tokenized, max_tokens=t.max_tokens, dist=dist,
                )
            )  # fmt: skip
        return metrics
