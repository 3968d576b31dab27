"""Model registry: `--model NAME` -> the configuration changes that define it.

All models share the same data, encoders and protocol; they differ in the GSU, the item
modalities and SEMINAR's per-modality projections (and, for SEMINAR, PSU pretraining, which
`seminar train --model seminar --init-from PSU_DIR` restores).
"""
from __future__ import annotations

from typing import Dict

from seminar_tf.config import MODALITIES, SeminarConfig

ID_ATTR = ("id", "attr")
MODELS: Dict[str, Dict[str, object]] = {
    "din": {"gsu": "last_n", "modalities": ID_ATTR},
    "sim_hard": {"gsu": "sim_hard", "modalities": ID_ATTR},
    "sim_soft": {"gsu": "sim_soft", "modalities": ID_ATTR},
    "eta": {"gsu": "eta", "modalities": ID_ATTR},
    "twin": {"gsu": "exact", "modalities": ID_ATTR},
    "qin": {"gsu": "qin", "modalities": ID_ATTR},
    "full_attention": {"gsu": "full", "modalities": ID_ATTR},
    "seminar": {"gsu": "exact", "modalities": MODALITIES, "use_projections": True},
}


def registry_changes(name: str) -> Dict[str, object]:
    """The model-section fields that define registry entry `name` (every key any entry
    sets; the ModelConfig default where this entry does not set it)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known: {sorted(MODELS)}")
    from seminar_tf.config import ModelConfig
    defaults = ModelConfig()
    keys = sorted({k for entry in MODELS.values() for k in entry})
    # every key that defines some preset, so that a preset is fully itself (twin has no
    # projections even over a config that turned them on for SEMINAR)
    changes = {k: MODELS[name].get(k, getattr(defaults, k)) for k in keys}
    changes["modalities"] = list(changes["modalities"])
    return changes


def model_config(name: str, base: SeminarConfig) -> SeminarConfig:
    """`base` with the model section changes of registry entry `name`."""
    return base.replace(model=registry_changes(name))


def build_model(name_or_config, base: SeminarConfig = None, item_table=None):
    """Builds a `LifelongRanker` for a registry name (or a full config) with all variables.

    Args:
        name_or_config: a registry name or a `SeminarConfig`.
        base: config the registry entry modifies (default: `SeminarConfig()`).
        item_table: optional dict of item-table arrays (pretrained vectors, titles).
    """
    from seminar_tf.models.ranker import LifelongRanker
    cfg = (name_or_config if isinstance(name_or_config, SeminarConfig)
           else model_config(name_or_config, base or SeminarConfig()))
    model = LifelongRanker(cfg).build_all()
    if item_table is not None:
        model.set_item_table(item_table)
    return model
