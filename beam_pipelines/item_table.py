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
from beam_pipelines.ranks import bucket_of, entries_by_bucket, merged
from beam_pipelines.vocab import SummaryRule
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
    return entries_by_bucket(name, keys, {"vec": rows}, buckets, bucket_kind="items")


class ItemBucket(beam.DoFn):
    """Joins one bucket of item keys (all `CoGroupByKey`ed on the bucket): vocabulary ids and
    counts ("ids"), item records ("recs"), attribute / title-token ids ("lookup") and vectors
    ("vectors"); writes the bucket's rows of the item table and yields

    - main: the bucket's "item_info" entries for the shards' join (`entries_by_bucket`:
      columns id, attrs (n, A) and, with `titles`, title (token, id) pairs),
    - "sampler": (id, count, attr ids) of head items and of the tail sample,
    - "tail_mass": the total count of the bucket's tail items.
    """

    def __init__(self, output: str, num_attrs: int, title_tokens: int, buckets: int,
                 sampler_top: int, tail_sample: int, titles: bool):
        self.output, self.A, self.T = output, num_attrs, title_tokens
        self.buckets, self.top, self.tail_sample = buckets, sampler_top, tail_sample
        self.titles = titles

    def process(self, bucket_joined, sizes):
        bucket, j = bucket_joined
        ids = merged(j["ids"]).get("items")
        if ids is None:
            return
        keys, cols = ids
        look = {kind: dict(zip(ks, cs["id"].tolist()))
                for kind, (ks, cs) in merged(j["lookup"]).items()}
        attr_ids, token_ids = look.get("attrs", {}), look.get("query_tokens", {})
        recs = dict(j["recs"])
        vecs = {name: dict(zip(ks, cs["vec"])) for name, (ks, cs) in
                merged(j["vectors"]).items()}
        rule = SummaryRule(sizes["items"] - F.FIRST_ID, self.top, self.tail_sample)
        item_ids, counts = cols["id"], cols["count"]
        n = len(keys)
        attrs = np.zeros((n, self.A), np.int64)
        title = np.zeros((n, self.T), np.int64)
        found: Dict[str, List[Tuple[int, np.ndarray]]] = {"text": [], "image": []}
        titles = []
        for r, key in enumerate(keys):
            rec = recs.get(key)
            pairs: Sequence[Tuple[str, int]] = ()
            if rec is not None:
                a = [F.PAD_ID if x == "" else attr_ids.get(x, F.OOV_ID)
                     for x in rec.attrs][:self.A]
                attrs[r, :len(a)] = a
                pairs = [(t, i) for t in rec.title for i in [token_ids.get(t, F.OOV_ID)]
                         if i != F.OOV_ID][:self.T]
                title[r, :len(pairs)] = [i for _, i in pairs]
            titles.append(tuple(pairs) if self.titles else ())
            for name, inline in (("text", rec and rec.text_vector),
                                 ("image", rec and rec.image_vector)):
                vec = vecs.get(name, {}).get(key)
                if vec is None and inline:
                    vec = np.asarray(inline, np.float32)
                if vec is not None:
                    found[name].append((r, vec))
        tail = item_ids >= rule.head_end
        yield beam.pvalue.TaggedOutput("tail_mass", float(counts[tail].sum()))
        for r in (r for r, i in enumerate(item_ids.tolist()) if rule.keeps(i)):
            yield beam.pvalue.TaggedOutput(
                "sampler", (int(item_ids[r]), int(counts[r]), attrs[r].tolist()))
        arrays = {"ids": np.asarray(item_ids, np.int64), "attrs": attrs, "title": title}
        for name, rows in found.items():
            dim = len(rows[0][1]) if rows else 0
            mat = np.zeros((n, dim), np.float32)
            mask = np.zeros(n, bool)
            for r, vec in rows:
                mat[r] = vec
                mask[r] = True
            arrays[name], arrays[f"{name}_mask"] = mat, mask
        fileio.save_npz(fileio.join(self.output, PARTS, f"part-{bucket:06d}.npz"), **arrays)
        yield from entries_by_bucket("item_info", keys, {
            "id": np.asarray(item_ids, np.int64), "attrs": attrs.astype(np.int32),
            "title": titles},
            self.buckets)


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
    fileio.delete_tree(fileio.join(output, PARTS))
    return {"items": V, "text_dim": text.shape[1], "image_dim": image.shape[1],
            "items_with_text": int(text_mask.sum()), "items_with_image": int(image_mask.sum())}
