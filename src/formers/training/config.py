"""Experiment configuration: a TOML file with a ``task`` and ``[data]``, ``[tokenizer]``,
``[model]``, ``[train]`` and ``[decode]`` tables, plus ``--set section.key=value`` overrides.

``task`` is ``"translate"`` (the default: an encoder-decoder on a parallel corpus), ``"lm"`` (a
decoder-only language model on a text file), ``"mlm"`` (masked language modelling with an
encoder) or ``"classify"`` (an encoder with a classification head on ``label<TAB>text`` files).
A task trains a *kind* of model (:data:`TASKS`); ``[model] family`` picks a family of that kind
(:mod:`formers.models.registry`; default: the kind's first, e.g. ``gpt`` for ``lm``).
Every table is a frozen dataclass; an unknown table or key raises a
:class:`~formers.models.ConfigError` that lists the valid ones. ``[model]`` names a preset of the
family and overrides any field of its config; ``init`` starts from Hugging Face weights.
``vocab_size`` and the special ids come from the tokenizer.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from formers.decoding import LENGTH_PENALTIES
from formers.models.config_base import (
    ConfigError,
    check_types,
    config_from_dict,
    require,
    require_choice,
)
from formers.models.registry import Family, families_of_kind, get_family
from formers.models.transformer import TransformerConfig


@dataclass(frozen=True)
class TaskSpec:
    """A training task: the kind of model it trains and its class (``module:Class``)."""

    kind: str
    cls: str


TASKS = {
    "translate": TaskSpec("encoder-decoder", "formers.training.tasks.translation:TranslationTask"),
    "lm": TaskSpec("decoder-only", "formers.training.tasks.language_model:LanguageModelTask"),
    "mlm": TaskSpec("encoder-only", "formers.training.tasks.encoder:MaskedLMTask"),
    "classify": TaskSpec("encoder-only", "formers.training.tasks.encoder:ClassificationTask"),
}
MODEL_KEYS = ("preset", "init", "family")  # [model] keys that are not fields of the config
SCHEDULES = ("inverse_sqrt", "noam", "constant", "cosine")
OPTIMIZERS = ("adam", "adamw")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
METRICS = ("", "bleu", "loss", "accuracy")
TOKENIZERS = ("sentencepiece", "char", "wordpiece")


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
class TextDataConfig:
    """Monolingual data for the ``lm``, ``mlm`` and ``classify`` tasks.

    ``lm`` reads ``train`` as one text (and ``valid``, or else the last ``valid_fraction`` of
    ``train``, as nanoGPT); ``classify`` reads ``label<TAB>text`` files; ``mlm`` reads one text
    a line (the text column of a ``.tsv``).
    """

    train: str = ""
    valid: str = ""
    valid_fraction: float = 0.1  # lm without a valid file: the last part of train
    max_len: int = 128  # mlm/classify: longer texts are truncated (tokens, specials included)

    def __post_init__(self) -> None:
        check_types(self)
        require(bool(self.train), "[data] needs train (a text file, or a label<TAB>text file)")
        require(
            0.0 <= self.valid_fraction < 1.0,
            f"[data] valid_fraction must be in [0, 1), got {self.valid_fraction}",
        )
        require(self.max_len >= 3, f"[data] max_len must be >= 3, got {self.max_len}")


@dataclass(frozen=True)
class TokenizerConfig:
    """The tokenizer, trained on the training data unless ``path`` is given.

    ``kind``: ``sentencepiece`` (BPE or unigram; joint source/target for translation),
    ``char`` (one id per character, as nanoGPT's shakespeare_char) or ``wordpiece`` (BERT's, with
    Hugging Face ``tokenizers``). ``path``: an existing ``tokenizer.model``, ``chars.json`` or
    ``tokenizer.json`` (or a directory holding one).
    """

    kind: str = "sentencepiece"
    vocab_size: int = 10000
    model_type: str = "bpe"
    character_coverage: float = 1.0
    path: str = ""

    def __post_init__(self) -> None:
        check_types(self)
        require_choice("[tokenizer] kind", self.kind, TOKENIZERS)
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

    max_tokens: int = 4096  # translate: target tokens per batch
    batch_size: int = 0  # lm/mlm/classify: sequences per batch
    update_freq: int = 1  # gradient accumulation: batches per optimizer step
    optimizer: str = "adam"  # adamw: decoupled weight decay on matrices only (nanoGPT)
    lr: float = 5e-4
    schedule: str = "inverse_sqrt"
    warmup: int = 4000
    noam_scale: float = 1.0
    min_lr: float = 0.0  # cosine: the floor
    decay_steps: int = 0  # cosine: steps to reach min_lr (0: max_steps)
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
    validate_every: int = 0  # steps; 0: at the end of every epoch (and always at the end)
    valid_bleu: bool = True
    valid_beam: int = 1
    bleu_tokenized: bool = False  # score tokenized lowercased text (tokenize="none")
    best_metric: str = ""  # "": the task's (bleu, loss or accuracy)
    mask_probability: float = 0.15  # mlm: the share of tokens to predict
    valid_batches: int = 0  # lm: validate on this many batches (0: the whole validation text)
    patience: int = 0  # validations without improvement before stopping; 0: never
    keep_last: int = 5
    tensorboard: bool = False  # also write TensorBoard event files to RUN_DIR/tensorboard

    def __post_init__(self) -> None:
        check_types(self)
        for name in ("max_tokens", "update_freq", "warmup", "log_every", "valid_beam", "keep_last"):
            value = getattr(self, name)
            require(value >= 1, f"[train] {name} must be >= 1, got {value}")
        for name in (
            "max_epochs", "max_steps", "validate_every", "patience", "threads", "batch_size",
            "decay_steps", "valid_batches",
        ):  # fmt: skip
            value = getattr(self, name)
            require(value >= 0, f"[train] {name} must be >= 0, got {value}")
        require(
            self.max_epochs or self.max_steps,
            "[train] set max_epochs or max_steps (0 means no limit; one of them must be set)",
        )
        # beyond these, Adam diverges at the first steps (the run would stop on a NaN loss)
        require(0 < self.lr <= 1, f"[train] lr must be in (0, 1], got {self.lr}")
        scale, decay = self.noam_scale, self.weight_decay
        require(0 < scale <= 100, f"[train] noam_scale must be in (0, 100], got {scale}")
        require(0 < self.eps < 1, f"[train] eps must be in (0, 1), got {self.eps}")
        require(0 <= decay <= 1, f"[train] weight_decay must be in [0, 1], got {decay}")
        require(0 <= self.label_smoothing < 1, "[train] label_smoothing must be in [0, 1)")
        require(0 <= self.beta1 < 1 and 0 <= self.beta2 < 1, "[train] betas must be in [0, 1)")
        require(self.clip_norm >= 0, f"[train] clip_norm must be >= 0, got {self.clip_norm}")
        require_choice("[train] schedule", self.schedule, SCHEDULES)
        require_choice("[train] optimizer", self.optimizer, OPTIMIZERS)
        require(0 <= self.min_lr <= self.lr, "[train] min_lr must be in [0, lr]")
        require(0.0 < self.mask_probability < 1.0, "[train] mask_probability must be in (0, 1)")
        require(
            self.schedule != "cosine" or bool(self.decay_steps or self.max_steps),
            "[train] the cosine schedule needs decay_steps or max_steps",
        )
        require_choice("[train] precision", self.precision, PRECISIONS)
        require_choice("[train] best_metric", self.best_metric, METRICS)
        require_choice("[train] device", self.device.split(":")[0], ("auto", "cpu", "cuda", "mps"))


@dataclass(frozen=True)
class DecodeConfig:
    """Decoding for the final translations (the paper: beam 4, alpha 0.6, length src+50)."""

    beam: int = 4
    lenpen: float = 0.6
    lenpen_form: str = "gnmt"  # or "power": fairseq's --lenpen (n ** lenpen)
    max_len_a: float = 1.0
    max_len_b: int = 50
    max_tokens: int = 4096

    def __post_init__(self) -> None:
        from formers.inference.translate import check_translate_options

        check_types(self)
        require_choice("[decode] lenpen_form", self.lenpen_form, tuple(LENGTH_PENALTIES))
        try:  # the ranges formers translate and formers serve check too
            check_translate_options(nbest=1, **dataclasses.asdict(self))
        except ValueError as error:
            raise ConfigError(f"[decode] {error}") from None


def recipe_decode(checkpoint_config: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint's decoding options: the ``[decode]`` table its run saved in ``config.json``
    (translation runs do) over :class:`DecodeConfig`'s defaults."""
    defaults = dataclasses.asdict(DecodeConfig())
    recipe = checkpoint_config.get("decode") or {}
    return {**defaults, **{k: v for k, v in recipe.items() if k in defaults}}


