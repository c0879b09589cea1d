"""CDS Hooks 2.0: discovery, cards, prefetch handling, CORS, request checks (unconfigured JWT)."""

from __future__ import annotations

import socket

import pytest

from labinterp.render import v1 as render_v1
from tests.cdshooks.helpers import SERVICE, check_response, obs, patient, request, searchset


def call(client, body, **kwargs):
    return client.post(SERVICE, json=body, **kwargs)


def cards_for(client, *observations, **kwargs):
    response = call(client, request(*observations, **kwargs))
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    return check_response(response.get_json())


# -------------------------------------------------------------------- discovery
def test_discovery_lists_the_patient_view_service(client, knowledge):
    response = client.get("/cds-services")
    assert response.status_code == 200 and response.mimetype == "application/json"
    [service] = response.get_json()["services"]
    assert set(service) >= {"hook", "id", "title", "description", "prefetch"}
    assert service["hook"] == "patient-view" and SERVICE.endswith(service["id"])
    assert service["prefetch"]["patient"] == "Patient/{{context.patientId}}"
    labs = service["prefetch"]["labs"]
    assert labs.startswith("Observation?patient={{context.patientId}}&code=")
    for code, entry in knowledge.loinc.items():
        derived = knowledge.analytes[entry.analyte].derived
        assert (f"http://loinc.org|{code}" in labs) is not derived
    for analyte in ("calcium", "ionized_calcium", "magnesium", "potassium", "albumin"):
        assert any(f"|{c.code}" in labs for c in knowledge.analytes[analyte].loinc)


# ------------------------------------------------------------------------ cards
@pytest.mark.parametrize("value, indicator, words", [
    (2.0, "critical", "Critical low potassium"),
    (3.0, "warning", "Low potassium"),
    (5.6, "warning", "High potassium"),
    (6.5, "critical", "Critical high potassium"),
])
def test_indicator_follows_the_flag(client, value, indicator, words):
    [card] = cards_for(client, obs("2823-3", value, "mmol/L", id="k"))
    assert card["indicator"] == indicator and card["summary"].startswith(words)
    assert f"{value:g} mmol/L" in card["summary"]


def test_no_card_for_a_normal_result(client):
    assert cards_for(client, obs("2823-3", 4.2, "mmol/L", id="k")) == []
    assert len(cards_for(client, obs("2823-3", 5.6, "mmol/L", id="k"))) == 1


def test_detail_has_value_interval_grade_symptoms_and_sources(client, engine):
    [card] = cards_for(client, obs("19123-9", 1.1, "mg/dL", id="mg"))
    from labinterp.core import Panel, Patient, ResultInput

    v1 = render_v1.interpret(engine, Panel((ResultInput("19123-9", 1.1, "mg/dL"),),
                                Patient(age_days=(2026 - 1970) * 365.25, sex="female")))["results"][0]
    detail = card["detail"]
    assert "1.1 mg/dL" in detail
    ri = v1["reference_interval"]
    assert f"{ri['stated']['low']:g} to {ri['stated']['high']:g} {ri['stated']['unit']}" in detail
    assert ri["source"] in detail
    assert f"grade {v1['ctcae']['grade']}" in detail and v1["ctcae"]["source"] in detail
    assert v1["symptoms"]
    for symptom in v1["symptoms"]:
        assert symptom["text"] in detail and symptom["source"] in detail
    assert card["indicator"] == ("critical" if v1["flag"] in ("LL", "HH") else "warning")
    assert card["source"]["url"].startswith("https://")


def test_combined_pattern_gets_its_own_card(client):
    cards = cards_for(client, obs("19123-9", 1.3, "mg/dL", id="mg"), obs("2823-3", 3.0, "mmol/L", id="k"))
    pattern = [c for c in cards if c["summary"] == "Low magnesium with low potassium"]
    assert len(pattern) == 1 and "Source:" in pattern[0]["detail"]
    cards = cards_for(client, obs("19123-9", 2.0, "mg/dL", id="mg"), obs("2823-3", 3.0, "mmol/L", id="k"))
    assert not any("magnesium with" in c["summary"] for c in cards)


def test_implausible_value_asks_to_verify_the_specimen(client):
    [card] = cards_for(client, obs("2823-3", 25, "mmol/L", id="k"))
    assert card["indicator"] == "warning" and "verify the specimen" in card["summary"]
    assert "Verify the specimen" in card["detail"]


def test_the_most_recent_result_is_the_one_shown(client):
    old_low = obs("2823-3", 2.9, "mmol/L", id="old", when="2026-02-01T08:00:00Z")
    new_ok = obs("2823-3", 4.1, "mmol/L", id="new", when="2026-03-01T08:00:00Z")
    assert cards_for(client, old_low, new_ok) == []
    new_low = obs("2823-3", 2.9, "mmol/L", id="new", when="2026-03-01T08:00:00Z")
    old_ok = obs("2823-3", 4.1, "mmol/L", id="old", when="2026-02-01T08:00:00Z")
    assert len(cards_for(client, old_ok, new_low)) == 1


def test_corrected_calcium_card_from_calcium_and_albumin(client):
    cards = cards_for(client, obs("17861-6", 7.6, "mg/dL", id="ca"), obs("1751-7", 2.0, "g/dL", id="alb"))
    summaries = [c["summary"] for c in cards]
    # 7.6 + 0.8 x (4.0 - 2.0) = 9.2 mg/dL: normal corrected calcium, so no card for it
    assert not any("corrected" in s.lower() for s in summaries)
    assert any(s.startswith("Low calcium, total") for s in summaries)
    cards = cards_for(client, obs("17861-6", 6.8, "mg/dL", id="ca"), obs("1751-7", 4.0, "g/dL", id="alb"))
    assert any(c["summary"].startswith("Low calcium corrected for albumin") for c in cards)


