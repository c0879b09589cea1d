"""Prometheus metrics (counts by route, analyte, flag, critical) and readiness."""

from __future__ import annotations

import dataclasses
import re

import pytest
from prometheus_client.parser import text_string_to_metric_families

from labinterp.core import Engine
from labinterp.ops import metrics, readiness
from tests.ops.helpers import PANEL, make_app


def sample(client, name: str, **labels: str) -> float:  # type: ignore[no-untyped-def]
    text = client.get("/metrics").get_data(as_text=True)
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return 0.0


def test_interpretations_are_counted_by_analyte_and_flag(client):
    before = sample(client, "labinterp_interpretations_total", analyte="potassium", flag="HH")
    critical_before = sample(client, "labinterp_critical_results_total", analyte="potassium")
    normal_before = sample(client, "labinterp_interpretations_total", analyte="calcium", flag="N")
    calcium_critical_before = sample(client, "labinterp_critical_results_total", analyte="calcium")
    critical_panel = {"results": [{"analyte": "potassium", "value": 7.0, "unit": "mmol/L"}], "specimen": "serum"}
    assert client.post("/v1/interpret", json=critical_panel).get_json()["results"][0]["flag"] == "HH"
    assert sample(client, "labinterp_interpretations_total", analyte="potassium", flag="HH") == before + 1
    assert sample(client, "labinterp_critical_results_total", analyte="potassium") == critical_before + 1
    client.post("/v1/interpret", json=PANEL)  # calcium 9.1 mg/dL reads normal
    assert sample(client, "labinterp_interpretations_total", analyte="calcium", flag="N") == normal_before + 1
    # A normal result is not a critical one.
    assert sample(client, "labinterp_critical_results_total", analyte="calcium") == calcium_critical_before


def test_requests_are_counted_by_route_template_and_status(client):
    before = sample(client, "labinterp_http_requests_total", route="/v1/interpret", method="POST", status="422")
    client.post("/v1/interpret", json={"results": [{"analyte": "potassium", "unit": "mmol/L"}]})
    assert sample(client, "labinterp_http_requests_total", route="/v1/interpret", method="POST",
                  status="422") == before + 1
    unmatched = sample(client, "labinterp_http_requests_total", route="unmatched", method="GET", status="404")
    client.get("/no/such/path/12345")
    assert sample(client, "labinterp_http_requests_total", route="unmatched", method="GET",
                  status="404") == unmatched + 1
    assert "12345" not in client.get("/metrics").get_data(as_text=True)


def test_latency_histogram_is_exposed(client):
    client.get("/healthz")
    assert sample(client, "labinterp_http_request_duration_seconds_count", route="/healthz", method="GET") >= 1
    text = client.get("/metrics").get_data(as_text=True)
    assert re.search(r'labinterp_http_request_duration_seconds_bucket\{le="0.005",method="GET",route="/healthz"\}',
                     text)


def test_metrics_only_for_allowed_networks():
    app = make_app(METRICS_ALLOW="10.20.0.0/16")
    client = app.test_client()
    refused = client.get("/metrics")  # the test client comes from 127.0.0.1
    assert refused.status_code == 403 and refused.mimetype == "application/problem+json"
    allowed = client.get("/metrics", environ_base={"REMOTE_ADDR": "10.20.3.4"})
    assert allowed.status_code == 200 and allowed.mimetype == "text/plain"


def test_default_allow_list_is_loopback_only(client):
    assert client.get("/metrics").status_code == 200
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "192.168.1.5"}).status_code == 403
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "::1"}).status_code == 200


def test_network_parsing():
    networks = metrics.parse_networks("127.0.0.1/32, 10.0.0.0/8,,::1/128")
    assert metrics.client_allowed("10.9.8.7", networks)
    assert metrics.client_allowed("::ffff:127.0.0.1", networks)
    assert not metrics.client_allowed("11.0.0.1", networks)
    assert not metrics.client_allowed(None, networks) and not metrics.client_allowed("not-an-ip", networks)
    with pytest.raises(ValueError, match="10.0.0.300"):
        metrics.parse_networks("10.0.0.300/8")