@dataclass(frozen=True)
class ExperimentConfig:
    data: DataConfig | TextDataConfig
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    model: dict[str, Any] = field(default_factory=lambda: {"preset": "transformer_tiny"})
    train: TrainConfig = field(default_factory=lambda: TrainConfig(max_epochs=10))
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    task: str = "translate"

    @property
    def family(self) -> Family:
        """The model family the task trains: ``[model] family``, else its kind's first."""
        return model_family(self.task, self.model)

    def model_values(self, **derived: Any) -> dict[str, Any]:
        """The [model] table resolved: the preset's values, the overrides, then ``derived``
        (vocabulary size, special ids, labels). ``init`` and ``family`` are not model fields."""
        values = {k: v for k, v in self.model.items() if k not in ("init", "family")}
        preset = values.pop("preset", None)
        base = dict(self.family.presets[preset]) if preset else {}
        return {**base, **values, **derived}

    def model_config(self, vocab_size: int, pad_id: int, bos_id: int, eos_id: int) -> Any:
        """The translation model's config: the preset, the overrides, the tokenizer's ids."""
        ids = dict(vocab_size=vocab_size, pad_id=pad_id, bos_id=bos_id, eos_id=eos_id)
        return TransformerConfig.from_dict(self.model_values(**ids))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


