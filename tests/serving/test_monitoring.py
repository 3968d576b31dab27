"""The server's Prometheus metrics: names, labels and histogram through prometheus_client."""
from prometheus_client.parser import text_string_to_metric_families

from serving.monitoring import Metrics


def test_metrics_exposition_parses_with_the_expected_series():
    m = Metrics("seminar")
    m.record("grpc", "Predict", "OK", 0.004)
    m.record("rest", "predict", "INVALID_ARGUMENT", 0.030)
    m.record("grpc", "Predict", "OK", 3.0)
    families = {f.name: f for f in text_string_to_metric_families(m.render().decode())}
    assert set(families) == {"seminar_serving_requests", "seminar_serving_errors",
                             "seminar_serving_latency_ms"}
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
