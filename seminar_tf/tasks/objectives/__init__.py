"""PSU objectives: one module per objective, one name -> class table (`OBJECTIVES`).

Each objective subclasses `base.Objective`: it owns its Task (loss and metric) and picks its
inputs from the shared per-batch encodings (`base.Batch`). The pretraining loss, the loss
trackers, the `seminar pretrain --<name>-weight` flags and config validation all loop over
this table; weights live in `train.objective_weights` (defaults below, 0 switches an
objective off). Adding an objective: one new module here plus one line below
(docs/design.md, "Adding a variant").

The table holds names, so that `seminar_tf.config` and the CLI can use it without importing
TensorFlow; classes are imported on first use.
"""
from __future__ import annotations

from typing import Dict, NamedTuple

from seminar_tf.lazy_table import load_class


class Entry(NamedTuple):
    """Where an objective lives and its default weight."""
    module: str
    cls: str
    weight: float


OBJECTIVES: Dict[str, Entry] = {
    "alignment": Entry("alignment", "AlignmentObjective", 1.0),
    "next_pair": Entry("next_pair", "NextPairObjective", 1.0),
    "relevance": Entry("relevance", "RelevanceObjective", 1.0),
}


def objective_class(name: str):
    """The Objective class registered under `name` (a module of this package, or a
    fully qualified module path)."""
    return load_class(OBJECTIVES, name, __name__,
                      f"unknown PSU objective {name!r}; known: {sorted(OBJECTIVES)}")


def weights(overrides: Dict[str, float] = None) -> Dict[str, float]:
    """Table default weights updated with `overrides` (unknown names are errors)."""
    unknown = set(overrides or {}) - set(OBJECTIVES)
    if unknown:
        raise ValueError(f"train.objective_weights names unknown objective(s) "
                         f"{sorted(unknown)}; known: {sorted(OBJECTIVES)}")
    out = {k: e.weight for k, e in OBJECTIVES.items()}
    out.update(overrides or {})
    return out
