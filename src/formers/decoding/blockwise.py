"""Blockwise parallel decoding (Stern, Shazeer and Uszkoreit 2018, arXiv 1811.03115): the model
proposes several tokens per pass with extra heads of its own, and checks them in the next pass.

A decoder-only model gets ``k - 1`` proposal heads (:class:`BlockwiseHeads`). Head ``i`` reads
the model's last hidden state at a position and guesses the token ``i + 1`` places ahead; the
model's own output projection still predicts the next token (the paper's "frozen" setting: the
model is unchanged, only the heads are trained, :func:`fit_heads`). Each head is the paper's
feed-forward layer with a residual connection, followed by the model's (shared) output
projection.

Decoding (:func:`blockwise_generate`) combines the paper's predict and verify steps in one pass.
The block fed is the model's greedy token followed by the heads' ``k - 1`` guesses. The pass gives
the model's greedy choice after every prefix of the block; the longest run of guesses that match
those choices is accepted, and the hidden state at the last accepted token yields the next block
(the model's next token and new guesses). Every accepted token is the model's greedy choice, so
the output is plain greedy decoding's (tested in float64; in float32 a pass over several
positions may round a near-tie differently from single steps).

Past the context the rest is plain greedy generation, whose window slides (no block fits).
Encoder-decoders (the paper's translation setting) are decoded by
:mod:`formers.decoding.blockwise_seq2seq` with the same heads. Deviations from the paper: greedy
only; one head per offset instead of one wide layer split ``k`` ways (the same function class);
the heads are trained on a frozen model without fine-tuning it (for a language model, on the
text itself: the model's own continuations are what distillation would give, at a far higher
cost).

Shapes: t positions, d model width, V vocabulary, k block size.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from formers.decoding.speculative import SpeculationStats, truncate
from formers.nn.modes import eval_mode


class BlockwiseHeads(nn.Module):
    """``k - 1`` proposal heads on a model's last hidden states, a language model's or an
    encoder-decoder's decoder (the model is not a submodule: the heads are saved and trained
    apart from it).

    Args:
        d_model: the model's width.
        k: the block size (>= 2): the model's next token and ``k - 1`` guesses.
        d_ff: each head's hidden width (default ``d_model``).
    """

    def __init__(self, d_model: int, k: int, d_ff: int | None = None) -> None:
        super().__init__()
        if k < 2:
            raise ValueError(f"k (the block size) must be >= 2, got {k}")
        d_ff = d_model if d_ff is None else d_ff
        self.k, self.d_model, self.d_ff = k, d_model, d_ff
        self.heads = nn.ModuleList(
            nn.Sequential(nn.Linear(d_model, d_ff), nn.ReLU(), nn.Linear(d_ff, d_model))
            for _ in range(k - 1)
        )

    def first(self, k: int) -> BlockwiseHeads:
        """The heads of a block of ``k <= self.k`` (the same modules: each head is trained on
        its own offset, so the first ``k - 1`` serve a smaller block)."""
        if not 2 <= k <= self.k:
            raise ValueError(f"k must be in [2, {self.k}], got {k}")
        smaller = BlockwiseHeads.__new__(BlockwiseHeads)
        nn.Module.__init__(smaller)
        smaller.k, smaller.d_model, smaller.d_ff = k, self.d_model, self.d_ff
        smaller.heads = self.heads[: k - 1]
        return smaller

    def forward(self, hidden: Tensor, generator: nn.Module) -> Tensor:
        """``(..., d)`` hidden states -> ``(..., k - 1, V)`` logits of the tokens 2 .. k ahead
        (one call of the output projection for all heads: its weight is read once)."""
        return generator(self.states(hidden))  # (..., k - 1, d) -> (..., k - 1, V)

    def states(self, hidden: Tensor) -> Tensor:
        """``(..., d)`` -> ``(..., k - 1, d)``: what the output projection reads for each head."""
        return torch.stack([hidden + head(hidden) for head in self.heads], dim=-2)

    def loss(
        self, hidden: Tensor, generator: nn.Module, nexts: Tensor, ignore_index: int = -100
    ) -> Tensor:
        """The heads' cross-entropy (the mean over heads) at ``(b, t, d)`` hidden states, where
        ``(b, t)`` ``nexts`` holds the model's next token at each position: head ``i`` at
        position ``j`` guesses ``nexts[j + 1 + i]``. Positions without one, and those whose
        target is ``ignore_index``, are left out before the output projection (no logits are
        computed for them)."""
        t = nexts.size(1)
        total = hidden.new_zeros(())
        for i, head in enumerate(self.heads[: t - 1]):
            target = nexts[:, 1 + i :]  # (b, t - 1 - i)
            keep = target != ignore_index
            h = hidden[:, : t - 1 - i][keep]  # (n, d): the positions with a target
            total = total + F.cross_entropy(generator(h + head(h)), target[keep])
        return total / len(self.heads)


def propose(heads: BlockwiseHeads, generator: nn.Module, hidden: Tensor) -> Tensor:
    """``(..., d)`` hidden states -> ``(..., k - 1)``: the heads' guesses (their argmax)."""
    return heads(hidden, generator).argmax(dim=-1)


