"""The one Markdown table renderer (metrics tables, reports, benchmark results)."""
from __future__ import annotations

from typing import Dict, List, Mapping, Optional, Sequence

METRIC_COLUMNS = ("auc", "gauc", "logloss", "hit@10", "ndcg@10", "mrr")


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def markdown_table(rows: Sequence[Mapping], columns: Sequence[str],
                   formats: Optional[Mapping[str, str]] = None) -> str:
    """A Markdown table of `rows` (dicts) in `columns` order; missing cells stay empty.

    Args:
        rows: one mapping per row.
        columns: the keys shown, in order.
        formats: optional per-column format specs (e.g. {"auc": ".4f"}).
    """
    formats = formats or {}
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        cells = []
        for c in columns:
            v = r.get(c, "")
            cells.append(format(v, formats[c]) if c in formats and isinstance(
                v, (int, float)) else ("" if v == "" else _fmt(v)))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def metrics_table(results: Mapping[str, Dict], first: str = "model") -> str:
    """Impression (AUC, GAUC, logloss) and candidate (HIT@10, NDCG@10, MRR) metrics of
    evaluation results by name, plus the popularity baseline when one result carries it."""
    rows: List[Dict] = []
    pop = None
    for name, r in results.items():
        rows.append({first: name, **_flat(r)})
        pop = pop or r.get("popularity_baseline")
    if pop:
        rows.append({first: "popularity", **_flat(pop)})
    return markdown_table(rows, [first, *METRIC_COLUMNS], {c: ".4f" for c in METRIC_COLUMNS})


def _flat(r: Dict) -> Dict:
    out = {c: r.get("test", {}).get(c) for c in METRIC_COLUMNS[:3]}
    out.update({c: r.get("candidates", {}).get(c) for c in METRIC_COLUMNS[3:]})
    return out
