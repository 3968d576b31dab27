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

from typing import Optional, Sequence

import apache_beam as beam
import numpy as np
from apache_beam.options.pipeline_options import PipelineOptions

from beam_pipelines import fileio

from seminar_tf.pq.build import sample_ids
from seminar_tf.pq.quantizer import ProductQuantizer, encode_with


class EncodeChunk(beam.DoFn):
    def __init__(self, parts_path: str, out_dir: str):
        self.parts_path, self.out_dir = parts_path, out_dir

    def process(self, start_end, codebooks):
        start, end = start_end
        # only this chunk's rows are read (any Beam filesystem)
        parts = fileio.load_npy_rows(self.parts_path, start, end).astype(np.float64)
        P, S = codebooks.shape[:2]
        codes = encode_with(codebooks, parts.reshape(len(parts), P, S, -1))
        path = fileio.join(self.out_dir, f"codes-{start:012d}.npy")
        fileio.save_npy(path, codes)
        beam.metrics.Metrics.counter("codebooks", "items_encoded").inc(len(codes))
        yield path


def _train(ids, parts_path, pq_kwargs):
    ids = np.sort(ids)
    # the sample's rows, read in contiguous runs rather than the whole file
    runs = np.split(ids, np.flatnonzero(np.diff(ids) > 1) + 1)
    sample = np.concatenate([fileio.load_npy_rows(parts_path, int(r[0]), int(r[-1]) + 1)
                             for r in runs if len(r)])
    return ProductQuantizer(**pq_kwargs).fit(sample).codebooks


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
    V = fileio.npy_shape(parts_path)[0][0]
    fileio.makedirs(out_dir)
    fileio.delete(fileio.glob(fileio.join(out_dir, "codes-*.npy")))
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
            lambda b: fileio.save_npy(fileio.join(out_dir, "codebooks.npy"), b))
    files = fileio.glob(fileio.join(out_dir, "codes-*.npy"))
    codes = np.concatenate([fileio.load_npy(f) for f in files])
    if len(codes) != V:
        raise RuntimeError(f"encoded {len(codes)} items, expected {V}")
    fileio.save_npy(fileio.join(out_dir, "item_codes.npy"), codes)
    fileio.delete(files)
    return fileio.load_npy(fileio.join(out_dir, "codebooks.npy")), codes