def test_age_and_sex_come_from_the_prefetched_patient(client):
    infant = {"patient": patient(birth="2026-01-15", gender="male"),
              "labs": searchset(obs("2823-3", 5.8, "mmol/L", id="k", when="2026-03-01T08:00:00Z"))}
    assert cards_for(client, prefetch=infant) == []  # 45 days old: normal for the age
    adult = {"patient": patient(birth="1980-01-15"), "labs": infant["labs"]}
    assert len(cards_for(client, prefetch=adult)) == 1


def test_another_patients_results_are_not_shown(client):
    other = obs("2823-3", 2.0, "mmol/L", id="k", patient="someone-else")
    assert cards_for(client, other) == []
    assert len(cards_for(client, obs("2823-3", 2.0, "mmol/L", id="k"))) == 1


@pytest.mark.parametrize("reference", ["Patient/p1", "urn:uuid:p1", "http://ehr.example/fhir/Patient/p1"])
def test_a_subject_in_any_reference_form_belongs_to_the_patient(client, reference):
    """issue 13: Synthea and Bundle writers refer to the Patient as urn:uuid:<id>; that gave no card."""
    result = obs("2823-3", 2.0, "mmol/L", id="k")
    result["subject"] = {"reference": reference}
    assert len(cards_for(client, result)) == 1


@pytest.mark.parametrize("reference", ["urn:uuid:p12", "Patient/p12", "OtherPatient/p1", "urn:uuid:x-p1"])
def test_a_subject_naming_another_patient_gives_no_card(client, reference):
    result = obs("2823-3", 2.0, "mmol/L", id="k")
    result["subject"] = {"reference": reference}
    assert cards_for(client, result) == []


def test_results_that_cannot_be_interpreted_are_listed(client):
    cards = cards_for(client, obs("2823-3", 4.0, "furlongs", id="k"))
    assert [c["indicator"] for c in cards] == ["info"]
    assert "could not be interpreted" in cards[0]["summary"] and "furlongs" in cards[0]["detail"]


# ---------------------------------------------------------------- prefetch
@pytest.mark.parametrize("prefetch", [
    {"patient": patient(), "labs": searchset()},
    {"patient": patient(), "labs": None},
    {"patient": None, "labs": {"resourceType": "OperationOutcome",
                               "issue": [{"severity": "error", "code": "not-found"}]}},
])
def test_empty_or_failed_prefetch_means_no_data(client, prefetch):
    assert cards_for(client, prefetch=prefetch) == []


@pytest.mark.parametrize("prefetch", [None, {}, {"patient": patient()}, {"labs": searchset()}])
def test_absent_prefetch_is_412_and_the_fhir_server_is_never_called(client, monkeypatch, prefetch):
    def no_network(*args, **kwargs):
        raise AssertionError("the service tried to open a connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    body = request()
    if prefetch is None:
        del body["prefetch"]
    else:
        body["prefetch"] = prefetch
    response = call(client, body)
    assert response.status_code == 412 and response.mimetype == "application/problem+json"


@pytest.mark.parametrize("change, pointer", [
    (lambda b: b.update(hook="order-sign"), "/hook"),
    (lambda b: b.update(hookInstance="not-a-uuid"), "/hookInstance"),
    (lambda b: b.pop("context"), "/context"),
    (lambda b: b["context"].pop("patientId"), "/context/patientId"),
    (lambda b: b.update(prefetch=[]), "/prefetch"),
    (lambda b: b["prefetch"].update(labs={"resourceType": "Observation"}), "/prefetch"),
    (lambda b: b["prefetch"].update(patient={"resourceType": "Patient", "id": "p1", "gender": "F"}), "/prefetch"),
    (lambda b: b["prefetch"].update(patient=patient(id="p2")), "/prefetch/patient/id"),
])
def test_bad_requests_are_400_naming_the_field(client, change, pointer):
    body = request(obs("2823-3", 4.0, "mmol/L", id="k"))
    change(body)
    response = call(client, body)
    assert response.status_code == 400, response.get_data(as_text=True)
    assert response.get_json()["errors"][0]["pointer"] == pointer


def test_not_json_and_unknown_service(client):
    assert client.post(SERVICE, data="{", content_type="application/json").status_code == 400
    assert client.post(SERVICE, data="x", content_type="text/plain").status_code == 415
    response = client.post("/cds-services/nothing-here", json=request())
    assert response.status_code == 404 and response.mimetype == "application/problem+json"


# ---------------------------------------------------------------------- CORS
def test_cors_headers_on_every_cds_answer(client):
    for response in (client.get("/cds-services"), call(client, request()),
                     client.post("/cds-services/nothing-here", json=request()),
                     client.options(SERVICE, headers={"Origin": "https://sandbox.cds-hooks.org",
                                                      "Access-Control-Request-Method": "POST",
                                                      "Access-Control-Request-Headers": "authorization,content-type"})):
        assert response.headers["Access-Control-Allow-Origin"] == "*"
        assert "authorization" in response.headers["Access-Control-Allow-Headers"].lower()
        assert "POST" in response.headers["Access-Control-Allow-Methods"]
    assert "Access-Control-Allow-Origin" not in client.get("/healthz").headers


def test_entered_in_error_results_get_no_card(client):
    wrong = obs("2823-3", 7.5, "mmol/L", id="k")
    wrong["status"] = "entered-in-error"
    assert cards_for(client, wrong) == []
    wrong["status"] = "final"
    assert cards_for(client, wrong)[0]["indicator"] == "critical"
