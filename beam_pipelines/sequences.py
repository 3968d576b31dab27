"""Per-user sequence building, splits, negative sampling and vocabularies (pure Python).

These functions hold the logic; `beam_pipelines.pipeline` distributes it (one user's events at
a time, so no worker ever holds the whole dataset).

Sequence rules:
- A user's events are sorted by (timestamp, source, item, query, label): ties are broken
  deterministically and independently of input order.
- The history of a target holds the user's *positive* events (clicks) with a timestamp
  strictly earlier than the target's: never the target itself, never a simultaneous or later
  event. It is truncated to the most recent `max_seq_len`.
- Only events at or after `min_target_time_ms` become targets; earlier events are history only.
- Leave-one-out split: the user's last positive target is test (with every target event at
  or after its timestamp), the one before it validation, the rest train. With a time split,
  events at or after `test_start_ms` are test, at or after `valid_start_ms` validation.
- Negatives (`negatives`): "observed" keeps a source's real non-clicks as label-0 targets;
  "sampled" writes `neg_per_pos` sampled items per positive instead, label-0 targets sharing
  the positive's history and query; "both" does both. Sampled negatives exclude the items the
  user interacted with up to the target's time (never the user's *future* clicks, which
  would leak them into training) and are drawn, in target order, from one generator per
  user seeded by (seed, user), so any runner reproduces them. When observed non-clicks
  exist, sampled ones go to train and validation only, so that the test split's impression
  AUC is measured on logged impressions.
- Evaluation candidates (also written as `candidate_lists`: one ranking record per group,
  the context Example once plus N small candidate Examples, the `rank` signature's format)
  for the test positive, 1 positive + `num_candidates - 1` sampled
  items that the user never interacted with positively, all with the same history. A group
  the catalogue cannot fill is reported as ("short_groups", None, missing count). Every
  candidate example carries its group's id (`group_id`), so that two clicked items of one
  search session (same timestamp, `--split time`) form two groups.
"""
from __future__ import annotations

import hashlib
from typing import Iterable, List, Mapping, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from beam_pipelines.options import PreprocessOptions
from beam_pipelines.records import Event
from beam_pipelines.vocab import Sampler, Vocab  # noqa: F401  (re-exported)
from seminar_tf import features as F
from seminar_tf.raw_events import time_gaps

SPLITS = ("train", "valid", "test", "candidates", "candidate_lists")


_DEFAULTS = PreprocessOptions()


class BuildOptions(NamedTuple):
    """Options of example building (see the module docstring): the resolved
    `PreprocessOptions` (`negatives` and `neg_per_pos` after the source's defaults); the
    defaults are those of `PreprocessOptions`; `negatives` / `neg_per_pos` default to logged
    and no sampled negatives."""
    max_seq_len: int = _DEFAULTS.max_seq_len
    max_query_tokens: int = _DEFAULTS.max_query_tokens
    num_attrs: int = _DEFAULTS.num_attrs
    min_target_time_ms: int = 0
    split: str = _DEFAULTS.split  # "loo" or "time"
    valid_start_ms: int = _DEFAULTS.valid_start_ms
    test_start_ms: int = _DEFAULTS.test_start_ms
    neg_per_pos: int = 0
    sampling: str = _DEFAULTS.sampling  # "popularity" or "uniform"
    negatives: str = "both"  # "observed", "sampled" or "both"
    vocab_from: str = _DEFAULTS.vocab_from  # "train" or "catalog"
    num_candidates: int = _DEFAULTS.num_candidates
    seed: int = _DEFAULTS.seed


