"""POST /fhir/Observation/$interpret: official examples, codes, age and sex, sent ranges, refusals.

Every answer is validated with fhir.resources R4B models, and every interpretation and range-meaning
code is checked against the code-system excerpts in tests/fhir/terminology/ (helpers.validate).
"""

from __future__ import annotations

import json

import pytest

from labinterp.fhirio import codes
from labinterp.render import v1 as render_v1
from tests.fhir.helpers import (
    INTERPRET,
    bundle,
    code_system,
    example,
    flag,
    notes,
    observation,
    observations,
    outcome_after,
    outcomes,
    patient,
    post,
    validate,
)


def answer(client, body, content_type="application/fhir+json"):
    response = post(client, body, content_type)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "application/fhir+json"
    body = response.get_json()
    validate(body)
    assert body["resourceType"] == "Bundle" and body["type"] == "collection"
    return body


# ------------------------------------------------------------------ code tables
def test_interpretation_table_matches_the_code_system():
    url, concepts = code_system("v3-ObservationInterpretation")
    assert url == codes.INTERPRETATION_SYSTEM
    assert set(codes.INTERPRETATION) == {"LL", "L", "N", "H", "HH"}
    for flag_, (code, display) in codes.INTERPRETATION.items():
        assert code == flag_ and concepts[code] == display


def test_range_meaning_table_matches_the_code_system():
    url, concepts = code_system("referencerange-meaning")
    assert url == codes.RANGE_MEANING_SYSTEM
    assert {k: v for k, v in codes.RANGE_MEANING.items()} == {"normal": ("normal", concepts["normal"])}


def test_the_terminology_check_catches_a_made_up_code():
    """The check in helpers.validate fails on a code R4B models accept."""
    bad = observation("2823-3", 4.0, "mmol/L")
    bad["interpretation"] = [{"coding": [{"system": codes.INTERPRETATION_SYSTEM, "code": "LOWISH",
                                          "display": "Lowish"}]}]
    bad["note"] = [{"authorString": "labinterp", "text": "x"}]
    with pytest.raises(AssertionError):
        validate(bad)
    wrong_display = observation("2823-3", 4.0, "mmol/L")
    wrong_display["interpretation"] = [{"coding": [{"system": codes.INTERPRETATION_SYSTEM, "code": "HH",
                                                    "display": "Panic high"}]}]
    wrong_display["note"] = [{"authorString": "labinterp", "text": "x"}]
    with pytest.raises(AssertionError):
        validate(wrong_display)


# ------------------------------------------------------------- official examples
def test_us_core_serum_potassium_is_classified_against_its_own_range(client):
    sent = example("us-core-Observation-serum-potassium.json")
    body = answer(client, sent)
    [obs] = observations(body)
    assert flag(obs) == "N"  # 5.4 within the laboratory's 3.5-5.5
    assert obs["referenceRange"] == sent["referenceRange"]  # the laboratory's range kept, none added
    assert any("sent with the Observation" in n for n in notes(obs))
    # the Observation as sent: every element it had is still there, unchanged
    for key, value in sent.items():
        assert obs[key] == value


def test_us_core_serum_potassium_without_its_range_gets_the_service_interval(client):
    sent = example("us-core-Observation-serum-potassium.json")
    del sent["referenceRange"]
    [obs] = observations(answer(client, sent))
    assert flag(obs) == "H"  # 5.4 above the default adult 3.5-5.2
    [rr] = obs["referenceRange"]
    assert rr["low"]["value"] == 3.5 and rr["high"]["value"] == 5.2
    assert rr["low"]["code"] == "mmol/L" and rr["low"]["system"] == "http://unitsofmeasure.org"
    assert rr["type"]["coding"][0]["code"] == "normal"
    assert "source:" in rr["text"] and "RCPA" in rr["text"]
    assert any("serum" in n.lower() and "platelets" in n for n in notes(obs))  # serum potassium warning


