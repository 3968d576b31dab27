"""The item table (`item_table.npz`): attributes, titles and pretrained text / image vectors
indexed by item vocabulary id, assembled from the pipeline's output."""
from __future__ import annotations

import json
from typing import Dict, Optional

import numpy as np

from beam_pipelines import fileio
from seminar_tf import features as F


def load_vectors(vectors_path: str, ids_path: str) -> Dict[str, np.ndarray]:
    """Loads pretrained vectors stored as `.npy` + a text file of raw item ids (one a line)."""
    vectors = fileio.load_npy(vectors_path)
    ids = [ln.strip() for ln in fileio.read_text(ids_path).splitlines() if ln.strip()]
    if len(ids) != len(vectors):
        raise ValueError(f"{ids_path} lists {len(ids)} ids but {vectors_path} has "
                         f"{len(vectors)} rows")
    return dict(zip(ids, vectors))


def build_item_table(output: str, num_attrs: int, title_tokens: int,
                     text: Optional[Dict[str, np.ndarray]] = None,
                     image: Optional[Dict[str, np.ndarray]] = None) -> Dict[str, int]:
    """Assembles `item_table.npz` (indexed by item vocabulary id) from the pipeline output.

    Arrays: attrs [V, A] int64, title [V, T] int64, text [V, Dt] float32, text_mask [V] bool,
    image [V, Di] float32, image_mask [V] bool. A missing vector is all-zero *and* masked out.
    """
    keys = fileio.read_text(fileio.join(output, "vocab", "items.txt")).split("\n")[:-1]
    V = len(keys) + F.FIRST_ID
    attrs = np.zeros((V, num_attrs), np.int64)
    title = np.zeros((V, title_tokens), np.int64)
    inline_text, inline_image = {}, {}
    for ln in fileio.read_text(fileio.join(output, "items.jsonl")).splitlines():
        rec = json.loads(ln)
        i = rec["id"]
        if i < F.FIRST_ID:
            continue  # item record of an item that never occurs in events
        attrs[i] = rec["attrs"]
        title[i, :len(rec["title"])] = rec["title"]
        if rec.get("text_vector"):
            inline_text[i] = np.asarray(rec["text_vector"], np.float32)
        if rec.get("image_vector"):
            inline_image[i] = np.asarray(rec["image_vector"], np.float32)

    def table(by_raw, inline):
        dim = (len(next(iter(by_raw.values()))) if by_raw else
               len(next(iter(inline.values()))) if inline else 0)
        mat = np.zeros((V, dim), np.float32)
        mask = np.zeros(V, bool)
        for j, key in enumerate(keys):
            vec = (by_raw or {}).get(key)
            if vec is None:
                vec = inline.get(j + F.FIRST_ID)
            if vec is not None:
                mat[j + F.FIRST_ID] = vec
                mask[j + F.FIRST_ID] = True
        return mat, mask

    text_m, text_mask = table(text, inline_text)
    image_m, image_mask = table(image, inline_image)
    fileio.save_npz(fileio.join(output, "item_table.npz"), attrs=attrs, title=title, text=text_m,
             text_mask=text_mask, image=image_m, image_mask=image_mask)
    return {"items": V, "text_dim": text_m.shape[1], "image_dim": image_m.shape[1],
            "items_with_text": int(text_mask.sum()), "items_with_image": int(image_mask.sum())}
