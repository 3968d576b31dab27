"""`serving.codec.tensor_from_proto`: strings decoded straight to a tf.string tensor read the
same as `tf.make_ndarray` (the reference), including TensorProto's short-value fill."""
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import types_pb2

from serving.codec import check_input, tensor_from_proto
from serving.errors import RequestError


def _proto(values, dims):
    p = tf.make_tensor_proto(np.array([b""], dtype=object))
    del p.string_val[:]
    p.string_val.extend(values)
    p.tensor_shape.ClearField("dim")
    for d in dims:
        p.tensor_shape.dim.add().size = d
    return p


@pytest.mark.parametrize("values, dims", [
    ([b"a", "é".encode(), b"", b"\xff\xfe"], [2, 2]),  # unicode, empty, invalid UTF-8
    ([b"x", b"y"], [2, 3]),                                # fewer values: the last repeats
    ([], [0, 5]),                                          # empty
    ([b"only"], []),                                       # a scalar
    ([], [1, 2]),                                          # no values at all: ""
    ([f"s{i}".encode() for i in range(5000)] + ["ü".encode()], [2, 4000]),  # long: the list
    ([f"s{i}".encode() for i in range(5000)], [1, 5000]),
    ([f"s{i}".encode() for i in range(5000)], [2, 50, 50]),  # not a matrix: the reshape
])
def test_string_protos_decode_like_make_ndarray(values, dims):
    proto = _proto(values, dims)
    got = tensor_from_proto("s", proto)
    if not isinstance(got, tf.Tensor):  # short inputs keep the numpy path
        assert len(values) < 4096
        got = tf.constant(got, tf.string)
    assert got.dtype == tf.string
    want = tf.make_ndarray(proto)
    assert got.shape == want.shape
    # as the served tensor the reference becomes ("" and b"" are the same tf.string)
    np.testing.assert_array_equal(np.asarray(got.numpy(), dtype=object),
                                  np.asarray(tf.constant(want, tf.string).numpy(), dtype=object))
    check_input("s", got, tf.TensorSpec([None] * len(dims), tf.string), max_batch=1024)


@pytest.mark.parametrize("n", [3, 5000])
def test_more_strings_than_the_shape_holds_is_invalid(n):
    with pytest.raises(RequestError, match="'s' is not a valid TensorProto"):
        tensor_from_proto("s", _proto([b"a"] * n, [1, n - 1]))


def test_a_string_tensor_for_an_integer_input_is_refused():
    got = tensor_from_proto("ids", _proto([b"1"] * 5000, [5000]))
    assert got.dtype == tf.string
    with pytest.raises(RequestError, match="'ids' has dtype string, expected int64"):
        check_input("ids", got, tf.TensorSpec([None], tf.int64), max_batch=1024)
    assert types_pb2.DT_STRING == _proto([b"1"], [1]).dtype
