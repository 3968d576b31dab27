"""The item table (`item_table.npz`): attributes, titles and pretrained text / image vectors
indexed by item vocabulary id, joined by key in the Beam job (`ItemBucket`) and assembled
from per-bucket parts (`assemble_item_table`).

Arrays: attrs [V, A] int64, title [V, T] int64, text [V, Dt] float32, text_mask [V] bool,
image [V, Di] float32, image_mask [V] bool. A missing vector is all-zero *and* masked out;
vectors from `--text-vectors` / `--image-vectors` files win over inline ones.
"""
from __future__ import annotations

import io
from typing import Dict, List, Sequence, Tuple

import apache_beam as beam
import numpy as np

from beam_pipelines import fileio
from beam_pipelines.ranks import bucket_of, entries_by_bucket
from beam_pipelines.vocab import in_tail_sample, tail_rate
from seminar_tf import features as F

PARTS = "item_table.parts"


class ReadVectorIds(beam.DoFn):
    """(name, vectors .npy, ids .txt) -> (name, vectors path, first row, [raw ids]) per
    `chunk` rows, streaming the ids file (one raw item id a line, row i of the vectors)."""

    def __init__(self, chunk: int = 65536):
        self.chunk = chunk

    def process(self, spec):
        name, vectors, ids_path = spec
        rows = fileio.npy_shape(vectors)[0][0]
        n, buf = 0, []
        with fileio.open_read(ids_path) as f:
            for raw in f:
                key = raw.decode("utf-8").strip()
                if not key:
                    continue
                buf.append(key)
                if len(buf) == self.chunk:
                    yield name, vectors, n, buf
                    n, buf = n + len(buf), []
        if buf:
            yield name, vectors, n, buf
            n += len(buf)
        if n != rows:
            raise ValueError(f"{ids_path} lists {n} ids but {vectors} has {rows} rows")


def vector_entries(chunk, buckets: int):
    """A chunk of ids -> its vector rows (read from the `.npy` by range) by join bucket."""
    name, vectors, start, keys = chunk
    rows = fileio.load_npy_rows(vectors, start, start + len(keys)).astype(np.float32)
    return [(b, [(name, key, vec) for _, key, vec in batch]) for b, batch in
            entries_by_bucket("items", zip(keys, rows), buckets)]


