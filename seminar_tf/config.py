"""Configuration dataclasses for data, model, product quantization and training: a
`SeminarConfig` groups the four, round-trips through JSON (`save_config` / `load_config`) and
is validated on construction and load, errors naming the field(s), e.g. ``model.top_k (300)
> data.max_seq_len (200)``."""
from __future__ import annotations

import dataclasses
import json
from typing import Any, Dict, Optional, Tuple

MODALITIES = ("id", "text", "image", "attr")
TASKS = ("ctr", "search")
INPUT_MODES = ("auto", "examples", "timelines")  # train.input_mode
LEGACY_GSU_FIELDS = {"eta_bits": ("eta", "bits"), "qin_query_k": ("qin", "first_k"),
                     "sim_attr_index": ("sim_hard", "attr_index")}


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the field."""


@dataclasses.dataclass
class DataConfig:
    """Shape of the examples and sizes of the vocabularies.

    Attributes:
        max_seq_len: L, the most recent history behaviours kept per example.
        max_query_tokens: Q, query tokens kept per (target or history) query.
        num_attrs: A, attribute ids per item (category levels, author, type, ...).
        item_vocab_size: item ids are in [0, item_vocab_size); 0 padding, 1 OOV.
        query_vocab_size: query token vocabulary size (0 padding, 1 OOV).
        attr_vocab_size: attribute id vocabulary size (0 padding, 1 OOV).
        user_vocab_size: user id vocabulary size (0 padding, 1 OOV).
        text_dim: width of the pretrained text vectors (0: none, token-bag fallback).
        image_dim: width of the pretrained image vectors (0: none).
        title_tokens: tokens per item title/caption in the item table (token-bag fallback).
    """
    max_seq_len: int = 200
    max_query_tokens: int = 6
    num_attrs: int = 4
    item_vocab_size: int = 10_000
    query_vocab_size: int = 1_000
    attr_vocab_size: int = 1_000
    user_vocab_size: int = 10_000
    text_dim: int = 32
    image_dim: int = 32
    title_tokens: int = 8

    def validate(self) -> None:
        for name in ("max_seq_len", "max_query_tokens", "num_attrs", "title_tokens"):
            _positive(self, "data", name)
        for name in ("item_vocab_size", "query_vocab_size", "attr_vocab_size",
                     "user_vocab_size"):
            if getattr(self, name) < 3:
                raise ConfigError(
                    f"data.{name} ({getattr(self, name)}) must be >= 3 (0 padding, 1 OOV, "
                    "at least one real id)")
        for name in ("text_dim", "image_dim"):
            if getattr(self, name) < 0:
                raise ConfigError(f"data.{name} ({getattr(self, name)}) must be >= 0")


@dataclasses.dataclass
class ModelConfig:
    """Model architecture.

    Attributes:
        embedding_dim: d.
        num_heads: H heads of the target attention; must divide embedding_dim.
        top_k: K behaviours retrieved by the GSU for the ESU.
        gsu: retrieval kind, a name of `seminar_tf.layers.retrieval.RETRIEVERS`.
        gsu_options: per-retriever options, e.g. ``{"qin": {"first_k": 200}}`` (defaults in
            the RETRIEVERS table; the PQ GSU reads the `pq` section).
        modalities: item modalities fused into the item vector, subset of MODALITIES.
        short_term_len: most recent behaviours mean-pooled as the short-term interest
            (and attended by DIN's "last N").
        mlp_units: hidden units of the shared bottom and the task towers.
        tower_units: hidden units of each task tower.
        dropout: dropout rate of the MLPs.
        pair_alpha: weight of the query in the pair vector; None learns it.
        tasks: prediction tasks, subset of TASKS (ctr: recommendation, search: relevance).
        time_buckets: log2 buckets of behaviour time gaps.
        use_user_embedding: include a user-id embedding in the ranker input.
        use_projections: per-modality projections G_m (identity-initialised), SEMINAR.
    """
    embedding_dim: int = 64
    num_heads: int = 4
    top_k: int = 50
    gsu: str = "exact"
    modalities: Tuple[str, ...] = MODALITIES
    short_term_len: int = 20
    mlp_units: Tuple[int, ...] = (256, 128)
    tower_units: Tuple[int, ...] = (64,)
    dropout: float = 0.0
    pair_alpha: Optional[float] = None
    tasks: Tuple[str, ...] = TASKS
    time_buckets: int = 24
    use_user_embedding: bool = True
    use_projections: bool = False
    gsu_options: Dict[str, Dict[str, Any]] = dataclasses.field(default_factory=dict)

    def validate(self) -> None:
        from seminar_tf.layers.retrieval import RETRIEVERS, retriever_options
        for name in ("embedding_dim", "num_heads", "top_k", "short_term_len", "time_buckets"):
            _positive(self, "model", name)
        if self.embedding_dim % self.num_heads:
            raise ConfigError(
                f"model.num_heads ({self.num_heads}) must divide model.embedding_dim "
                f"({self.embedding_dim})")
        if self.gsu not in RETRIEVERS:
            raise ConfigError(f"model.gsu ({self.gsu!r}) must be one of {sorted(RETRIEVERS)}")
        if not isinstance(self.gsu_options, dict):
            raise ConfigError("model.gsu_options must be an object of name -> options")
        for kind, options in self.gsu_options.items():
            if kind not in RETRIEVERS or not isinstance(options, dict):
                raise ConfigError(f"model.gsu_options.{kind} must name a GSU of "
                                  f"{sorted(RETRIEVERS)} and hold an object")
            try:
                values = retriever_options(kind, options)
            except ValueError as e:
                raise ConfigError(str(e)) from e
            for opt, v in values.items():
                if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                    raise ConfigError(f"model.gsu_options.{kind}.{opt} ({v!r}) must be a "
                                      "non-negative integer")
        _subset(self, "model", "modalities", MODALITIES)
        if "id" not in self.modalities:
            raise ConfigError("model.modalities must include 'id'")
        _subset(self, "model", "tasks", TASKS)
        if self.pair_alpha is not None and not 0.0 <= self.pair_alpha <= 1.0:
            raise ConfigError(f"model.pair_alpha ({self.pair_alpha}) must be in [0, 1] or null")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"model.dropout ({self.dropout}) must be in [0, 1)")


@dataclasses.dataclass
class PQConfig:
    """GSU key codebooks (docs/design.md §6; `seminar_tf.pq.quantizer`, trained with FAISS).

    Attributes:
        method: "rq" (residual, S full-d stages per part), "pq" (S sub-spaces per part)
            or "opq" (PQ after a learned rotation); `benchmarks/pq_attention.py` measures
            them, the default is the best one there.
        whiten: score-aware: quantize keys in the metric of the query covariance.
        num_subspaces: S per part (sub-spaces of pq / opq, must divide embedding_dim;
            stages of rq): bytes per behaviour = parts x S.
        num_codewords: C per codebook, a power of two <= 256 (uint8 codes).
        kmeans_iters, sample_size, seed: k-means iterations, items trained on, seed.
        combine_parts: one part (the summed modality parts), not one per modality.
        rank_scoring: `rank` path: "decode" (keys decoded once, L x d, one (N x d).(d x L)
            product) or "lookup" (N lookup tables); the faster on the benchmark's shapes.
    """
    method: str = "rq"
    whiten: bool = True
    num_subspaces: int = 4
    num_codewords: int = 256
    kmeans_iters: int = 25
    sample_size: int = 100_000
    seed: int = 0
    combine_parts: bool = True
    rank_scoring: str = "decode"

    def validate(self) -> None:
        if self.rank_scoring not in ("decode", "lookup"):
            raise ConfigError(f"pq.rank_scoring ({self.rank_scoring!r}) must be 'decode' or "
                              "'lookup'")
        for name in ("num_subspaces", "kmeans_iters", "sample_size"):
            _positive(self, "pq", name)
        c = self.num_codewords
        if self.method not in ("rq", "pq", "opq") or not 2 <= c <= 256 or c & (c - 1):
            raise ConfigError(f"pq.method ({self.method!r}) must be 'rq', 'pq' or 'opq' and "
                              f"pq.num_codewords ({c}) a power of two in [2, 256]")


@dataclasses.dataclass
class TrainConfig:
    """Optimisation and pretraining objectives.

    Attributes:
        learning_rate: Adam learning rate.
        batch_size: examples per batch.
        epochs: training epochs.
        steps_per_epoch: optional cap on steps per epoch (None: the whole dataset).
        seed: seed for initialisation, shuffling and sampling.
        shuffle_buffer: tf.data shuffle buffer (0 disables shuffling).
        early_stopping_patience: epochs without validation improvement before stopping.
        monitor: validation metric watched by early stopping and checkpoints.
        temperature: InfoNCE temperature tau of the PSU objectives.
        learn_temperature: learn tau (initialised at `temperature`).
        objective_weights: PSU objective name -> weight (0 switches it off); names and
            default weights from `seminar_tf.tasks.objectives.OBJECTIVES`.
        freeze_psu: keep restored PSU weights frozen during finetuning.
        psu_positions: most recent positions per sequence scored by the PSU objectives.
        psu_sampled_negatives: random pairs shared by the batch for next-pair prediction.
        save_initial_weights: keep the step-0 weights as `weights/initial` (to check what
            training changed, e.g. across distributed workers).
        input_mode: "auto" ("timelines" over the sequence store where the strategy takes
            them, else "examples"), "examples" (one history per example) or "timelines"
            (T consecutive targets of a user share one encoded window, same loss).
        targets_per_timeline: T (batch_size // T windows per batch; shuffled as chunks,
            then windows, so batches mix users: `data.timelines.timeline_dataset`).
        jit_compile: XLA for the training step and evaluation (off: slower on CPU).
    """
    learning_rate: float = 1e-3
    batch_size: int = 256
    epochs: int = 1
    steps_per_epoch: Optional[int] = None
    seed: int = 0
    shuffle_buffer: int = 10_000
    early_stopping_patience: int = 2
    monitor: str = "val_auc"
    save_initial_weights: bool = False
    temperature: float = 0.05
    learn_temperature: bool = False
    objective_weights: Dict[str, float] = dataclasses.field(default_factory=dict)
    freeze_psu: bool = False
    psu_positions: int = 8
    psu_sampled_negatives: int = 256
    input_mode: str = "auto"
    targets_per_timeline: int = 4
    jit_compile: bool = False

    def validate(self) -> None:
        for name in ("batch_size", "epochs", "psu_positions", "psu_sampled_negatives",
                     "targets_per_timeline"):
            _positive(self, "train", name)
        if self.input_mode not in INPUT_MODES:
            raise ConfigError(f"train.input_mode ({self.input_mode!r}) must be one of "
                              f"{', '.join(map(repr, INPUT_MODES))}")
        if self.learning_rate <= 0:
            raise ConfigError(f"train.learning_rate ({self.learning_rate}) must be > 0")
        if self.temperature <= 0:
            raise ConfigError(f"train.temperature ({self.temperature}) must be > 0")
        for name, weight in self.weights().items():
            if not isinstance(weight, (int, float)) or isinstance(weight, bool) or weight < 0:
                raise ConfigError(f"train.objective_weights.{name} ({weight!r}) must be a "
                                  "number >= 0")
        if self.steps_per_epoch is not None and self.steps_per_epoch <= 0:
            raise ConfigError(f"train.steps_per_epoch ({self.steps_per_epoch}) must be > 0")

    def weights(self) -> Dict[str, float]:
        """Every PSU objective's weight (table defaults updated with objective_weights)."""
        from seminar_tf.tasks.objectives import weights
        if not isinstance(self.objective_weights, dict):
            raise ConfigError("train.objective_weights must be an object of name -> weight")
        try:
            return weights(self.objective_weights)
        except ValueError as e:
            raise ConfigError(str(e)) from e


@dataclasses.dataclass
class SeminarConfig:
    """All settings of one run."""
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    pq: PQConfig = dataclasses.field(default_factory=PQConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)

    def __post_init__(self):
        self.validate()

    def validate(self) -> "SeminarConfig":
        """Validates every section and the constraints between sections."""
        self.data.validate()
        self.model.validate()
        self.pq.validate()
        self.train.validate()
        if self.model.top_k > self.data.max_seq_len:
            raise ConfigError(
                f"model.top_k ({self.model.top_k}) > data.max_seq_len "
                f"({self.data.max_seq_len}): the GSU cannot retrieve more behaviours than the "
                "history holds")
        if self.model.short_term_len > self.data.max_seq_len:
            raise ConfigError(
                f"model.short_term_len ({self.model.short_term_len}) > data.max_seq_len "
                f"({self.data.max_seq_len})")
        if self.pq.method != "rq" and self.model.embedding_dim % self.pq.num_subspaces:
            raise ConfigError(
                f"pq.num_subspaces ({self.pq.num_subspaces}) must divide model.embedding_dim "
                f"({self.model.embedding_dim})")
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, raw: dict) -> "SeminarConfig":
        """Builds a config from a (possibly partial) nested dict; unknown keys are errors."""
        if not isinstance(raw, dict):
            raise ConfigError(f"config must be a JSON object, got {type(raw).__name__}")
        sections = {"data": DataConfig, "model": ModelConfig, "pq": PQConfig,
                    "train": TrainConfig}
        unknown = set(raw) - set(sections)
        if unknown:
            raise ConfigError(f"unknown config section(s) {sorted(unknown)}; expected "
                              f"{sorted(sections)}")
        built = {}
        for name, klass in sections.items():
            built[name] = _build_section(klass, name, raw.get(name, {}))
        return cls(**built)

    @classmethod
    def from_json(cls, text: str) -> "SeminarConfig":
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"config is not valid JSON: {e}") from e
        return cls.from_dict(raw)

    def replace(self, **sections: Any) -> "SeminarConfig":
        """Returns a copy with some fields changed: ``cfg.replace(model={'top_k': 10})``."""
        raw = self.to_dict()
        for section, changes in sections.items():
            if section not in raw:
                raise ConfigError(f"unknown config section {section!r}")
            raw[section].update(changes)
        return SeminarConfig.from_dict(raw)


