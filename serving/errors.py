"""Request errors and the one mapping from any failure to a gRPC status and an HTTP code.

Every failure a request can meet ends here, so gRPC and REST answer the same way:
a `RequestError` keeps its own code; a TensorFlow error raised while parsing or running a
signature on the request's data keeps the kernel's own code, as TensorFlow Serving passes it
through (InvalidArgument -> INVALID_ARGUMENT, NotFound -> NOT_FOUND, DataLoss -> DATA_LOSS,
...), with TensorFlow Serving's HTTP mapping for REST (`HTTP_STATUS`); Python conversion
errors of request values are INVALID_ARGUMENT; anything else is INTERNAL.
"""
from __future__ import annotations

from typing import Tuple

import grpc

_C = grpc.StatusCode
# status -> HTTP status, as TensorFlow Serving's REST server maps them (a RequestError may
# name its own, e.g. 413 for a body over the limit, 408 for a request read too slowly)
HTTP_STATUS = {_C.OK: 200, _C.CANCELLED: 499, _C.UNKNOWN: 500, _C.INVALID_ARGUMENT: 400,
               _C.DEADLINE_EXCEEDED: 504, _C.NOT_FOUND: 404, _C.ALREADY_EXISTS: 409,
               _C.PERMISSION_DENIED: 403, _C.RESOURCE_EXHAUSTED: 429,
               _C.FAILED_PRECONDITION: 400, _C.ABORTED: 409, _C.OUT_OF_RANGE: 400,
               _C.UNIMPLEMENTED: 501, _C.INTERNAL: 500, _C.UNAVAILABLE: 503,
               _C.DATA_LOSS: 500, _C.UNAUTHENTICATED: 401}
# TensorFlow's error codes are gRPC's numbers
_BY_NUMBER = {code.value[0]: code for code in grpc.StatusCode}


class RequestError(Exception):
    """A request the server rejects.

    Args:
        code: the grpc.StatusCode to answer with.
        message: what is wrong, naming the input or field.
        http_status: overrides the HTTP status derived from `code` (e.g. 411).
    """

    def __init__(self, code: grpc.StatusCode, message: str, http_status: int = 0):
        super().__init__(message)
        self.code = code
        self.http_status = http_status or HTTP_STATUS.get(code, 500)


def invalid(message: str) -> RequestError:
    """Shorthand for an INVALID_ARGUMENT RequestError."""
    return RequestError(grpc.StatusCode.INVALID_ARGUMENT, message)


def classify(err: BaseException, where: str = "") -> Tuple[grpc.StatusCode, str, int]:
    """Maps any exception raised while handling a request to (status, message, http status).

    Args:
        err: the exception.
        where: what was being done, e.g. "signature 'predict'", prefixed to the message.
    """
    import tensorflow as tf  # the server imports TF anyway; kept local for the codec tests
    prefix = f"{where}: " if where else ""
    if isinstance(err, RequestError):
        return err.code, str(err), err.http_status
    if isinstance(err, tf.errors.OpError):
        # raised by a kernel on the request's data: its own code, as TF Serving answers
        code = _BY_NUMBER.get(err.error_code, grpc.StatusCode.UNKNOWN)
        return (code, f"{prefix}{type(err).__name__}: {_first_line(err.message)}",
                HTTP_STATUS.get(code, 500))
    if isinstance(err, (ValueError, TypeError, OverflowError, RecursionError)):
        # conversions of request values (e.g. an int too large for the input's dtype)
        return grpc.StatusCode.INVALID_ARGUMENT, f"{prefix}{type(err).__name__}: {err}", 400
    return grpc.StatusCode.INTERNAL, f"{prefix}internal error: {type(err).__name__}: {err}", 500


def _first_line(message: str) -> str:
    return (message or "").strip().splitlines()[0][:500] if message else ""