@contextmanager
def frozen(model: nn.Module) -> Iterator[None]:
    """``model`` in eval mode with no gradient for its parameters (the heads' gradient flows
    through its output projection without computing one for its weight), restored afterwards."""
    wanted = [(p, p.requires_grad) for p in model.parameters()]
    with eval_mode(model):
        try:
            for p, _ in wanted:
                p.requires_grad_(False)
            yield
        finally:
            for p, flag in wanted:
                p.requires_grad_(flag)


def require_hidden_states(model: nn.Module, what: str) -> None:
    """Refuse a model whose last hidden states the heads cannot read (``decode_hidden``: the
    GPT family's :class:`~formers.nn.decoder_only.DecoderOnlyLM` and the
    :class:`~formers.nn.encoder_decoder.EncoderDecoder` of the Transformer and T5 offer it)."""
    if not hasattr(model, "decode_hidden"):
        raise ValueError(
            f"{what} needs a GPT-family or encoder-decoder (Transformer, T5) model: the heads "
            f"read its last hidden states, which {type(model).__name__} does not give"
        )


def save_heads(heads: BlockwiseHeads, path: str | os.PathLike, kind: str | None = None) -> Path:
    """Write ``heads`` to a safetensors file (their sizes, and the ``kind`` of model they were
    trained for, ``"decoder-only"`` or ``"encoder-decoder"``, in its metadata), atomically."""
    from safetensors.torch import save_file

    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    sizes = {"k": str(heads.k), "d_model": str(heads.d_model), "d_ff": str(heads.d_ff)}
    if kind is not None:
        sizes["model_kind"] = kind
    save_file({n: t.detach().contiguous() for n, t in heads.state_dict().items()}, tmp,
              metadata={"format": "formers-blockwise-heads", **sizes})  # fmt: skip
    os.replace(tmp, path)
    return path


def load_heads(
    path: str | os.PathLike, d_model: int | None = None, kind: str | None = None
) -> BlockwiseHeads:
    """Heads written by :func:`save_heads`; ``d_model``: the model's width, which they must
    have; ``kind``: the model's kind, which they must have been trained for (when the file says).
    Raises :class:`ValueError` for a file that is not such heads or does not fit."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118
    except (OSError, SafetensorError) as e:  # missing, or not safetensors
        raise ValueError(f"{path}: not a blockwise heads file ({e})") from e
    if meta.get("format") != "formers-blockwise-heads":
        raise ValueError(f"{path}: not a blockwise heads file (written by save_heads)")
    trained_for = meta.get("model_kind")
    if kind is not None and trained_for is not None and trained_for != kind:
        raise ValueError(f"{path}: the heads were trained for a {trained_for} model, not {kind}")
    heads = BlockwiseHeads(int(meta["d_model"]), int(meta["k"]), int(meta["d_ff"]))
    if d_model is not None and heads.d_model != d_model:
        raise ValueError(
            f"{path}: the heads read states {heads.d_model} wide, the model's are {d_model}"
        )
    heads.load_state_dict(tensors)
    return heads.eval()


def fit_heads(
    model: nn.Module,
    heads: BlockwiseHeads,
    tokens: Tensor,
    *,
    steps: int,
    batch_size: int = 16,
    length: int | None = None,
    lr: float = 1e-3,
    seed: int = 0,
    progress: bool = False,
) -> list[float]:
    """Train ``heads`` on windows of the 1-D token stream ``tokens`` with ``model`` frozen: head
    ``i`` learns the token ``i + 1`` places after each position (cross-entropy, AdamW). Returns
    the loss of every step (the mean over heads); ``progress``: a progress bar on stderr."""
    length = model.context_length if length is None else length
    if tokens.numel() <= length + heads.k:
        raise ValueError(f"the token stream ({tokens.numel()}) is shorter than a window")
    generator = torch.Generator().manual_seed(seed)
    return train_heads(
        model, heads, lambda: _window_loss(model, heads, tokens, length, batch_size, generator),
        steps=steps, lr=lr, progress=progress,
    )  # fmt: skip


def train_heads(
    model: nn.Module,
    heads: BlockwiseHeads,
    loss: Callable[[], Tensor],
    *,
    steps: int,
    lr: float,
    progress: bool = False,
) -> list[float]:
    """``steps`` AdamW steps of ``heads`` on ``loss()`` (a fresh batch each call) with ``model``
    frozen; the loss of every step."""
    from tqdm.auto import tqdm

    optimizer = torch.optim.AdamW(heads.parameters(), lr=lr)
    losses: list[float] = []
    with frozen(model), tqdm(total=steps, unit="step", disable=not progress, desc="heads") as bar:
        for _ in range(steps):
            value = loss()
            if value.requires_grad:  # else no position had a token to guess
                heads.train()
                optimizer.zero_grad(set_to_none=True)
                value.backward()
                optimizer.step()
                heads.eval()
            losses.append(float(value.detach()))
            bar.update()
            bar.set_postfix(loss=f"{losses[-1]:.3f}", refresh=False)
    return losses


def _window_loss(model, heads, tokens, length, batch_size, generator) -> Tensor:
    """The heads' loss on ``batch_size`` random windows of ``tokens``."""
    starts = torch.randint(0, tokens.numel() - length, (batch_size,), generator=generator)
    window = torch.stack([tokens[s : s + length] for s in starts.tolist()])  # (b, t)
    with torch.no_grad():
        hidden = model.decode_hidden(window[:, :-1], model.new_cache())  # (b, t - 1, d)
    return heads.loss(hidden, model.generator, window[:, 1:])


