"""PQ codebooks at scale: train on a sample of item key vectors, encode every item in
parallel.

Input: the item key parts of a trained model, `(V, P, d)` float32 in a `.npy` file (written by
`seminar build-codebooks --beam`, or by any batch-inference job). The sample of items the
codebooks are trained on is drawn exactly as in-process (`seminar_tf.pq.build`: the same seed,
the same ids), k-means is `seminar_tf.pq.quantizer.ProductQuantizer`, and encoding is the same
`encode_with` routine, so both paths give identical codes. Items are encoded in chunks by
parallel workers, each writing `codes-<start>.npy` (idempotent on retries); the driver joins
them into `item_codes.npy`.
"""
from __future__ import annotations

import glob
import io
import os
from typing import Optional, Sequence

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from seminar_tf.pq.build import sample_ids
from seminar_tf.pq.quantizer import ProductQuantizer, encode_with


class EncodeChunk(beam.DoFn):
    def __init__(self, parts_path: str, out_dir: str):
        self.parts_path, self.out_dir = parts_path, out_dir

    def process(self, start_end, codebooks):
        start, end = start_end
        parts = np.load(self.parts_path, mmap_mode="r")[start:end].astype(np.float64)
        P, S = codebooks.shape[:2]
        codes = encode_with(codebooks, parts.reshape(len(parts), P, S, -1))
        buf = io.BytesIO()
        np.save(buf, codes)
        path = os.path.join(self.out_dir, f"codes-{start:012d}.npy")
        with FileSystems.create(path) as f:
            f.write(buf.getvalue())
        beam.metrics.Metrics.counter("codebooks", "items_encoded").inc(len(codes))
        yield path


def _train(ids, parts_path, pq_kwargs):
    parts = np.load(parts_path, mmap_mode="r")
    return ProductQuantizer(**pq_kwargs).fit(np.asarray(parts[np.sort(ids)])).codebooks


def run(parts_path: str, out_dir: str, *, num_subspaces: int, num_codewords: int = 256,
        iters: int = 25, seed: int = 0, sample_size: int = 100_000, chunk: int = 4096,
        codebooks: Optional[np.ndarray] = None, beam_args: Sequence[str] = ()):
    """Runs the job; returns (codebooks (P, S, C, w), codes (V, P, S) uint8).

    Args:
        parts_path: `.npy` of item key parts (V, P, d).
        out_dir: where chunk files, `codebooks.npy` and `item_codes.npy` go.
        codebooks: skip training and encode with these.
    """
    from beam_pipelines.runner import default_runner as _default_runner
    V = np.load(parts_path, mmap_mode="r").shape[0]
    os.makedirs(out_dir, exist_ok=True)
    for old in glob.glob(os.path.join(out_dir, "codes-*.npy")):
        os.remove(old)
    pq_kwargs = dict(num_subspaces=num_subspaces, num_codewords=num_codewords, iters=iters,
                     seed=seed)
    # the in-process builder samples among ids 2..V-1 with the same generator
    ids = sample_ids(V, sample_size, seed)
    with beam.Pipeline(runner=_default_runner(beam_args),
                       options=PipelineOptions(list(beam_args))) as p:
        if codebooks is None:
            books = (p | "SampleIds" >> beam.Create([ids])
                     | "TrainCodebooks" >> beam.Map(_train, parts_path, pq_kwargs))
        else:
            books = p | "GivenCodebooks" >> beam.Create([np.asarray(codebooks)])
        _ = (p | "Chunks" >> beam.Create([(s, min(V, s + chunk)) for s in range(0, V, chunk)])
             | "Encode" >> beam.ParDo(EncodeChunk(parts_path, out_dir),
                                      beam.pvalue.AsSingleton(books))
             | "Reshard" >> beam.Reshuffle())
        _ = books | "SaveCodebooks" >> beam.Map(
            lambda b: np.save(os.path.join(out_dir, "codebooks.npy"), b))
    files = sorted(glob.glob(os.path.join(out_dir, "codes-*.npy")))
    codes = np.concatenate([np.load(f) for f in files])
    if len(codes) != V:
        raise RuntimeError(f"encoded {len(codes)} items, expected {V}")
    np.save(os.path.join(out_dir, "item_codes.npy"), codes)
    for f in files:
        os.remove(f)
    return np.load(os.path.join(out_dir, "codebooks.npy")), codes