def test_diagnosticreport_general_example_rebuilt(client):
    """Bundle 72ac8493-52ac-41bd-8d5d-7258c289b5ea, rebuilt: see tests/fhir/examples/README.md."""
    body = answer(client, example("diagnosticreport-examples-general-72ac8493-rebuilt.json"))
    by_id = {o["id"]: o for o in observations(body)}
    assert flag(by_id["o2"]) == "N"  # potassium 4.2 in 3.5-5.0
    assert flag(by_id["o17"]) == "N"  # calcium 2.38 in 2.25-2.65
    assert flag(by_id["o21"]) == "N"  # albumin 42 g/L
    # the published "corrected calcium" is coded 13959-2: returned untouched, with the reason
    assert flag(by_id["o18"]) is None and "note" not in by_id["o18"]
    outcome = outcome_after(body, "o18")
    assert outcome is not None and "13959-2" in outcome["issue"][0]["diagnostics"]
    # the service derives corrected calcium itself: 2.38 + 0.8 x (4.0 - 4.2) mg/dL, in mmol/L
    [derived] = [o for o in observations(body) if o["code"]["coding"][0]["code"] == "29265-6"]
    assert derived["valueQuantity"]["value"] == pytest.approx(2.34, abs=0.005)
    assert derived["valueQuantity"]["code"] == "mmol/L"
    assert [d["reference"] for d in derived["derivedFrom"]] == [
        "http://hl7.org/fhir/Observation/o17", "http://hl7.org/fhir/Observation/o21"]
    assert flag(derived) == "N"
    assert derived["method"]["text"].startswith("corrected calcium")


# --------------------------------------------------------------- interpretation
def test_critical_result_is_carried_by_hh_and_a_note(client):
    [obs] = observations(answer(client, observation("2823-3", 6.6, "mmol/L", ucum="mmol/L")))
    assert flag(obs) == "HH"
    texts = notes(obs)
    assert any("CRITICAL RESULT" in n and "Kost" in n for n in texts)
    assert any(n.startswith("CTCAE v5.0 Hyperkalemia: grade 3") for n in texts)
    # never a 'treatment' range: critical limits are not a referenceRange in R4
    assert all(rr["type"]["coding"][0]["code"] == "normal" for rr in obs["referenceRange"])


def test_low_magnesium_has_symptoms_with_sources_and_grade(client, engine):
    [obs] = observations(answer(client, observation("19123-9", 1.4, "mg/dL", ucum="mg/dL")))
    assert flag(obs) == "L"
    texts = notes(obs)
    symptom_notes = [n for n in texts if n.startswith("Symptoms associated with hypomagnesemia")]
    assert symptom_notes and all("(source: " in n for n in symptom_notes)
    # texts come from the engine's answer
    from labinterp.core import Panel, ResultInput

    v1 = render_v1.interpret(engine, Panel((ResultInput("19123-9", 1.4, "mg/dL"),)))["results"][0]
    for symptom in v1["symptoms"]:
        assert any(symptom["text"] in n and symptom["source"] in n for n in symptom_notes)
    # the range is added in the Observation's own unit (mg/dL), as the source states it
    [rr] = obs["referenceRange"]
    assert rr["low"]["code"] == "mg/dL" and rr["low"]["unit"] == "mg/dL"


def test_range_is_converted_into_the_observations_unit(client):
    # potassium interval is stated in mmol/L; an mEq/L result gets it in meq/L (valence 1: same numbers)
    [obs] = observations(answer(client, observation("2823-3", 4.0, "mEq/L")))
    assert flag(obs) == "N"
    [rr] = obs["referenceRange"]
    assert rr["low"]["code"] == "meq/L" and rr["low"]["unit"] == "mEq/L" and rr["low"]["value"] == 3.5
    # total calcium interval is stated in mg/dL: a mmol/L result gets it converted
    [ca] = observations(answer(client, observation("2000-8", 2.3, "mmol/L", ucum="mmol/L")))
    [rr] = ca["referenceRange"]
    assert rr["low"]["code"] == "mmol/L" and rr["low"]["value"] == pytest.approx(8.6 * 0.24951, abs=0.001)


