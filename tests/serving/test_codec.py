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
    ([f"s{i}".encode() for i in range(300)] + ["ü".encode()], [2, 200]),  # longer ones
    ([f"s{i}".encode() for i in range(300)], [1, 300]),
])
def test_string_protos_decode_like_make_ndarray(values, dims):
    proto = _proto(values, dims)
    got = tensor_from_proto("s", proto)
    assert isinstance(got, tf.Tensor) and got.dtype == tf.string
    want = tf.make_ndarray(proto)
    assert got.shape == want.shape
    # as the served tensor the reference becomes ("" and b"" are the same tf.string)
    np.testing.assert_array_equal(np.asarray(got.numpy(), dtype=object),
                                  np.asarray(tf.constant(want, tf.string).numpy(), dtype=object))
    check_input("s", got, tf.TensorSpec([None] * len(dims), tf.string), max_batch=1024)


def test_more_strings_than_the_shape_holds_is_invalid():
    with pytest.raises(RequestError, match="'s' is not a valid TensorProto: 3 strings"):
        tensor_from_proto("s", _proto([b"a", b"b", b"c"], [1, 2]))


def test_a_string_tensor_for_an_integer_input_is_refused():
    got = tensor_from_proto("ids", _proto([b"1"], [1]))
    assert got.dtype == tf.string
    with pytest.raises(RequestError, match="'ids' has dtype string, expected int64"):
        check_input("ids", got, tf.TensorSpec([None], tf.int64), max_batch=1024)
    assert types_pb2.DT_STRING == _proto([b"1"], [1]).dtype
