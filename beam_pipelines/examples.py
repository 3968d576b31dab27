"""Per-user example building in Beam: one user's events (after GroupByKey) -> contract
Examples routed per split, with query synthesis for sources without real queries."""
from __future__ import annotations

from typing import List

import apache_beam as beam
from apache_beam.metrics import Metrics

from beam_pipelines import records as R
from beam_pipelines.sequences import BuildOptions, Sampler, build_user_examples
from seminar_tf import features as F


class BuildExamples(beam.DoFn):
    """Builds the Examples of one user (after GroupByKey) and routes them per split."""

    def __init__(self, contract: F.FeatureContract, options: BuildOptions,
                 has_negatives: bool, synth_queries: bool):
        self.contract = contract
        self.options = options
        self.has_negatives = has_negatives
        self.synth_queries = synth_queries
        self._cache_key = None

    def _prepare(self, vocabs, item_side, sampler_data):
        """Derives per-worker lookups once per side-input value, not once per user."""
        key = (id(vocabs), id(item_side), id(sampler_data))
        if key != self._cache_key:
            self._attrs = {k: v[0] for k, v in item_side.items()}
            self._inverse_tokens = {i: k for k, i in vocabs["query_tokens"].index.items()}
            self._sampler = (Sampler(*sampler_data, mode=self.options.sampling)
                             if sampler_data[0] else None)
            self._cache_key = key

    def process(self, user_events, vocabs, item_side, sampler_data):
        user, events = user_events
        self._prepare(vocabs, item_side, sampler_data)
        item_vocab, token_vocab, users = vocabs["items"], vocabs["query_tokens"], vocabs["users"]
        attrs, sampler = self._attrs, self._sampler
        events = list(events)
        unique = list(dict.fromkeys(events))  # exact duplicate rows count once
        if len(unique) < len(events):
            yield beam.pvalue.TaggedOutput("rows", ("duplicate_events", len(events) - len(unique)))
            events = unique
        if self.synth_queries:
            events = synthesize_queries(events, item_vocab, self._inverse_tokens, item_side)
        for split, serialized, hist_len in build_user_examples(
                users.id(user), events, item_vocab=item_vocab, token_vocab=token_vocab,
                item_attrs=attrs, sampler=sampler, contract=self.contract,
                options=self.options, has_negatives=self.has_negatives):
            if split == "short_groups":
                Metrics.counter("examples", "short_candidate_groups").inc()
                yield beam.pvalue.TaggedOutput("rows", ("short_candidate_groups", 1))
                yield beam.pvalue.TaggedOutput("rows", ("missing_candidates", hist_len))
                continue
            Metrics.counter("examples", split).inc()
            yield beam.pvalue.TaggedOutput(split, serialized)
            if split not in ("candidates", "candidate_lists"):
                yield beam.pvalue.TaggedOutput("lengths", (split, hist_len))


def synthesize_queries(events, item_vocab, inverse_tokens, item_side) -> List[R.Event]:
    """Documented query synthesiser for sources without queries (Amazon, MovieLens).

    An event without a query gets as query the title tokens of the user's most recent
    *earlier* positive item (strictly earlier timestamp): the user's previous intent. The
    target's own text is never used, so the query cannot leak the target. The first event
    keeps an empty query. The source is left unchanged.
    """
    from beam_pipelines.sequences import sort_events
    inverse = inverse_tokens
    out, last_title, pending, pending_ts = [], (), (), None
    for e in sort_events(events):
        if pending_ts is not None and e.timestamp_ms > pending_ts:
            last_title, pending_ts = pending, None
        if not e.query and last_title:
            e = e._replace(query=last_title)
        out.append(e)
        if e.label > 0:
            title_ids = item_side.get(item_vocab.id(e.item), ((), ()))[1]
            pending = tuple(inverse[t] for t in title_ids if t in inverse)
            pending_ts = e.timestamp_ms
    return out