def test_comparator_is_read(client):
    [low] = observations(answer(client, observation("2823-3", 2.0, "mmol/L", comparator="<")))
    assert flag(low) == "LL"  # the whole range <2.0 is beyond the critical low
    [below] = observations(answer(client, observation("2823-3", 3.0, "mmol/L", comparator="<")))
    assert flag(below) == "L"  # the whole range <3.0 is below the interval
    [unclassified] = observations(answer(client, observation("2823-3", 4.0, "mmol/L", comparator="<")))
    assert flag(unclassified) is None and "interpretation" not in unclassified
    assert any("off_scale" in n for n in notes(unclassified))


def test_age_at_collection_comes_from_the_patient(client):
    infant = bundle(patient(birth="2026-01-01", gender="male"),
                    observation("2823-3", 5.8, "mmol/L", effective="2026-02-15"))
    [obs] = observations(answer(client, infant))
    assert flag(obs) == "N"  # 45 days old: infant interval reaches 6.2 mmol/L
    [rr] = obs["referenceRange"]
    assert rr["age"]["low"]["code"] == "d" and rr["age"]["high"]["value"] == 180
    adult = bundle(patient(birth="1980-01-01"), observation("2823-3", 5.8, "mmol/L", effective="2026-02-15"))
    [obs] = observations(answer(client, adult))
    assert flag(obs) == "H"
    assert not any("adult_interval_assumed" in n for n in notes(obs))


def test_age_is_computed_at_collection_not_today(client):
    # born 2020-01-01, collected 2020-01-03: a 2-day-old (neonatal band) though years old today
    neonate = bundle(patient(birth="2020-01-01"), observation("2823-3", 5.5, "mmol/L", effective="2020-01-03"))
    [obs] = observations(answer(client, neonate))
    assert flag(obs) == "N"  # 0-7 d interval 3.2-5.7
    assert obs["referenceRange"][0]["high"]["value"] == 5.7


def test_imprecise_birth_date_assumes_the_adult_interval_and_says_so(client):
    body = answer(client, bundle(patient(birth="1980"), observation("2823-3", 4.0, "mmol/L")))
    out = outcome_after(body, "obs-1")
    assert out is not None and "not given to the day" in out["issue"][0]["diagnostics"]
    assert any("adult_interval_assumed" in n for n in notes(observations(body)[0]))


def test_effective_before_birth_is_not_interpreted(client):
    body = answer(client, bundle(patient(birth="2030-01-01"), observation("2823-3", 4.0, "mmol/L")))
    [obs] = observations(body)
    assert flag(obs) is None
    assert "before the Patient's birthDate" in outcome_after(body, "obs-1")["issue"][0]["diagnostics"]


def test_patterns_reach_the_observations_involved(client):
    body = answer(client, bundle(patient(), observation("19123-9", 1.2, "mg/dL", id="mg"),
                                 observation("2823-3", 3.0, "mmol/L", id="k")))
    by_id = {o["id"]: o for o in observations(body)}
    for key in ("mg", "k"):
        assert any("Low magnesium with low potassium" in n for n in notes(by_id[key]))


def test_groups_are_per_subject_and_time(client):
    """Calcium and albumin of different days are not combined into a corrected calcium."""
    same = bundle(observation("17861-6", 8.0, "mg/dL", id="ca"), observation("1751-7", 3.0, "g/dL", id="alb"))
    assert any(o["code"]["coding"][0]["code"] == "29265-6" for o in observations(answer(client, same)))
    apart = bundle(observation("17861-6", 8.0, "mg/dL", id="ca"),
                   observation("1751-7", 3.0, "g/dL", id="alb", effective="2026-01-20"))
    assert not any(o["code"]["coding"][0]["code"] == "29265-6" for o in observations(answer(client, apart)))


def test_specimen_from_the_reference_display(client):
    # whole-blood ionized calcium LOINC with a serum specimen display: the engine's conflict, reported
    body = answer(client, observation("1994-3", 1.1, "mmol/L", specimen="Serum specimen"))
    assert flag(observations(body)[0]) is None
    assert "measured in whole_blood" in outcome_after(body, "obs-1")["issue"][0]["diagnostics"]
    body = answer(client, observation("1994-3", 1.1, "mmol/L", specimen="Whole blood"))
    assert flag(observations(body)[0]) is not None


