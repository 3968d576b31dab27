"""Request errors and the one mapping from any failure to a gRPC status and an HTTP code.

Every failure a request can meet ends here, so gRPC and REST answer the same way:
a `RequestError` keeps its own code; TensorFlow errors raised while parsing or running a
signature on the request's data are the request's fault (INVALID_ARGUMENT, or
RESOURCE_EXHAUSTED when TF ran out of memory for it); anything else is INTERNAL. No failure
reaches the client as UNKNOWN.
"""
from __future__ import annotations

from typing import Tuple

import grpc

# gRPC status -> HTTP status of TF Serving's REST API.
HTTP_STATUS = {grpc.StatusCode.OK: 200, grpc.StatusCode.INVALID_ARGUMENT: 400,
               grpc.StatusCode.NOT_FOUND: 404, grpc.StatusCode.UNIMPLEMENTED: 501,
               grpc.StatusCode.RESOURCE_EXHAUSTED: 413, grpc.StatusCode.INTERNAL: 500,
               grpc.StatusCode.UNAVAILABLE: 503, grpc.StatusCode.FAILED_PRECONDITION: 400,
               grpc.StatusCode.DEADLINE_EXCEEDED: 408}


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
    if isinstance(err, tf.errors.ResourceExhaustedError):
        return (grpc.StatusCode.RESOURCE_EXHAUSTED, prefix + _first_line(err.message), 413)
    if isinstance(err, (tf.errors.InvalidArgumentError, tf.errors.OutOfRangeError,
                        tf.errors.FailedPreconditionError, tf.errors.UnimplementedError,
                        tf.errors.NotFoundError, tf.errors.UnknownError,
                        tf.errors.DataLossError)):
        # raised by kernels on the request's data (bad serialized Example, out-of-range id)
        return (grpc.StatusCode.INVALID_ARGUMENT,
                f"{prefix}{type(err).__name__}: {_first_line(err.message)}", 400)
    if isinstance(err, (ValueError, TypeError, OverflowError, RecursionError)):
        # conversions of request values (e.g. an int too large for the input's dtype)
        return grpc.StatusCode.INVALID_ARGUMENT, f"{prefix}{type(err).__name__}: {err}", 400
    return grpc.StatusCode.INTERNAL, f"{prefix}internal error: {type(err).__name__}: {err}", 500


def _first_line(message: str) -> str:
    return (message or "").strip().splitlines()[0][:500] if message else ""
