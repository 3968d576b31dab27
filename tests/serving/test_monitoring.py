"""The server's Prometheus metrics: names, labels and histogram through prometheus_client."""
from prometheus_client.parser import text_string_to_metric_families

from serving.monitoring import Metrics, Stages


def test_metrics_exposition_parses_with_the_expected_series():
    m = Metrics("seminar")
    m.record("grpc", "Predict", "OK", 0.004)
    m.record("rest", "predict", "INVALID_ARGUMENT", 0.030)
    m.record("grpc", "Predict", "OK", 3.0)
    families = {f.name: f for f in text_string_to_metric_families(m.render().decode())}
    assert set(families) == {"seminar_serving_requests", "seminar_serving_errors",
                             "seminar_serving_latency_ms", "seminar_serving_stage_ms"}
    requests = {(s.labels["api"], s.labels["method"], s.labels["code"]): s.value
                for s in families["seminar_serving_requests"].samples}
    assert requests == {("grpc", "Predict", "OK"): 2, ("rest", "predict", "INVALID_ARGUMENT"): 1}
    assert all(s.labels["model"] == "seminar"
               for s in families["seminar_serving_requests"].samples)
    assert [s.value for s in families["seminar_serving_errors"].samples] == [1]
    buckets = {s.labels["le"]: s.value for s in families["seminar_serving_latency_ms"].samples
               if s.name.endswith("_bucket")}
    assert buckets["5.0"] == 1 and buckets["50.0"] == 2 and buckets["+Inf"] == 3
    assert "_created" not in m.render().decode()
    assert m.count("OK") == 2 and m.count("INVALID_ARGUMENT") == 1 and m.count("NOT_FOUND") == 0


def test_each_server_has_its_own_registry():
    a, b = Metrics("a"), Metrics("b")
    a.record("grpc", "Predict", "OK", 0.001)
    assert b.count("OK") == 0 and b"model=\"a\"" not in b.render()


def test_stages_time_each_stage_once_and_skip_waits(monkeypatch):
    import serving.monitoring as mon
    clock = iter([0.0, 0.010, 0.500, 0.530, 0.540, 0.541])
    monkeypatch.setattr(mon.time, "perf_counter", lambda: next(clock))
    st = Stages()            # 0.000
    st.mark("decode")        # 0.010: 10 ms
    st.skip()                # 0.500: a 490 ms wait counts for no stage
    st.mark("decode")        # 0.530: +30 ms
    st.mark("call")          # 0.540: 10 ms
    st.mark("encode")        # 0.541: 1 ms
    assert {k: round(v * 1000, 6) for k, v in st.seconds.items()} == {
        "decode": 40.0, "call": 10.0, "encode": 1.0}
    m = Metrics("seminar")
    m.record_stages("grpc", st)
    fam = {f.name: f for f in text_string_to_metric_families(m.render().decode())}
    sums = {s.labels["stage"]: s.value for s in fam["seminar_serving_stage_ms"].samples
            if s.name.endswith("_sum")}
    assert {k: round(v, 6) for k, v in sums.items()} == {"decode": 40.0, "call": 10.0,
                                                         "encode": 1.0}
