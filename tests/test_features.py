import numpy as np
import pytest
import tensorflow as tf

from seminar_tf import features as F
from seminar_tf.features import ContractError, FeatureContract

C = FeatureContract(max_seq_len=4, max_query_tokens=3, num_attrs=2, item_vocab_size=100,
                    query_vocab_size=50, attr_vocab_size=20, user_vocab_size=10)


def _example(n_hist, **kw):
    args = dict(
        user_id=3, target_item=42, label=1.0, target_query=[5, 6], target_attrs=[7, 8],
        target_source=F.SOURCE_SEARCH, timestamp=1000,
        hist_items=[10 + i for i in range(n_hist)],
        hist_query=[[i + 2] * (i % 4) for i in range(n_hist)],
        hist_attrs=[[i + 2, i + 3] for i in range(n_hist)],
        hist_sources=[F.SOURCE_REC if i % 2 else F.SOURCE_SEARCH for i in range(n_hist)],
        hist_time_gaps=[float(100 - i) for i in range(n_hist)])
    args.update(kw)
    return C.make_example(**args)


def _parse(*examples):
    return F.to_numpy(C.parse_examples(tf.constant([e.SerializeToString()
                                                     for e in examples])))


def test_round_trip_short_history_is_left_padded():
    b = _parse(_example(2))
    assert b[F.USER_ID].tolist() == [3]
    assert b[F.TARGET_ITEM].tolist() == [42]
    assert b[F.TARGET_QUERY].tolist() == [[5, 6, 0]]
    assert b[F.TARGET_ATTRS].tolist() == [[7, 8]]
    assert b[F.TARGET_SOURCE].tolist() == [F.SOURCE_SEARCH]
    assert b[F.LABEL].tolist() == [1.0]
    assert b[F.HIST_ITEMS].tolist() == [[0, 0, 10, 11]]
    assert b[F.HIST_MASK].tolist() == [[False, False, True, True]]
    assert b[F.HIST_QUERY].tolist() == [[[0, 0, 0], [0, 0, 0], [0, 0, 0], [3, 0, 0]]]
    assert b[F.HIST_ATTRS][0, 2:].tolist() == [[2, 3], [3, 4]]
    assert b[F.HIST_SOURCES].tolist() == [[0, 0, F.SOURCE_SEARCH, F.SOURCE_REC]]
    np.testing.assert_allclose(b[F.HIST_TIME_GAPS], [[0, 0, 100, 99]])
    assert b[F.HIST_QUERY_MASK][0, 3].tolist() == [True, False, False]
    assert b[F.TARGET_QUERY_MASK].tolist() == [[True, True, False]]


def test_truncation_keeps_most_recent_in_serializer_and_parser():
    ex = _example(7)
    assert list(ex.features.feature[F.HIST_ITEMS].int64_list.value) == [13, 14, 15, 16]
    big = FeatureContract(**{**C.__dict__, "max_seq_len": 10})
    ex10 = big.make_example(user_id=1, target_item=2, label=0.0,
                            hist_items=list(range(20, 29)))
    b = _parse(ex10)  # parsed with L=4: the 4 most recent, most recent last
    assert b[F.HIST_ITEMS].tolist() == [[25, 26, 27, 28]]


def test_batch_with_mixed_lengths_masks_match_padding():
    b = _parse(_example(0), _example(1), _example(4), _example(6))
    assert b[F.HIST_ITEMS].shape == (4, 4)
    np.testing.assert_array_equal(b[F.HIST_MASK], b[F.HIST_ITEMS] != 0)
    assert b[F.HIST_MASK].sum(axis=1).tolist() == [0, 1, 4, 4]
    assert (b[F.HIST_QUERY][~b[F.HIST_MASK]] == 0).all()
    assert (b[F.HIST_TIME_GAPS][~b[F.HIST_MASK]] == 0).all()


def test_oov_ids_map_to_reserved_id():
    b = _parse(_example(2, user_id=99, target_item=1000, target_query=[49, 50, -3],
                        hist_items=[5, 100]))
    assert b[F.USER_ID].tolist() == [F.OOV_ID]
    assert b[F.TARGET_ITEM].tolist() == [F.OOV_ID]
    assert b[F.TARGET_QUERY].tolist() == [[49, F.OOV_ID, F.OOV_ID]]
    assert b[F.HIST_ITEMS].tolist() == [[0, 0, 5, F.OOV_ID]]


def test_inconsistent_history_lengths_are_rejected_by_name():
    ex = _example(3)
    ex.features.feature[F.HIST_QUERY].int64_list.value.append(7)
    with pytest.raises(tf.errors.InvalidArgumentError, match=F.HIST_QUERY):
        _parse(ex)
    ex = _example(3)
    del ex.features.feature[F.HIST_SOURCES].int64_list.value[-1]
    with pytest.raises(tf.errors.InvalidArgumentError, match=F.HIST_SOURCES):
        _parse(ex)


def test_serializer_errors_name_field_and_record():
    with pytest.raises(ContractError, match=r"hist_sources has 1 entries.*record u7"):
        C.make_example(user_id=7, target_item=1, label=1, hist_items=[3, 4],
                       hist_sources=[1], record="u7")
    with pytest.raises(ContractError, match=r"target_item must hold integer ids.*record r"):
        C.make_example(user_id=7, target_item="x", label=1, record="r")
    with pytest.raises(ContractError, match="source 5"):
        C.make_example(user_id=7, target_item=1, label=1, target_source=5)


def test_dense_signature_matches_parsed_shapes():
    b = C.parse_examples(tf.constant([_example(3).SerializeToString()]))
    for name, spec in C.dense_input_signature().items():
        assert spec.dtype == b[name].dtype, name
        assert spec.shape[1:] == b[name].shape[1:], name
