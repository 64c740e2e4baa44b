"""Experiment configuration: a TOML file with ``[data]``, ``[tokenizer]``, ``[model]``, ``[train]``
and ``[decode]`` tables, plus ``--set section.key=value`` overrides from the command line.

Every table is a frozen dataclass; an unknown table or key raises a
:class:`~formers.models.ConfigError` that lists the valid ones. ``[model]`` names a preset
(``preset = "transformer_tiny"``) and overrides any :class:`~formers.models.TransformerConfig`
field; ``vocab_size`` and the special ids come from the tokenizer.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from formers.models.config_base import (
    ConfigError,
    check_types,
    config_from_dict,
    require,
    require_choice,
)
from formers.models.transformer import PRESETS, TransformerConfig

SCHEDULES = ("inverse_sqrt", "noam", "constant")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
METRICS = ("bleu", "loss")


@dataclass(frozen=True)
class DataConfig:
    """Parallel corpora: line-aligned source/target files (plain or .gz) or one TSV file."""

    train_src: str = ""
    train_tgt: str = ""
    valid_src: str = ""
    valid_tgt: str = ""
    max_len: int = 256  # pairs with more tokens on either side are dropped (and counted)
    cache_dir: str = ""  # encoded-data cache; default RUN_DIR/cache

    def __post_init__(self) -> None:
        check_types(self)
        require(bool(self.train_src and self.train_tgt), "[data] needs train_src and train_tgt")
        require(
            bool(self.valid_src) == bool(self.valid_tgt),
            "[data] valid_src and valid_tgt must be given together",
        )
        require(self.max_len >= 1, f"[data] max_len must be >= 1, got {self.max_len}")


@dataclass(frozen=True)
class TokenizerConfig:
    """A joint source/target subword model (SentencePiece), trained unless ``path`` is given."""

    vocab_size: int = 10000
    model_type: str = "bpe"
    character_coverage: float = 1.0
    path: str = ""  # an existing tokenizer.model (or a directory holding one)

    def __post_init__(self) -> None:
        check_types(self)
        require(self.vocab_size >= 8, f"[tokenizer] vocab_size must be >= 8, got {self.vocab_size}")
        require_choice("[tokenizer] model_type", self.model_type, ("bpe", "unigram"))
        require(
            0.0 < self.character_coverage <= 1.0,
            f"[tokenizer] character_coverage must be in (0, 1], got {self.character_coverage}",
        )


@dataclass(frozen=True)
class TrainConfig:
    """The optimization recipe (the paper's: Adam 0.9/0.98/1e-9, warmup + inverse sqrt, LS 0.1).

    ``lr`` is the peak learning rate for ``inverse_sqrt`` and ``constant``; for ``noam`` the rate
    is ``noam_scale * d_model^-0.5 * min(step^-0.5, step * warmup^-1.5)`` and ``lr`` is unused.
    """

    max_tokens: int = 4096
    update_freq: int = 1  # gradient accumulation: batches per optimizer step
    lr: float = 5e-4
    schedule: str = "inverse_sqrt"
    warmup: int = 4000
    noam_scale: float = 1.0
    beta1: float = 0.9
    beta2: float = 0.98
    eps: float = 1e-9
    weight_decay: float = 0.0
    label_smoothing: float = 0.1
    clip_norm: float = 0.0  # 0: no clipping
    max_epochs: int = 0  # 0: no limit (then max_steps must be set)
    max_steps: int = 0  # 0: no limit
    seed: int = 1
    device: str = "auto"
    precision: str = "auto"  # auto: bf16 autocast on CUDA when supported, fp32 on CPU
    threads: int = 0  # CPU threads (0: PyTorch's default)
    log_every: int = 100
    validate_every: int = 0  # steps; 0: at the end of every epoch
    valid_bleu: bool = True
    valid_beam: int = 1
    bleu_tokenized: bool = False  # score tokenized lowercased text (tokenize="none")
    best_metric: str = "bleu"
    patience: int = 0  # validations without improvement before stopping; 0: never
    keep_last: int = 5

    def __post_init__(self) -> None:
        check_types(self)
        for name in ("max_tokens", "update_freq", "warmup", "log_every", "valid_beam", "keep_last"):
            value = getattr(self, name)
            require(value >= 1, f"[train] {name} must be >= 1, got {value}")
        for name in ("max_epochs", "max_steps", "validate_every", "patience", "threads"):
            value = getattr(self, name)
            require(value >= 0, f"[train] {name} must be >= 0, got {value}")
        require(
            self.max_epochs or self.max_steps,
            "[train] set max_epochs or max_steps (0 means no limit; one of them must be set)",
        )
        require(self.lr > 0, f"[train] lr must be > 0, got {self.lr}")
        require(0 <= self.label_smoothing < 1, "[train] label_smoothing must be in [0, 1)")
        require(0 <= self.beta1 < 1 and 0 <= self.beta2 < 1, "[train] betas must be in [0, 1)")
        require(self.clip_norm >= 0, f"[train] clip_norm must be >= 0, got {self.clip_norm}")
        require_choice("[train] schedule", self.schedule, SCHEDULES)
        require_choice("[train] precision", self.precision, PRECISIONS)
        require_choice("[train] best_metric", self.best_metric, METRICS)
        require_choice("[train] device", self.device.split(":")[0], ("auto", "cpu", "cuda", "mps"))


@dataclass(frozen=True)
class DecodeConfig:
    """Decoding for the final translations (the paper: beam 4, alpha 0.6, length src+50)."""

    beam: int = 4
    lenpen: float = 0.6
    max_len_a: float = 1.0
    max_len_b: int = 50
    max_tokens: int = 4096

    def __post_init__(self) -> None:
        check_types(self)
        require(self.beam >= 1, f"[decode] beam must be >= 1, got {self.beam}")
        require(self.max_tokens >= 1, f"[decode] max_tokens must be >= 1, got {self.max_tokens}")


@dataclass(frozen=True)
class ExperimentConfig:
    data: DataConfig
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    model: dict[str, Any] = field(default_factory=lambda: {"preset": "transformer_tiny"})
    train: TrainConfig = field(default_factory=lambda: TrainConfig(max_epochs=10))
    decode: DecodeConfig = field(default_factory=DecodeConfig)

    def model_config(
        self, vocab_size: int, pad_id: int, bos_id: int, eos_id: int
    ) -> TransformerConfig:
        """The model's config: the preset, the overrides, and the tokenizer's vocabulary."""
        values = dict(self.model)
        preset = values.pop("preset", None)
        base = dict(PRESETS[preset]) if preset else {}
        ids = dict(vocab_size=vocab_size, pad_id=pad_id, bos_id=bos_id, eos_id=eos_id)
        return TransformerConfig.from_dict({**base, **values, **ids})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


SECTIONS = {
    "data": DataConfig,
    "tokenizer": TokenizerConfig,
    "train": TrainConfig,
    "decode": DecodeConfig,
}


def _check_model_table(model: dict[str, Any]) -> None:
    valid = {f.name for f in dataclasses.fields(TransformerConfig)} | {"preset"}
    fixed = {"vocab_size", "tgt_vocab_size", "pad_id", "bos_id", "eos_id"}
    unknown = sorted(set(model) - valid)
    if unknown:
        raise ConfigError(
            f"unknown [model] key(s) {unknown}; valid keys are: {', '.join(sorted(valid - fixed))}"
        )
    given = sorted(set(model) & fixed)
    require(not given, f"[model] {given} come from the tokenizer; remove them from the config")
    if "preset" in model:
        require_choice("[model] preset", model["preset"], PRESETS)


def parse_override(assignment: str) -> tuple[list[str], Any]:
    """``"train.lr=1e-3"`` -> ``(["train", "lr"], 0.001)``.

    Values are read as TOML literals (numbers, booleans, quoted strings); anything else is a string.
    """
    key, sep, raw = assignment.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set expects SECTION.KEY=VALUE, got {assignment!r}")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return key.strip().split("."), value


def experiment_from_dict(values: dict[str, Any]) -> ExperimentConfig:
    """Validate nested tables into an :class:`ExperimentConfig`."""
    valid = ["data", "tokenizer", "model", "train", "decode"]
    unknown = sorted(set(values) - set(valid))
    if unknown:
        raise ConfigError(
            f"unknown config table(s) {unknown}; valid tables are: {', '.join(valid)}"
        )
    if "data" not in values:
        raise ConfigError("the config needs a [data] table with train_src and train_tgt")
    model = dict(values.get("model", {"preset": "transformer_tiny"}))
    _check_model_table(model)
    tables = {
        name: config_from_dict(cls, dict(values.get(name, {}))) for name, cls in SECTIONS.items()
    }
    return ExperimentConfig(model=model, **tables)


def load_experiment(path: str | Path, overrides: list[str] = ()) -> ExperimentConfig:
    """Read a TOML config and apply ``--set`` overrides; relative data paths are kept as given."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    try:
        values = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path} is not valid TOML: {error}") from None
    for assignment in overrides:
        keys, value = parse_override(assignment)
        if len(keys) != 2:
            raise ConfigError(
                f"--set keys look like train.lr or model.d_model, got {'.'.join(keys)!r}"
            )
        values.setdefault(keys[0], {})[keys[1]] = value
    return experiment_from_dict(values)