SECTIONS = {
    "tokenizer": TokenizerConfig,
    "train": TrainConfig,
    "decode": DecodeConfig,
}


def model_family(task: str, model: dict[str, Any]) -> Family:
    """The family a task trains: the [model] table's ``family`` (of the task's kind), else the
    first family of that kind."""
    kind = TASKS[task].kind
    choices = families_of_kind(kind)
    name = model.get("family", choices[0].name)
    require(isinstance(name, str), f"[model] family must be a string, got {name!r}")
    require_choice(f"[model] family (task {task!r} trains {kind} models)", name,
                   [f.name for f in choices])  # fmt: skip
    return get_family(name)


def _check_model_table(model: dict[str, Any], family: Family) -> None:
    valid = {f.name for f in dataclasses.fields(family.config_cls)} | set(MODEL_KEYS)
    fixed = set(family.derived)
    unknown = sorted(set(model) - valid)
    if unknown:
        raise ConfigError(
            f"unknown [model] key(s) {unknown}; valid keys are: {', '.join(sorted(valid - fixed))}"
        )
    given = sorted(set(model) & fixed)
    require(
        not given, f"[model] {given} come from the tokenizer or data; remove them from the config"
    )
    if "preset" in model:
        require_choice("[model] preset", model["preset"], family.presets)
    require(isinstance(model.get("init", ""), str), "[model] init must be a path (a string)")


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
    valid = ["task", "data", "tokenizer", "model", "train", "decode"]
    unknown = sorted(set(values) - set(valid))
    if unknown:
        raise ConfigError(
            f"unknown config table(s) {unknown}; valid tables are: {', '.join(valid)}"
        )
    task = values.get("task", "translate")
    require(isinstance(task, str), f"task must be a string, got {task!r}")
    require_choice("task", task, TASKS)
    if "data" not in values:
        needs = "train_src and train_tgt" if task == "translate" else "train"
        raise ConfigError(f"the config needs a [data] table with {needs}")
    data_cls = DataConfig if task == "translate" else TextDataConfig
    family = model_family(task, dict(values.get("model", {})))
    default_preset = {"transformer": "transformer_tiny"}.get(family.name)
    model = dict(values.get("model", {"preset": default_preset} if default_preset else {}))
    _check_model_table(model, family)
    tables = {
        name: config_from_dict(cls, dict(values.get(name, {}))) for name, cls in SECTIONS.items()
    }
    data = config_from_dict(data_cls, dict(values["data"]))
    return ExperimentConfig(data=data, model=model, task=task, **tables)


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
        if keys == ["task"]:
            values["task"] = value
            continue
        if len(keys) != 2:
            raise ConfigError(
                f"--set keys look like train.lr or model.d_model, got {'.'.join(keys)!r}"
            )
        values.setdefault(keys[0], {})[keys[1]] = value
    return experiment_from_dict(values)
