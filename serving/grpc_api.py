"""gRPC: `tensorflow.serving.PredictionService` and `ModelService.GetModelStatus`.

Predict and GetModelMetadata are served; Classify, Regress and MultiInference answer
UNIMPLEMENTED (the models are rankers with Predict signatures). Every failure is mapped by
`serving.errors.classify`: a client never sees UNKNOWN. Messages over the size limit are
refused by gRPC itself with RESOURCE_EXHAUSTED.
"""
from __future__ import annotations

import json
import logging
import time
from typing import Callable, Optional

import grpc
from google.protobuf import any_pb2
from tensorflow_serving.apis import (get_model_metadata_pb2, model_service_pb2_grpc,
                                     prediction_service_pb2_grpc)

from serving.codec import run_predict
from serving.errors import RequestError, classify, invalid
from serving.monitoring import Metrics, Stages
from serving.models import ModelManager

LOG = logging.getLogger("serving")


def _version(spec) -> Optional[int]:
    return spec.version.value if spec.HasField("version") else None


def guarded(metrics: Metrics, method: str, context, fn: Callable):
    """Runs `fn`; on any failure aborts the call with the mapped status and a message."""
    t0 = time.time()
    code, message = grpc.StatusCode.OK, ""
    try:
        return fn()
    except Exception as e:  # mapped to a status below, never UNKNOWN
        code, message, _ = classify(e)
        log = LOG.error if code == grpc.StatusCode.INTERNAL else LOG.info
        log(json.dumps({"event": "bad_request" if code != grpc.StatusCode.INTERNAL else
                        "internal_error", "api": "grpc", "method": method,
                        "code": code.name, "message": message[:300]}))
    finally:
        metrics.record("grpc", method, code.name, time.time() - t0)
    context.abort(code, message)


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    """PredictionService over one ModelManager."""

    def __init__(self, manager: ModelManager, metrics: Metrics, max_batch: int):
        self.manager, self.metrics, self.max_batch = manager, metrics, max_batch

    def Predict(self, request, context):
        def fn():
            with self.manager.acquire(request.model_spec.name,
                                      _version(request.model_spec)) as model:
                stages = Stages()
                resp = run_predict(model, request, self.max_batch, stages)
            self.metrics.record_stages("grpc", stages)
            return resp
        return guarded(self.metrics, "Predict", context, fn)

    def GetModelMetadata(self, request, context):
        def fn():
            model = self.manager.get(request.model_spec.name, _version(request.model_spec))
            fields = list(request.metadata_field) or ["signature_def"]
            if fields != ["signature_def"]:
                raise invalid(f"metadata_field must be ['signature_def'], got {fields}")
            resp = get_model_metadata_pb2.GetModelMetadataResponse()
            resp.model_spec.name = model.name
            resp.model_spec.version.value = model.version
            sig_map = get_model_metadata_pb2.SignatureDefMap()
            for k, v in model.signature_defs.items():
                if k != "__saved_model_init_op":
                    sig_map.signature_def[k].CopyFrom(v)
            packed = any_pb2.Any()
            packed.Pack(sig_map)
            resp.metadata["signature_def"].CopyFrom(packed)
            return resp
        return guarded(self.metrics, "GetModelMetadata", context, fn)

    def _unimplemented(self, method, context):
        def fn():
            raise RequestError(grpc.StatusCode.UNIMPLEMENTED,
                               f"{method} is not offered: SEMINAR rankers expose Predict "
                               "signatures (serving_default, predict, retrieve, rank)")
        return guarded(self.metrics, method, context, fn)

    def Classify(self, request, context):
        return self._unimplemented("Classify", context)

    def Regress(self, request, context):
        return self._unimplemented("Regress", context)

    def MultiInference(self, request, context):
        return self._unimplemented("MultiInference", context)


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    """ModelService.GetModelStatus over one ModelManager."""

    def __init__(self, manager: ModelManager, metrics: Metrics):
        self.manager, self.metrics = manager, metrics

    def GetModelStatus(self, request, context):
        return guarded(self.metrics, "GetModelStatus", context, lambda: self.manager.status(
            request.model_spec.name, _version(request.model_spec)))

    def HandleReloadConfigRequest(self, request, context):
        def fn():
            raise RequestError(grpc.StatusCode.UNIMPLEMENTED,
                               "config reload is not offered: the server polls its base path")
        return guarded(self.metrics, "HandleReloadConfigRequest", context, fn)


def add_services(server: grpc.Server, manager: ModelManager, metrics: Metrics,
                 max_batch: int) -> None:
    """Registers both services on a grpc.Server."""
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionServicer(manager, metrics, max_batch), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(
        ModelServicer(manager, metrics), server)