# ------------------------------------------------- Observations not interpreted
@pytest.mark.parametrize("status", ["entered-in-error", "cancelled"])
def test_excluded_statuses_are_returned_untouched(client, status):
    sent = observation("2823-3", 7.5, "mmol/L", status=status)
    body = answer(client, sent)
    assert observations(body)[0] == sent
    assert status in outcome_after(body, "obs-1")["issue"][0]["diagnostics"]


def test_final_status_is_interpreted(client):
    assert flag(observations(answer(client, observation("2823-3", 7.5, "mmol/L")))[0]) == "HH"


@pytest.mark.parametrize("change, expected", [
    (lambda o: o["code"]["coding"][0].update(code="2951-2"), "2951-2"),
    (lambda o: o.pop("valueQuantity"), "no value"),
    (lambda o: (o.pop("valueQuantity"), o.update(valueString="haemolysed")), "String"),
    (lambda o: o["valueQuantity"].update(unit="furlongs"), "'furlongs'"),
    (lambda o: o["valueQuantity"].update(unit="mmol/L"), "cannot be converted"),
    (lambda o: o["valueQuantity"].update(value=-1), "must not be negative"),
    (lambda o: o["code"]["coding"][0].update(code="29265-6"), "derived by this service"),
])
def test_uninterpretable_observations_come_back_untouched_with_a_reason(client, change, expected):
    sent = observation("1751-7", 40, "g/L") if "cannot" in expected else observation("2823-3", 4.0, "mmol/L")
    change(sent)
    body = answer(client, bundle(sent, observation("2823-3", 4.0, "mmol/L", id="good")))
    by_id = {o["id"]: o for o in observations(body)}
    assert by_id["obs-1"] == sent
    outcome = outcome_after(body, "obs-1")
    assert outcome is not None and expected in outcome["issue"][0]["diagnostics"], outcome
    assert outcome["issue"][0]["expression"][0].startswith("Bundle.entry[0].resource.")
    assert flag(by_id["good"]) == "N" and outcome_after(body, "good") is None


def test_non_observation_entries_are_counted_not_returned(client):
    report = {"resourceType": "DiagnosticReport", "status": "final", "code": {"text": "panel"}}
    body = answer(client, bundle(report, observation("2823-3", 4.0, "mmol/L")))
    assert [e["resource"]["resourceType"] for e in body["entry"]].count("DiagnosticReport") == 0
    assert any("1 DiagnosticReport entry" in i["diagnostics"] for o in outcomes(body) for i in o["issue"])


@pytest.mark.parametrize("bundle_type", ["collection", "batch", "searchset", "transaction"])
def test_accepted_bundle_types(client, bundle_type):
    body = answer(client, bundle(observation("2823-3", 3.0, "mmol/L"), type=bundle_type))
    assert flag(observations(body)[0]) == "L"


def test_application_json_is_accepted_too(client):
    assert flag(observations(answer(client, observation("2823-3", 3.0, "mmol/L"), "application/json"))[0]) == "L"


# ------------------------------------------------------------- not FHIR at all
def _refused(response, status):
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/fhir+json"
    body = response.get_json()
    validate(body)
    assert body["resourceType"] == "OperationOutcome" and body["issue"][0]["severity"] == "error"
    return body


@pytest.mark.parametrize("raw, status, words", [
    ("{not json", 400, "not valid JSON"),
    ("[1, 2]", 422, "Not a FHIR resource"),
    ('{"hello": "world"}', 422, "Not a FHIR resource"),
    ('{"resourceType": "Patient", "id": "x"}', 422, "'Patient' is not accepted"),
    ('{"resourceType": "Bundle", "type": "document", "entry": []}', 422, "'document' is not accepted"),
    ('{"resourceType": "Observation", "status": "final"}', 422, "not valid FHIR R4"),
    ('{"resourceType": "Observation", "status": "final", "code": {"text": "K"}, "colour": "red"}', 422,
     "not valid FHIR R4"),
    ("[" * 100 + "]" * 100, 400, "nested"),
])
def test_not_fhir_gets_a_4xx_operation_outcome(client, raw, status, words):
    body = _refused(post(client, raw), status)
    assert words in body["issue"][0]["diagnostics"]


