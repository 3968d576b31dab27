"""A small generated log in the generic `events` source's shape (what a new user brings):
`events.jsonl` {user_id, item_id, timestamp (ms), query?, label, source?} with string ids such
as "user-47" and "sku-150" and free-text queries (mixed case, punctuation, some non-ASCII),
and `items.jsonl` {item_id, title, categories}.

Users prefer two of the categories: they search with words of a preferred item's title
and click preferred items more often. `item_offset` shifts the item ids, so two logs
generated with different offsets share only part of their catalogue (a retrained model's
new vocabulary).
"""
from __future__ import annotations

import json
import os
from typing import Dict

import numpy as np

CATEGORIES = ("shoes", "bags", "coats", "lamps", "mugs", "books", "tents", "watches")
COLORS = ("red", "blue", "black", "green", "ivory", "café", "Grey")
STYLES = ("running", "leather", "vintage", "compact", "travel", "classic", "Pro-Max")


def generate_events(out_dir: str, num_users: int = 40, num_items: int = 200,
                    events_per_user: int = 40, seed: int = 0, item_offset: int = 0
                    ) -> Dict[str, int]:
    """Writes `events.jsonl` and `items.jsonl` to `out_dir`; returns counts."""
    rng = np.random.default_rng(seed)
    os.makedirs(out_dir, exist_ok=True)
    items = []
    for k in range(item_offset, item_offset + num_items):
        cat = CATEGORIES[k % len(CATEGORIES)]
        title = f"{COLORS[k % len(COLORS)]} {STYLES[(k // 3) % len(STYLES)]} {cat[:-1]} {k}"
        items.append({"item_id": f"sku-{k}", "title": title.title() if k % 2 else title,
                      "categories": [cat, f"{cat}-{k % 3}"]})
    by_cat = {c: [it for it in items if it["categories"][0] == c] for c in CATEGORIES}
    events = []
    for u in range(num_users):
        liked = rng.choice(len(CATEGORIES), 2, replace=False)
        t = 1_700_000_000_000 + int(rng.integers(0, 86_400_000))
        for _ in range(events_per_user):
            t += int(rng.integers(1_000, 6 * 3_600_000))
            preferred = rng.random() < 0.7
            cat = CATEGORIES[int(liked[int(rng.integers(2))])] if preferred else \
                CATEGORIES[int(rng.integers(len(CATEGORIES)))]
            item = by_cat[cat][int(rng.integers(len(by_cat[cat])))]
            e = {"user_id": f"user-{u}", "item_id": item["item_id"], "timestamp": t,
                 "label": int(rng.random() < (0.8 if preferred else 0.25))}
            if rng.random() < 0.4:  # a search: words of the item's title, as typed
                words = item["title"].split()[:3]
                e["query"] = rng.choice([" ".join(words), "  ".join(words).upper() + "!",
                                         "-".join(words) + ", please"])
                if rng.random() < 0.5:
                    e["source"] = "search"
            elif rng.random() < 0.5:
                e["source"] = "rec"
            events.append(e)
    with open(os.path.join(out_dir, "events.jsonl"), "w", encoding="utf-8") as f:
        f.writelines(json.dumps(e, ensure_ascii=False) + "\n" for e in events)
    with open(os.path.join(out_dir, "items.jsonl"), "w", encoding="utf-8") as f:
        f.writelines(json.dumps(it, ensure_ascii=False) + "\n" for it in items)
    return {"users": num_users, "items": num_items, "events": len(events)}


def read_events(path: str):
    """The event dicts of a JSON-lines file (what a client holds)."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
