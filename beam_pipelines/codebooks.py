"""PQ codebooks at scale: train on a sample of item key vectors, encode every item in
parallel, with the key vectors computed where they are used.

Key parts come from a `KeyParts` source: `ModelKeyParts` (a trained model directory and its
dataset: each worker loads the model once and computes the key parts of its own items;
`seminar build-codebooks --beam`) or `NpyKeyParts` (a `(V, P, d)` float32 `.npy` written by
any batch-inference job, read by row range). The sample of items the codebooks are trained on
is drawn exactly as in-process (`seminar_tf.pq.build`: the same seed, the same ids) and its
key parts are computed by the worker that trains; the quantizer is the one `pq.method` names
(`seminar_tf.pq.quantizer.make_quantizer`, FAISS on pinned threads), and every worker encodes
with the trained quantizer restored from its state, so both paths give identical codes. Items are encoded in chunks by parallel workers, each
writing `codes-<start>.npy` (idempotent on retries) and its share of the quantization
statistics; the driver joins the codes into `item_codes.npy` and writes
`encode_stats.json`.
"""
from __future__ import annotations

import io
import json
from typing import Callable, Optional, Sequence, Union

import apache_beam as beam
import numpy as np
from apache_beam.options.pipeline_options import PipelineOptions

from beam_pipelines import fileio

from seminar_tf.pq.build import sample_ids
from seminar_tf.pq.quantizer import Quantizer, make_quantizer


class NpyKeyParts:
    """Key parts stored in a `.npy` (V, P, d), read by row range (any Beam filesystem)."""

    def __init__(self, path: str):
        self.path = path

    def num_items(self) -> int:
        return fileio.npy_shape(self.path)[0][0]

    def rows(self, start: int, end: int) -> np.ndarray:
        return fileio.load_npy_rows(self.path, start, end)

    def of(self, ids: np.ndarray) -> np.ndarray:
        """Rows of sorted ids, read in contiguous runs rather than the whole file."""
        runs = np.split(ids, np.flatnonzero(np.diff(ids) > 1) + 1)
        return np.concatenate([self.rows(int(r[0]), int(r[-1]) + 1) for r in runs if len(r)])


class ModelKeyParts:
    """Key parts computed from a trained model directory by whichever worker asks (the model
    and the item attributes load once per worker; only paths are pickled).

    Args:
        model_dir: a directory written by `seminar train`.
        data_dir: its dataset (the item table's attributes feed the item encoder).
        load_model: `f(model_dir) -> ranker` (a module-level function, pickled by name;
            the workflow passes its own loader, so this Beam module imports no workflow).
        combine: sum the parts over modalities (the `combine_parts` PQ option).
    """

    def __init__(self, model_dir: str, data_dir: str, load_model: Callable,
                 combine: bool = False):
        self.model_dir, self.data_dir, self.combine = model_dir, data_dir, combine
        self.load_model = load_model
        self._model = self._attrs = None

    def __getstate__(self):
        return {**self.__dict__, "_model": None, "_attrs": None}

    def _item_attrs(self) -> np.ndarray:
        if self._attrs is None:
            data = fileio.read_bytes(fileio.join(self.data_dir, "item_table.npz"))
            with np.load(io.BytesIO(data)) as z:
                self._attrs = z["attrs"]
        return self._attrs

    def num_items(self) -> int:
        return len(self._item_attrs())

    def of(self, ids: np.ndarray) -> np.ndarray:
        from seminar_tf.pq.build import item_key_parts_of
        if self._model is None:
            self._model = self.load_model(self.model_dir)
        ids = np.asarray(ids, np.int64)
        return item_key_parts_of(self._model, ids, self._item_attrs()[ids],
                                 combine=self.combine)

    def rows(self, start: int, end: int) -> np.ndarray:
        return self.of(np.arange(start, end))


KeyParts = Union[NpyKeyParts, ModelKeyParts]


