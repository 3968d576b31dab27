import pytest

from beam_pipelines import records as R
from beam_pipelines.sources import events, kuaisar, movielens


def test_token_lists():
    assert R.parse_token_list("[20, 34, 3]", "keyword") == ("20", "34", "3")
    assert R.parse_token_list("[]", "keyword") == ()
    assert R.parse_token_list(" [ 7 ] ", "keyword") == ("7",)
    for bad in ("20, 34", "[20, x]", "", "[[1]]"):
        with pytest.raises(R.RecordError) as e:
            R.parse_token_list(bad, "keyword")
        assert e.value.reason == "bad_token_list" and "keyword" in str(e.value)


def test_timestamps():
    assert R.parse_timestamp_ms("1.684742e+12", "t") == 1_684_742_000_000
    assert R.parse_timestamp_ms("1684742460000.0", "t") == 1_684_742_460_000
    assert R.parse_timestamp_ms("881250949", "t", unit="s") == 881_250_949_000
    assert R.parse_timestamp_ms(1_700_000_000, "t", unit="auto") == 1_700_000_000_000
    assert R.parse_timestamp_ms(1_700_000_000_123, "t", unit="auto") == 1_700_000_000_123
    for bad in ("soon", "", None, "nan", "-5"):
        with pytest.raises(R.RecordError, match="bad_timestamp"):
            R.parse_timestamp_ms(bad, "t")


def test_ids():
    assert R.parse_id("12", "item_id") == "12"
    assert R.parse_id("12.0", "item_id") == "12"
    assert R.parse_id(3, "item_id") == "3"
    for bad, reason in (("", "missing_id"), ("abc", "bad_id"), ("1.5", "bad_id"),
                        (None, "missing_id")):
        with pytest.raises(R.RecordError) as e:
            R.parse_id(bad, "item_id")
        assert e.value.reason == reason


def test_kuaisar_item_with_chinese_names_and_padding_author():
    header = ["item_id", "caption", "author_id", "first_level_category_id",
              "second_level_category_id", "third_level_category_id",
              "first_level_category_name"]
    row = R.csv_row('101,[],0,2,21,211,游戏', header)
    rec = kuaisar.kuaisar_item(row)
    assert rec.attrs == ("first:2", "second:21", "third:211", "")  # author 0 is padding
    assert rec.title == ()
    with pytest.raises(R.RecordError, match="wrong_column_count"):
        R.csv_row("1,2", header)
    # the reader keeps only the columns the parser reads: the same record
    keep = R.csv_keep(header, kuaisar.KuaiSAR.columns["kuaisar_item"])
    narrow = R.csv_row('101,[],0,2,21,211,游戏', header, keep=keep)
    assert set(narrow) == set(header) - {"first_level_category_name"}
    assert kuaisar.kuaisar_item(narrow) == rec
    with pytest.raises(R.RecordError, match="wrong_column_count"):
        R.csv_row("1,2", header, keep=keep)


def test_csv_keep_maps_wanted_columns_found_in_the_header():
    header = ["a", "b", "a", "c"]
    keep = R.csv_keep(header, ("a", "c", "missing"))
    assert keep == (("a", "c"), (2, 3))  # a repeated name: its last column, as dict(zip())
    assert R.csv_row("1,2,3,4", header, keep=keep) == {"a": "3", "c": "4"}
    assert R.csv_row("1,2,3,4", header, keep=keep) == {
        k: v for k, v in R.csv_row("1,2,3,4", header).items() if k in ("a", "c")}
    assert R.csv_keep(header, None) is None
    with pytest.raises(KeyError):  # a parser reading a column the file lacks: missing_column
        kuaisar.kuaisar_rec(R.csv_row("1,2,3,4", header, keep=R.csv_keep(
            header, kuaisar.KuaiSAR.columns["kuaisar_rec"])))


def test_movielens_rows():
    ev = movielens.movielens_rating(["1", "2", "5", "881250949"])
    assert ev.label == 1.0 and ev.timestamp_ms == 881_250_949_000
    assert movielens.movielens_rating(["1", "2", "2", "881250949"]).label == 0.0
    item = movielens.movielens_1m_item(["10", "Pokémon (1999)", "Animation|Children's"])
    assert item.attrs == ("genre:Animation", "genre:Children's", "", "year:1999")
    assert item.title == ("pok", "mon")


def test_generic_event_defaults_and_errors():
    ev = events.generic_event('{"user_id": "u", "item_id": "i", "timestamp": 1700000000, '
                         '"query": "Red Shoes"}')
    assert ev.query == ("red", "shoes") and ev.source == R.SOURCE_SEARCH and ev.label == 1.0
    with pytest.raises(R.RecordError, match="bad_source"):
        events.generic_event('{"user_id": "u", "item_id": "i", "timestamp": 1, "source": "tv"}')
    with pytest.raises(R.RecordError, match="bad_json"):
        events.generic_event("[1, 2]")