def _block(model: nn.Module, heads: BlockwiseHeads, hidden: Tensor) -> Tensor:
    """``(d,)`` hidden state -> ``(k,)``: the model's greedy token, then the heads' guesses."""
    first = model.generator(hidden).argmax(dim=-1, keepdim=True)
    return torch.cat([first, propose(heads, model.generator, hidden)])


@torch.no_grad()
def blockwise_generate(
    model: nn.Module, heads: BlockwiseHeads, prompt: list[int], *, max_new_tokens: int
) -> tuple[list[int], SpeculationStats]:
    """``max_new_tokens`` greedy tokens of the decoder-only ``model`` after ``prompt`` (fewer
    when it emits its EOS), a block of up to ``heads.k`` per pass: the tokens of
    ``generate(model, prompt, temperature=0)``. Once the context has no room for a block of two,
    the rest is plain :func:`~formers.inference.generate.generate` (whose window then slides).
    The stats count the passes after the prompt's."""
    from formers.inference.generate import generate

    if not prompt:
        raise ValueError("blockwise decoding needs a non-empty prompt")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    device = next(model.parameters()).device
    stats = SpeculationStats()
    out: list[int] = []
    with eval_mode(model, heads):
        cache = model.new_cache()
        ids = torch.tensor([prompt], device=device)
        block = _block(model, heads, model.decode_hidden(ids, cache)[0, -1])  # (k,)
        while True:
            left = max_new_tokens - len(out)
            if left == 1:  # the model's own greedy token: nothing left to check
                out.append(int(block[0]))
                stats.tokens += 1
                return out, stats
            block = block[: min(left, model.context_length - len(prompt) - len(out))]
            if block.numel() < 2:  # no room in the context to check a guess
                rest = generate(model, prompt + out, max_new_tokens=left, temperature=0.0)
                stats.target_passes += len(rest)
                stats.tokens += len(rest)
                return out + rest, stats
            hidden = model.decode_hidden(block[None, :], cache)[0]  # (len(block), d)
            choice = model.generator(hidden).argmax(dim=-1)  # the greedy token after each prefix
            agree = (choice[:-1] == block[1:]).long().cumprod(dim=0)
            accepted = 1 + int(agree.sum())  # the first is the model's own greedy token
            new = block[:accepted].tolist()
            stats.target_passes += 1
            stats.drafted += block.numel() - 1
            if model.eos_id is not None and model.eos_id in new:
                new = new[: new.index(model.eos_id) + 1]
            out += new
            stats.tokens += len(new)
            if len(out) >= max_new_tokens or (model.eos_id is not None and out[-1] == model.eos_id):
                return out, stats
            truncate(cache, len(prompt) + len(out))
            block = _block(model, heads, hidden[accepted - 1])
