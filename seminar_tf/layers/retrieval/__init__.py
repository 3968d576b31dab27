"""GSU retrievers: one module per retriever, one name -> class table (`RETRIEVERS`).

Every retriever subclasses `base.Retrieval` and is built by `from_ranker(ranker, **options)`.
A retriever's options have their defaults in its table line and are overridden per run by
`model.gsu_options[<name>]` (the PQ lookup attention reads the `pq` config section, which
codebook building shares). Adding a GSU: one new module here plus one line below
(docs/design.md, "Adding a variant").

The table holds module and class *names*, so that `seminar_tf.config` can validate names
and options without importing TensorFlow; classes are imported on first use.
"""
from __future__ import annotations

from typing import Any, Dict, NamedTuple

from seminar_tf.lazy_table import load_class


class Entry(NamedTuple):
    """Where a retriever lives and its options with their defaults."""
    module: str
    cls: str
    options: Dict[str, Any]


RETRIEVERS: Dict[str, Entry] = {
    "exact": Entry("exact", "ExactTargetRetrieval", {}),
    "pq": Entry("pq", "PQLookupAttention", {}),
    "sim_hard": Entry("sim_hard", "SimHardRetrieval", {"attr_index": 1}),
    "sim_soft": Entry("sim_soft", "SimSoftRetrieval", {}),
    "eta": Entry("eta", "EtaRetrieval", {"bits": 64}),
    "qin": Entry("qin", "QinRetrieval", {"first_k": 100}),
    "last_n": Entry("last_n", "LastNRetrieval", {}),
    "full": Entry("last_n", "LastNRetrieval", {"whole_history": True}),  # K = L
}


def retriever_class(kind: str):
    """The class registered under `kind` (a module of this package, or a fully qualified
    module path)."""
    return load_class(RETRIEVERS, kind, __name__,
                      f"unknown GSU kind {kind!r}; known: {sorted(RETRIEVERS)}")


def retriever_options(kind: str, overrides: Dict[str, Any] = None) -> Dict[str, Any]:
    """The table defaults of `kind` updated with `overrides` (unknown names are errors)."""
    defaults = dict(RETRIEVERS[kind].options)
    unknown = set(overrides or {}) - set(defaults)
    if unknown:
        raise ValueError(f"model.gsu_options.{kind} has unknown option(s) {sorted(unknown)}; "
                         f"{kind} takes {sorted(defaults) or 'none'}")
    defaults.update(overrides or {})
    return defaults


def retrieval_top_k(kind: str, config) -> int:
    """K of GSU `kind` under `config` (its class decides: `Retrieval.top_k_for`)."""
    options = retriever_options(kind, config.model.gsu_options.get(kind, {}))
    return retriever_class(kind).top_k_for(config, **options)


def build_retrieval(kind: str, ranker):
    """Builds GSU `kind` for `ranker` with its configured options."""
    options = ranker.config.model.gsu_options.get(kind, {})
    return retriever_class(kind).from_ranker(ranker, **retriever_options(kind, options))


def __getattr__(name):  # `from seminar_tf.layers.retrieval import PQLookupAttention` etc.
    if name in ("Retrieval", "masked_top_k", "later_first_top_k"):
        from seminar_tf.layers.retrieval import base
        return getattr(base, name)
    if name == "pq_item_scores":
        from seminar_tf.layers.retrieval import pq
        return pq.pq_item_scores
    for kind, entry in RETRIEVERS.items():
        if entry.cls == name:
            return retriever_class(kind)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