def test_invalid_fhir_names_the_element(client):
    body = _refused(post(client, '{"resourceType": "Observation", "status": "final", "code": {"text": "K"}, '
                                 '"colour": "red"}'), 422)
    assert "Observation.colour" in [e for i in body["issue"] for e in i.get("expression", [])]


@pytest.mark.parametrize("raw, element", [
    ('{"resourceType": "Observation", "status": "final", "code": {"text": "K"}, "referenceRange": 7}',
     "Observation.referenceRange"),
    ('{"resourceType": "Bundle", "type": "collection", "entry": 7}', "Bundle.entry"),
])
def test_an_array_element_sent_as_a_number_is_refused_by_name(client, raw, element):
    body = _refused(post(client, raw), 422)
    assert any(e.startswith(element) for i in body["issue"] for e in i.get("expression", [])), body


def test_wrong_media_type_is_415(client):
    _refused(post(client, json.dumps(observation("2823-3", 4.0, "mmol/L")), "text/plain"), 415)


def test_errors_raised_by_flask_on_fhir_paths_are_operation_outcomes(client):
    _refused(client.get("/fhir/Nothing/here"), 404)
    _refused(client.get(INTERPRET), 405)
    assert "POST" in client.get(INTERPRET).headers["Allow"]


def test_too_many_observations(app, client):
    limit = app.extensions["labinterp"].settings["MAX_RESULTS"]
    many = bundle(*[observation("2823-3", 4.0, "mmol/L", id=f"o{i}") for i in range(limit + 1)])
    _refused(post(client, many), 422)
    answer(client, bundle(*[observation("2823-3", 4.0, "mmol/L", id=f"o{i}") for i in range(3)]))


# --------------------------------------------------------------------- metadata
def test_capability_statement(client):
    response = client.get("/fhir/metadata")
    assert response.status_code == 200 and response.mimetype == "application/fhir+json"
    body = response.get_json()
    validate(body)
    operation = body["rest"][0]["resource"][0]["operation"][0]
    assert body["fhirVersion"] == "4.0.1" and operation["name"] == "interpret"
    definition = client.get(operation["definition"].replace("http://localhost", ""))
    assert definition.status_code == 200
    validate(definition.get_json())
    assert definition.get_json()["code"] == "interpret"


def test_body_too_large_is_an_operation_outcome():
    from labinterp.app import create_app

    small = create_app({"TESTING": True, "FHIR_MAX_BODY_BYTES": 300}).test_client()
    big = observation("2823-3", 4.0, "mmol/L")
    big["code"]["text"] = "x" * 400
    _refused(post(small, big), 413)
    assert post(small, observation("2823-3", 4.0, "mmol/L")).status_code == 200


def test_the_fhir_door_has_its_own_body_limit():
    """issue 13: a whole patient Bundle (1-4 MB) passes the FHIR door while the v1 limit stays."""
    from labinterp.app import create_app

    app = create_app({"TESTING": True, "MAX_BODY_BYTES": 300}).test_client()
    big = observation("2823-3", 4.0, "mmol/L")
    big["code"]["text"] = "x" * 400
    assert post(app, big).status_code == 200
    v1 = app.post("/v1/interpret", json={"results": [{"analyte": "potassium", "value": 4.0, "unit": "mmol/L",
                                                      "id": "x" * 400}]})
    assert v1.status_code == 413


def test_a_sent_interpretation_is_kept_and_ours_appended(client):
    sent = observation("2823-3", 5.6, "mmol/L")
    theirs = {"coding": [{"system": codes.INTERPRETATION_SYSTEM, "code": "N", "display": "Normal"}]}
    sent["interpretation"] = [theirs]
    [obs] = observations(answer(client, sent))
    assert obs["interpretation"][0] == theirs
    assert obs["interpretation"][1]["coding"][0]["code"] == "H"
    assert len(obs["interpretation"]) == 2
    # issue 13: a reader tells labinterp's from the sender's by the extension on ours alone
    marked = [c for c in obs["interpretation"]
              if {"url": codes.INTERPRETATION_SOURCE_EXTENSION, "valueString": "labinterp"} in c.get("extension", [])]
    assert marked == [obs["interpretation"][1]]