def _build_section(klass, section: str, raw: Any):
    if not isinstance(raw, dict):
        raise ConfigError(f"config section {section!r} must be an object")
    if section == "model" and set(raw) & set(LEGACY_GSU_FIELDS):
        raw = _migrate_gsu_fields(raw)
    legacy_weights = {k for k in raw if k.endswith("_weight")} if section == "train" else ()
    if legacy_weights:  # older configs: alignment_weight, next_pair_weight, ...
        raw = dict(raw)
        weights = dict(raw.get("objective_weights") or {})
        for k in legacy_weights:
            weights[k[:-len("_weight")]] = raw.pop(k)
        raw["objective_weights"] = weights
    fields = {f.name: f for f in dataclasses.fields(klass)}
    unknown = set(raw) - set(fields)
    if unknown:
        raise ConfigError(f"unknown field(s) {sorted(f'{section}.{u}' for u in unknown)}")
    values = {}
    for key, value in raw.items():
        default = getattr(klass(), key)
        if isinstance(default, tuple) and isinstance(value, list):
            value = tuple(value)
        if isinstance(default, bool) and not isinstance(value, bool):
            raise ConfigError(f"{section}.{key} must be true or false, got {value!r}")
        if (isinstance(default, int) and not isinstance(default, bool)
                and not (isinstance(value, int) and not isinstance(value, bool))
                and not (value is None and fields[key].type.startswith("Optional"))):
            raise ConfigError(f"{section}.{key} must be an integer, got {value!r}")
        if isinstance(default, float) and not isinstance(value, (int, float)):
            raise ConfigError(f"{section}.{key} must be a number, got {value!r}")
        values[key] = value
    return klass(**values)