class ItemBucket(beam.DoFn):
    """Joins one bucket of item keys (all `CoGroupByKey`ed on the bucket): vocabulary ids and
    counts ("ids"), item records ("recs"), attribute / title-token ids ("lookup") and vectors
    ("vectors"); writes the bucket's rows of the item table and yields

    - main: ("info" entries for the shards' join, bucket, [("item_info", key,
      (id, attr ids, title (token, id) pairs))]),
    - "sampler": (id, count, attr ids) of head items and of the tail sample,
    - "tail_mass": the total count of the bucket's tail items.
    """

    def __init__(self, output: str, num_attrs: int, title_tokens: int, buckets: int,
                 sampler_top: int, tail_sample: int):
        self.output, self.A, self.T = output, num_attrs, title_tokens
        self.buckets, self.top, self.tail_sample = buckets, sampler_top, tail_sample

    def process(self, bucket_joined, sizes):
        bucket, j = bucket_joined
        ids = {key: v for batch in j["ids"] for _, key, v in batch}
        if not ids:
            return
        look = {(kind, key): v for found in j["lookup"] for kind, key, v in found}
        recs = {key: rec for key, rec in j["recs"]}
        vecs: Dict[str, Dict[str, np.ndarray]] = {"text": {}, "image": {}}
        for batch in j["vectors"]:
            for name, key, vec in batch:
                vecs[name][key] = vec
        n_items = sizes["items"] - F.FIRST_ID
        head_end = F.FIRST_ID + min(self.top, n_items)
        rate = tail_rate(n_items - (head_end - F.FIRST_ID), self.tail_sample)
        keys = sorted(ids, key=lambda k: ids[k][0])
        n = len(keys)
        attrs = np.zeros((n, self.A), np.int64)
        title = np.zeros((n, self.T), np.int64)
        found: Dict[str, List[Tuple[str, np.ndarray]]] = {"text": [], "image": []}
        info, mass = [], 0.0
        for r, key in enumerate(keys):
            item_id, count = ids[key]
            rec = recs.get(key)
            pairs: Sequence[Tuple[str, int]] = ()
            if rec is not None:
                a = [F.PAD_ID if x == "" else look.get(("attrs", x), F.OOV_ID)
                     for x in rec.attrs][:self.A]
                attrs[r, :len(a)] = a
                pairs = [(t, i) for t in rec.title
                         for i in [look.get(("query_tokens", t), F.OOV_ID)]
                         if i != F.OOV_ID][:self.T]
                title[r, :len(pairs)] = [i for _, i in pairs]
            for name, inline in (("text", rec and rec.text_vector),
                                 ("image", rec and rec.image_vector)):
                vec = vecs[name].get(key)
                if vec is None and inline:
                    vec = np.asarray(inline, np.float32)
                if vec is not None:
                    found[name].append((r, vec))
            info.append(("item_info", key, (item_id, attrs[r].tolist(), tuple(pairs))))
            if item_id < head_end or in_tail_sample(item_id, rate):
                yield beam.pvalue.TaggedOutput("sampler", (item_id, count, attrs[r].tolist()))
            if item_id >= head_end:
                mass += count
        yield beam.pvalue.TaggedOutput("tail_mass", mass)
        arrays = {"ids": np.array([ids[k][0] for k in keys], np.int64), "attrs": attrs,
                  "title": title}
        for name, rows in found.items():
            dim = len(rows[0][1]) if rows else 0
            mat = np.zeros((n, dim), np.float32)
            mask = np.zeros(n, bool)
            for r, vec in rows:
                mat[r] = vec
                mask[r] = True
            arrays[name], arrays[f"{name}_mask"] = mat, mask
        fileio.save_npz(fileio.join(self.output, PARTS, f"part-{bucket:06d}.npz"), **arrays)
        for b, batch in entries_by_bucket("item_info", ((k, v) for _, k, v in info),
                                          self.buckets):
            yield b, batch


def item_bucket(key: str, buckets: int) -> int:
    """The bucket of an item key in the item join."""
    return bucket_of("items", key, buckets)


def assemble_item_table(output: str, num_items: int, num_attrs: int, title_tokens: int
                        ) -> Dict[str, int]:
    """`item_table.npz` (indexed by item vocabulary id) from the job's per-bucket parts,
    which it then deletes. `num_items` is the vocabulary size (with padding and OOV)."""
    parts = fileio.glob(fileio.join(output, PARTS, "part-*.npz"))
    V = num_items
    attrs = np.zeros((V, num_attrs), np.int64)
    title = np.zeros((V, title_tokens), np.int64)
    tables = {name: [None, np.zeros(V, bool)] for name in ("text", "image")}
    for p in parts:
        with np.load(io.BytesIO(fileio.read_bytes(p))) as z:
            ids = z["ids"]
            attrs[ids], title[ids] = z["attrs"], z["title"]
            for name, (mat, mask) in tables.items():
                part = z[name]
                if not part.shape[1]:
                    continue
                if mat is None:
                    mat = tables[name][0] = np.zeros((V, part.shape[1]), np.float32)
                if part.shape[1] != mat.shape[1]:
                    raise ValueError(f"{name} vectors of {part.shape[1]} and {mat.shape[1]} "
                                     "dimensions")
                rows = z[f"{name}_mask"]
                mat[ids[rows]] = part[rows]
                mask[ids[rows]] = True
    text, text_mask = tables["text"]
    image, image_mask = tables["image"]
    text = np.zeros((V, 0), np.float32) if text is None else text
    image = np.zeros((V, 0), np.float32) if image is None else image
    fileio.save_npz(fileio.join(output, "item_table.npz"), attrs=attrs, title=title,
                    text=text, text_mask=text_mask, image=image, image_mask=image_mask)
    fileio.delete(parts)
    return {"items": V, "text_dim": text.shape[1], "image_dim": image.shape[1],
            "items_with_text": int(text_mask.sum()), "items_with_image": int(image_mask.sum())}