def _rng(seed: int, *keys) -> np.random.Generator:
    digest = hashlib.sha256(repr((seed,) + keys).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def unique_events(events: Iterable[Event]) -> List[Event]:
    """A user's events with exact duplicate rows counted once, in input order: the one
    de-duplication of the counting pass (`shards.scan_shard`) and the writing pass
    (`shards.WriteShard`), so that both see the same events and the same split (a
    duplicated last positive must not move the training boundary)."""
    return list(dict.fromkeys(events))


def train_time_events(events: Iterable[Event], options: BuildOptions) -> List[Event]:
    """The user's events before their first validation / test target, in input order: what
    vocabularies and popularity may be built from (the same split rules as
    `build_user_examples`).

    Leave-one-out: events before the validation positive's timestamp (all events of users
    with fewer than 3 positive targets, who have no validation or test target). Time split:
    events before the earlier of `valid_start_ms` / `test_start_ms` (those set).
    """
    # by index (Event fields user, timestamp_ms, item, query, label, source), so that plain
    # tuples of those fields work as well as Events
    events = list(events)
    boundary = train_boundary(events, options)
    # the order does not matter to the counts: no sort (the most expensive step here)
    return events if boundary is None else [e for e in events if e[1] < boundary]


def train_boundary(events: Sequence[Event], options: BuildOptions) -> Optional[int]:
    """The first timestamp outside the training period (None: every event is in it)."""
    if options.split == "time":
        bounds = [b for b in (options.valid_start_ms, options.test_start_ms) if b > 0]
        return min(bounds) if bounds else None
    start = options.min_target_time_ms
    pos = sorted(e[1] for e in events if e[1] >= start and e[4] > 0)
    return pos[-2] if len(pos) >= 3 else None


def group_id(user_id: int, timestamp_ms: int, item: int) -> int:
    """The id of one candidate group (1 positive + sampled negatives): stable across runners,
    non-zero, distinct for two clicked items of one search session (same timestamp)."""
    digest = hashlib.sha256(repr(("group", user_id, timestamp_ms, item)).encode()).digest()
    return int.from_bytes(digest[:7], "little") + 1


def sort_events(events: Iterable[Event]) -> List[Event]:
    """Sorted by (timestamp_ms, source, item, query, label) (Events or plain field tuples)."""
    return sorted(events, key=lambda e: (e[1], e[5], e[2], e[3], e[4]))


class Target(NamedTuple):
    """One output record of a user: event index `k` (the context: time, query, source),
    the target item and label, the history window `[lo, hi)` of the user's positives, the
    candidate group (0 outside evaluation) and, for "candidate_lists", the (item, label)
    list of the group."""
    split: str
    k: int
    item: int
    label: float
    lo: int
    hi: int
    group: int = 0
    listed: Tuple[Tuple[int, float], ...] = ()


class UserPlan(NamedTuple):
    """What one user contributes, before serialization (shared by both output formats).

    Attributes:
        events: the user's events (Events or plain field tuples), sorted (`sort_events`).
        items, queries (n, Q), sources, times: per-event arrays (vocabulary ids, ms).
        attrs: an `IdRows` or item id -> attribute ids (length A); `no_attrs` for unknown
            items.
        pos: indices of the positive events: the timeline histories are cut from.
        targets: the records in output order.
        short: missing candidates of each group the catalogue could not fill.
    """
    events: List[Event]
    items: np.ndarray
    queries: np.ndarray
    sources: np.ndarray
    times: np.ndarray
    attrs: Mapping[int, Sequence[int]]
    no_attrs: np.ndarray
    pos: np.ndarray
    targets: List[Target]
    short: List[int]

    def attrs_of(self, items: Sequence[int]) -> np.ndarray:
        """(n, A) attribute ids of item ids (`attrs` an `IdRows` or a mapping)."""
        if hasattr(self.attrs, "of"):
            return self.attrs.of(items).reshape(len(items), len(self.no_attrs))
        return np.array([self.attrs.get(int(i), self.no_attrs) for i in items],
                        np.int64).reshape(len(items), len(self.no_attrs))


def plan_user(user_id: int, events: Iterable[Event], *, item_vocab: Vocab, token_vocab: Vocab,
              item_attrs: Mapping[int, Sequence[int]], sampler: Optional[Sampler],
              options: BuildOptions, has_negatives: bool) -> UserPlan:
    """The targets of one user's events (splits, negatives, candidate groups; see the module
    docstring), with the arrays both writers serialize from. `user_id` (the vocabulary id)
    seeds the sampled negatives and names the candidate groups."""
    events = sort_events(events)
    n, Q, A = len(events), options.max_query_tokens, options.num_attrs
    no_attrs = np.zeros(A, np.int64)
    item_index, oov = item_vocab.index, F.OOV_ID
    items = np.array([item_index.get(e[2], oov) if e[2] else F.PAD_ID for e in events],
                     np.int64)
    padded = {(): (F.PAD_ID,) * Q}  # query -> its token ids, padded (a session repeats it)
    rows = []
    for e in events:
        row = padded.get(e[3])
        if row is None:
            ids = token_vocab.ids(e[3])[:Q]
            row = padded[e[3]] = tuple(ids) + (F.PAD_ID,) * (Q - len(ids))
        rows.append(row)
    queries = np.array(rows, np.int64).reshape(n, Q)
    times = np.fromiter((e[1] for e in events), np.int64, n)
    labels = np.fromiter((e[4] for e in events), np.float64, n)
    sources = np.fromiter((e[5] for e in events), np.int64, n)
    pos_idx = np.flatnonzero(labels > 0)
    pos_times = times[pos_idx]
    positives = set(items[pos_idx].tolist())
    targets = np.flatnonzero(times >= options.min_target_time_ms).tolist()
    target_pos = [k for k in targets if labels[k] > 0]

    # each event's split (as an index into SPLITS), by its timestamp
    if options.split == "time":
        split_idx = np.where(times >= options.test_start_ms, 2,
                             np.where(times >= options.valid_start_ms, 1, 0))
    elif len(target_pos) >= 3:
        split_idx = np.where(times >= times[target_pos[-1]], 2,
                             np.where(times >= times[target_pos[-2]], 1, 0))
    else:
        split_idx = np.zeros(n, np.int64)
    test_positive = target_pos[-1] if (options.split == "loo" and len(target_pos) >= 3) else None
    observed = has_negatives and options.negatives in ("observed", "both")
    sampled = options.negatives in ("sampled", "both")
    out: List[Target] = []
    short: List[int] = []
    seen: set = set()  # items the user interacted with (any event) up to the target's time
    neg_rng, pool, drawn = None, [], 0  # one generator per user, drawn in target order
    upto = 0
    his = np.searchsorted(pos_times, times, side="left")  # strictly earlier positives
    # the loop reads Python lists: indexing numpy arrays per element costs more
    times_l, items_l, labels_l = times.tolist(), items.tolist(), labels.tolist()
    his_l, split_l = his.tolist(), [SPLITS[i] for i in split_idx.tolist()]
    L = options.max_seq_len
    for k in targets:
        ts = times_l[k]
        while upto < n and times_l[upto] <= ts:
            seen.add(items_l[upto])
            upto += 1
        hi = his_l[k]
        lo = hi - L if hi > L else 0
        split = split_l[k]
        item = items_l[k]
        label = labels_l[k]
        if label > 0 or observed:
            out.append(Target(split, k, item, label, lo, hi))
        if (label > 0 and sampler is not None and sampled and options.neg_per_pos > 0
                and not (observed and split == "test")):
            if neg_rng is None:  # one block of weighted draws for all the user's positives
                neg_rng = _rng(options.seed, "neg", user_id)
                pool = sampler.pool(neg_rng, len(target_pos), 4 * options.neg_per_pos)
            # no leakage: only what the user did up to now is excluded, not later clicks
            negs = Sampler.pick(pool[drawn], options.neg_per_pos, seen)
            drawn += 1
            if len(negs) < options.neg_per_pos:  # the block ran dry: draw on
                negs += sampler.draw(neg_rng, options.neg_per_pos - len(negs),
                                     seen | set(negs))
            for neg in negs:
                out.append(Target(split, k, neg, 0.0, lo, hi))
        if sampler is not None and options.num_candidates > 0 and (k == test_positive or (
                options.split == "time" and split == "test" and label > 0)):
            rng = _rng(options.seed, "candidates", user_id, ts)
            group = group_id(user_id, ts, item)
            out.append(Target("candidates", k, item, 1.0, lo, hi, group))
            negatives = sampler.draw(rng, options.num_candidates - 1, positives)
            out.extend(Target("candidates", k, neg, 0.0, lo, hi, group) for neg in negatives)
            listed = ((item, 1.0),) + tuple((neg, 0.0) for neg in negatives)
            out.append(Target("candidate_lists", k, item, 1.0, lo, hi, group, listed))
            if len(negatives) < options.num_candidates - 1:  # reported, never silent
                short.append(options.num_candidates - 1 - len(negatives))
    return UserPlan(events, items, queries, sources, times, item_attrs, no_attrs, pos_idx,
                    out, short)


def build_user_examples(user_id: int, events: Iterable[Event], *, item_vocab: Vocab,
                        token_vocab: Vocab, item_attrs: Mapping[int, Sequence[int]],
                        sampler: Optional[Sampler], contract: F.FeatureContract,
                        options: BuildOptions, has_negatives: bool):
    """Yields (split, serialized Example, history length) for one user's events (the
    `--format examples` writer; "short_groups" entries carry the missing count).

    Args:
        user_id: the user's vocabulary id.
        events: the user's events (any order).
        item_vocab, token_vocab: vocabularies of items and query tokens.
        item_attrs: item vocabulary id -> attribute ids (length A).
        sampler: negative sampler over item ids (None disables sampled negatives).
        contract: the feature contract that serializes.
        options: BuildOptions.
        has_negatives: the source logs real non-clicks.
    """
    plan = plan_user(user_id, events, item_vocab=item_vocab, token_vocab=token_vocab,
                     item_attrs=item_attrs, sampler=sampler, options=options,
                     has_negatives=has_negatives)
    yield from plan_examples(user_id, plan, contract)


def plan_examples(user_id: int, plan: UserPlan, contract: F.FeatureContract):
    """Serializes a `UserPlan` as self-contained Examples: (split, bytes, history length)."""
    p = plan.pos
    p_items, p_query, p_sources, p_times = (plan.items[p], plan.queries[p], plan.sources[p],
                                            plan.times[p])
    p_attrs = plan.attrs_of(p_items)
    t_attrs = plan.attrs_of([t.item for t in plan.targets])  # one lookup, not one per target

    def example(t: Target, target_attrs: np.ndarray, group: int = 0) -> bytes:
        e = Event._make(plan.events[t.k])
        lo, hi = t.lo, t.hi
        return contract.make_example_arrays(
            user_id=user_id, timestamp=e.timestamp_ms // 1000, target_item=t.item,
            target_query=plan.queries[t.k],
            target_attrs=target_attrs,
            target_source=e.source, label=t.label, hist_items=p_items[lo:hi],
            hist_query=p_query[lo:hi], hist_attrs=p_attrs[lo:hi], hist_sources=p_sources[lo:hi],
            hist_time_gaps=time_gaps(e.timestamp_ms, p_times[lo:hi]),
            record=f"user {e.user}, timestamp_ms {e.timestamp_ms}, item {e.item}",
            group_id=group).SerializeToString(deterministic=True)

    for t, attrs_t in zip(plan.targets, t_attrs):
        if t.split == "candidate_lists":
            # the same group as one ranking record: the history once, N small candidates
            context = example(t._replace(label=1.0), attrs_t, t.group)
            attrs = plan.attrs_of([i for i, _ in t.listed])
            yield "candidate_lists", contract.make_ranking_record(context, [
                contract.make_candidate(i, a, label, t.group)
                for (i, label), a in zip(t.listed, attrs)]), t.hi - t.lo
        else:
            yield t.split, example(t, attrs_t, t.group), t.hi - t.lo
    for missing in plan.short:
        yield "short_groups", None, missing