class EncodeChunk(beam.DoFn):
    """Encodes items [start, end): writes their codes, yields (squared error, squared norm,
    part vectors) over the real items (ids >= 2) of the chunk."""

    def __init__(self, parts: KeyParts, out_dir: str):
        self.parts, self.out_dir = parts, out_dir

    def process(self, start_end, state):
        start, end = start_end
        quantizer = Quantizer.from_state(state)
        parts = self.parts.rows(start, end).astype(np.float32)
        codes = quantizer.encode(parts)
        fileio.save_npy(fileio.join(self.out_dir, f"codes-{start:012d}.npy"), codes)
        beam.metrics.Metrics.counter("codebooks", "items_encoded").inc(len(codes))
        real = parts[max(0, 2 - start):].astype(np.float64)
        rec = quantizer.decode(codes[max(0, 2 - start):])
        yield (float(np.sum((real - rec) ** 2)), float(np.sum(real ** 2)),
               int(real.shape[0] * real.shape[1]))


def _train(ids, parts: KeyParts, pq_cfg, queries):
    return make_quantizer(pq_cfg).fit(parts.of(np.sort(ids)), queries).state()


def _sum3(triples):
    triples = list(triples)
    return tuple(sum(t[i] for t in triples) for i in range(3)) if triples else (0.0, 0.0, 0)


def run(parts: Union[str, KeyParts], out_dir: str, pq_cfg, *,
        queries: Optional[np.ndarray] = None, chunk: int = 4096,
        quantizer: Optional[Quantizer] = None, beam_args: Sequence[str] = ()):
    """Runs the job; returns (trained quantizer, codes (V, P', S') uint8).

    Args:
        parts: a `KeyParts` source, or the path of a `.npy` of item key parts (V, P, d).
        out_dir: where chunk files, `codebooks.npy`, `item_codes.npy` and `encode_stats.json`
            (quantization_mse, mean_part_sq_norm per part vector) go.
        pq_cfg: the `pq` config section (method, S, C, iterations, seed, sample size).
        queries: query vectors (n, d) of training targets (`pq.whiten`).
        quantizer: skip training and encode with this one.
    """
    from beam_pipelines.runner import default_runner as _default_runner
    source = NpyKeyParts(parts) if isinstance(parts, str) else parts
    V = source.num_items()
    fileio.makedirs(out_dir)
    fileio.delete(fileio.glob(fileio.join(out_dir, "codes-*.npy")))
    # the in-process builder samples among ids 2..V-1 with the same generator
    ids = sample_ids(V, pq_cfg.sample_size, pq_cfg.seed)
    stats_path = fileio.join(out_dir, "encode_stats.json")
    state_path = fileio.join(out_dir, "quantizer-trained.npz")
    with beam.Pipeline(runner=_default_runner(beam_args),
                       options=PipelineOptions(list(beam_args))) as p:
        if quantizer is None:
            state = (p | "SampleIds" >> beam.Create([ids])
                     | "TrainQuantizer" >> beam.Map(_train, source, pq_cfg, queries))
        else:
            state = p | "GivenQuantizer" >> beam.Create([quantizer.state()])
        _ = (p | "Chunks" >> beam.Create([(s, min(V, s + chunk)) for s in range(0, V, chunk)])
             | "Reshard" >> beam.Reshuffle()
             | "Encode" >> beam.ParDo(EncodeChunk(source, out_dir),
                                      beam.pvalue.AsSingleton(state))
             | "SumErrors" >> beam.CombineGlobally(_sum3)
             | "WriteStats" >> beam.Map(lambda t: fileio.write_json(stats_path, {
                 "quantization_mse": t[0] / max(t[2], 1),
                 "mean_part_sq_norm": t[1] / max(t[2], 1), "part_vectors": t[2]})))
        _ = state | "SaveQuantizer" >> beam.Map(
            lambda st: fileio.write_bytes(state_path, _npz_bytes(st)))
    files = fileio.glob(fileio.join(out_dir, "codes-*.npy"))
    codes = np.concatenate([fileio.load_npy(f) for f in files])
    if len(codes) != V:
        raise RuntimeError(f"encoded {len(codes)} items, expected {V}")
    fileio.save_npy(fileio.join(out_dir, "item_codes.npy"), codes)
    fileio.delete(files)
    with np.load(io.BytesIO(fileio.read_bytes(state_path))) as z:
        trained = Quantizer.from_state({k: z[k] for k in z.files})
    fileio.delete([state_path])
    fileio.save_npy(fileio.join(out_dir, "codebooks.npy"), trained.codebooks)
    return trained, codes


def _npz_bytes(arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def encode_stats(out_dir: str) -> dict:
    """The quantization statistics the last `run` into `out_dir` wrote."""
    return json.loads(fileio.read_text(fileio.join(out_dir, "encode_stats.json")))