def test_ready_when_data_answers_its_self_check(client):
    body = client.get("/readyz").get_json()
    assert body["status"] == "ready" and body["data_version"]
    assert client.get("/healthz").get_json() == {"status": "ok"}


def test_self_check_names_what_failed(knowledge):
    class WrongEngine(Engine):
        def interpret(self, panel):  # type: ignore[no-untyped-def]
            answer = super().interpret(panel)
            first = answer.results[0]
            wrong = dataclasses.replace(first, verdict=dataclasses.replace(first.verdict, classification="hyper"))
            return dataclasses.replace(answer, results=(wrong, *answer.results[1:]))

    class BrokenEngine(Engine):
        def interpret(self, panel):  # type: ignore[no-untyped-def]
            raise KeyError("x")

    assert readiness.check(Engine(knowledge)).ready
    wrong = readiness.check(WrongEngine(knowledge))
    assert not wrong.ready and "did not read normal for" in (wrong.reason or "")
    broken = readiness.check(BrokenEngine(knowledge))
    assert not broken.ready and "KeyError" in (broken.reason or "")


def test_self_check_covers_every_analyte_with_an_adult_interval(knowledge):
    panel = readiness.self_check_panel(knowledge)
    assert {r.analyte for r in panel.results} == {
        a for a, rules in knowledge.intervals.items() if any(r.adult_default for r in rules)}


def test_not_ready_answers_503():
    app = make_app()
    ops = app.extensions["labinterp_ops"]
    app.extensions["labinterp_ops"] = dataclasses.replace(
        ops, readiness=readiness.Readiness(False, "v", (), "default data: self-check raised KeyError"))
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["status"] == "not-ready" and "KeyError" in response.get_json()["reason"]


def test_csv_interpretations_are_counted_too(client):
    before = sample(client, "labinterp_interpretations_total", analyte="potassium", flag="HH")
    critical_before = sample(client, "labinterp_critical_results_total", analyte="potassium")
    derived_before = sample(client, "labinterp_interpretations_total", analyte="corrected_calcium", flag="L")
    body = ("specimen_id,analyte,value,unit,age_years\nA,potassium,7.0,mmol/L,50\nB,potassium,7.1,mmol/L,50\n"
            "C,calcium,7.9,mg/dL,50\nC,albumin,4.0,g/dL,50\nD,potassium,HEMOLYZED,mmol/L,50\n")
    response = client.post("/v1/interpret/csv", data=body, content_type="text/csv")
    assert response.status_code == 200 and response.get_data(as_text=True).count("\r\n") == 7
    assert sample(client, "labinterp_interpretations_total", analyte="potassium", flag="HH") == before + 2
    assert sample(client, "labinterp_critical_results_total", analyte="potassium") == critical_before + 2
    derived_after = sample(client, "labinterp_interpretations_total", analyte="corrected_calcium", flag="L")
    assert derived_after == derived_before + 1


def test_batch_interpretations_are_counted_too(client):
    before = sample(client, "labinterp_interpretations_total", analyte="magnesium", flag="L")
    panels = {"panels": [dict(PANEL, id="one"), dict(PANEL, id="two")]}  # magnesium 0.62 mmol/L reads low
    response = client.post("/v1/interpret/batch", json=panels)
    assert response.status_code == 200
    assert [p["result"]["results"][1]["flag"] for p in response.get_json()["panels"]] == ["L", "L"]
    assert sample(client, "labinterp_interpretations_total", analyte="magnesium", flag="L") == before + 2


def test_made_up_methods_share_one_label_set():
    before = len(metrics._children)
    for i in range(50):
        metrics.observe_request("unmatched", f"BREW{i}", 405, 0.001)
    assert len(metrics._children) <= before + 1  # all counted as OTHER, one entry however many are made up