def _migrate_gsu_fields(raw: dict) -> dict:
    """Older configs kept GSU options flat (eta_bits, qin_query_k, sim_attr_index)."""
    raw = dict(raw)
    options = {k: dict(v) for k, v in (raw.get("gsu_options") or {}).items()}
    for old, (kind, name) in LEGACY_GSU_FIELDS.items():
        if old in raw:
            options.setdefault(kind, {})[name] = raw.pop(old)
    raw["gsu_options"] = options
    return raw


def _positive(obj, section: str, name: str) -> None:
    value = getattr(obj, name)
    if value <= 0:
        raise ConfigError(f"{section}.{name} ({value}) must be > 0")


def _subset(obj, section: str, name: str, allowed: Tuple[str, ...]) -> None:
    values = getattr(obj, name)
    bad = [v for v in values if v not in allowed]
    if bad or not values:
        raise ConfigError(f"{section}.{name} ({list(values)}) must be a non-empty subset of "
                          f"{list(allowed)}")


def load_config(path: Optional[str] = None, **overrides: Any) -> SeminarConfig:
    """Loads a JSON config file (or the defaults when path is None) and applies overrides.

    Args:
        path: JSON file written by `save_config` (sections may be partial).
        **overrides: section name -> dict of field changes.
    """
    if path is None:
        cfg = SeminarConfig()
    else:
        from seminar_tf import storage
        cfg = SeminarConfig.from_json(storage.read_text(path))
    return cfg.replace(**overrides) if overrides else cfg


def save_config(cfg: SeminarConfig, path: str) -> None:
    """Writes the config as JSON."""
    from seminar_tf import storage
    storage.write_text(path, cfg.to_json() + "\n")
