"""Issue 13: third-party artifacts (tests/feeds/README.md says where each comes from) replayed through every door."""

from __future__ import annotations

import copy
import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest

from labinterp.core import Engine, Panel, ResultInput, SentInterval, load_knowledge
from labinterp.core.offscale import split_comparator
from labinterp.fhirio import codes as fhir_codes

FEEDS = Path(__file__).resolve().parent
LABS = FEEDS.parents[1] / "examples" / "labs"
HL7 = "application/hl7-v2"
FHIR = "application/fhir+json"


@pytest.fixture(scope="module")
def feed_app():  # type: ignore[no-untyped-def]
    from labinterp.app import create_app

    return create_app({"TESTING": True, "LABS_DIR": str(LABS)})


@pytest.fixture()
def feed_client(feed_app):  # type: ignore[no-untyped-def]
    return feed_app.test_client()


@pytest.fixture(scope="module")
def lab_engine() -> Engine:
    return Engine(load_knowledge(None, LABS))


def _fhir(name: str) -> dict[str, Any]:
    return json.loads((FEEDS / "fhir" / name).read_text())  # type: ignore[no-any-return]


def _interpret_fhir(client, body: dict[str, Any], query: str = "") -> dict[str, Any]:  # type: ignore[no-untyped-def]
    response = client.post("/fhir/Observation/$interpret" + query, data=json.dumps(body), content_type=FHIR)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()  # type: ignore[no-any-return]


def _observations(bundle: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["resource"]["id"]: e["resource"] for e in bundle["entry"]
            if e["resource"]["resourceType"] == "Observation" and "id" in e["resource"]}


def _ours(resource: dict[str, Any]) -> list[str]:
    """labinterp's interpretation codes (told from the sender's by the extension)."""
    return [c["coding"][0]["code"] for c in resource.get("interpretation", [])
            if any(x.get("url") == fhir_codes.INTERPRETATION_SOURCE_EXTENSION for x in c.get("extension", []))]


def _outcome_texts(bundle: dict[str, Any]) -> list[str]:
    return [i["diagnostics"] for e in bundle["entry"] if e["resource"]["resourceType"] == "OperationOutcome"
            for i in e["resource"]["issue"]]


def _notes(resource: dict[str, Any]) -> str:
    return " ".join(n["text"] for n in resource.get("note", []))


# ------------------------------------------------------------------ LOINC coverage (Synthea)
def test_synthea_blood_codes_are_read_and_explained(feed_client) -> None:  # type: ignore[no-untyped-def]
    """49765-1 and 6298-4 are "in Blood": read as whole blood, which has no sourced interval, so the
    answer is indeterminate with that reason; before issue 13 both were "no code the service interprets"."""
    bundle = _interpret_fhir(feed_client, _fhir("synthea-shaped-patient-bundle.json"))
    obs = _observations(bundle)
    calcium, potassium = obs["5c0bb2b6-3b0a-4c57-9b7e-2f1b0c6c1a01"], obs["5c0bb2b6-3b0a-4c57-9b7e-2f1b0c6c1a02"]
    for resource, analyte in ((calcium, "calcium"), (potassium, "potassium")):
        assert _ours(resource) == []  # no flag without an interval
        assert f"no interval for {analyte} in whole blood" in _notes(resource)
    refused = [t for t in _outcome_texts(bundle) if "no code this service interprets" in t]
    assert len(refused) == 1 and "85354-9" in refused[0]  # only the blood pressure panel
    # the vital-sign Observation passes through untouched, not counted against the limit
    assert obs["9c19bd9e-9830-447e-0e1a-55d356106dfd"]["code"]["text"] == "Blood Pressure"


def test_the_answer_says_which_code_was_read_and_what_it_meant(feed_client) -> None:  # type: ignore[no-untyped-def]
    body = feed_client.post("/v1/interpret", json={"patient": {"age_years": 59}, "results": [
        {"analyte": "6298-4", "value": 4.1, "unit": "mmol/L"},
        {"analyte": "2823-3", "value": 6.1, "unit": "mmol/L"},
        {"analyte": "potassium", "value": 4.1, "unit": "mmol/L"}]}).get_json()
    blood, serum, named = body["results"]
    assert blood["basis"]["code"] == {
        "system": None, "code": "6298-4", "defined_by": "LOINC (reference_ranges/analytes.toml)",
        "display": "Potassium [Moles/volume] in Blood",
        "taken_as": {"analyte": "potassium", "property": "molar", "specimen": "whole_blood"}}
    assert blood["classification"] == "indeterminate" and blood["classification_reason"] == "no_interval"
    assert serum["basis"]["code"]["taken_as"]["specimen"] is None and serum["flag"] == "H"
    assert "code" not in named["basis"]  # sent by name: no code read


@pytest.mark.parametrize("code, analyte, specimen, unit", [
    ("49765-1", "calcium", "whole_blood", "mg/dL"), ("1996-8", "calcium", "whole_blood", "mmol/L"),
    ("17863-2", "ionized_calcium", "serum", "mg/dL"), ("38230-9", "ionized_calcium", "whole_blood", "mg/dL"),
    ("21377-7", "magnesium", "whole_blood", "mg/dL"), ("2593-2", "magnesium", "whole_blood", "mmol/L"),
    ("6298-4", "potassium", "whole_blood", "mmol/L"),
])
def test_every_added_loinc_code_maps_to_its_analyte_and_specimen(engine, code, analyte, specimen, unit) -> None:
    [result] = engine.interpret(Panel((ResultInput(code, 1.0, unit),))).results
    assert (result.analyte, result.specimen, result.loinc) == (analyte, specimen, code)


def test_a_whole_blood_code_with_a_serum_specimen_is_a_conflict(engine) -> None:
    assert engine.refusal(Panel((ResultInput("6298-4", 4.0, "mmol/L", specimen="serum"),)))[0].code == "conflict"
    assert engine.refusal(Panel((ResultInput("6298-4", 4.0, "mmol/L", specimen="whole_blood"),))) == []


def test_ionized_calcium_in_blood_has_an_interval(engine) -> None:
    [result] = engine.interpret(Panel((ResultInput("1994-3", 1.0, "mmol/L"),))).results
    assert result.verdict.flag == "L"


# ------------------------------------------------------------------ US Core, haemolysed Specimen
def _us_core_bundle(hemolysed: bool = True) -> dict[str, Any]:
    specimen = _fhir("Specimen-serum-hemolyzed.json")
    if not hemolysed:
        del specimen["condition"]
    return {"resourceType": "Bundle", "type": "collection", "entry": [
        {"fullUrl": "http://example.org/fhir/Observation/serum-potassium",
         "resource": _fhir("us-core-Observation-serum-potassium.json")},
        {"fullUrl": "http://example.org/fhir/Observation/serum-calcium",
         "resource": _fhir("us-core-Observation-serum-calcium.json")},
        {"fullUrl": "http://example.org/fhir/Specimen/specimen-example-serum", "resource": specimen}]}


def test_us_core_examples_with_a_haemolysed_specimen(feed_client) -> None:  # type: ignore[no-untyped-def]
    obs = _observations(_interpret_fhir(feed_client, _us_core_bundle()))
    potassium, calcium = obs["serum-potassium"], obs["serum-calcium"]
    assert _ours(potassium) == ["N"] and "Haemolysis (degree not stated) was reported" in _notes(potassium)
    assert _ours(calcium) == ["L"] and "Haemolysis" not in _notes(calcium)  # a potassium rule only
    assert potassium["referenceRange"][0]["high"]["value"] == 5.5  # the sender's range kept


def test_us_core_examples_without_haemolysis(feed_client) -> None:  # type: ignore[no-untyped-def]
    obs = _observations(_interpret_fhir(feed_client, _us_core_bundle(hemolysed=False)))
    assert "Haemolysis" not in _notes(obs["serum-potassium"])


def test_a_haemolysis_condition_text_counts_too(feed_client) -> None:  # type: ignore[no-untyped-def]
    bundle = _us_core_bundle()
    bundle["entry"][2]["resource"]["condition"] = [{"text": "Specimen haemolysed"}]
    assert "Haemolysis" in _notes(_observations(_interpret_fhir(feed_client, bundle))["serum-potassium"])
    bundle["entry"][2]["resource"]["condition"] = [{"text": "Lipemic"}]
    assert "Haemolysis" not in _notes(_observations(_interpret_fhir(feed_client, bundle))["serum-potassium"])


def test_a_whole_patient_bundle_passes_the_fhir_door(feed_client) -> None:  # type: ignore[no-untyped-def]
    """A ~2 MB patient Bundle with 400 vital-sign Observations: accepted (413/422 before issue 13)."""
    bundle = _fhir("synthea-shaped-patient-bundle.json")
    vital = bundle["entry"][1]
    for i in range(400):
        extra = copy.deepcopy(vital)
        extra["resource"]["id"] = extra["fullUrl"] = f"vital-{i}"
        extra["resource"]["text"] = {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">"
                                     + "x" * 4000 + "</div>"}
        bundle["entry"].append(extra)
    raw = json.dumps(bundle)
    assert 1_500_000 < len(raw) < 4_000_000
    response = feed_client.post("/fhir/Observation/$interpret", data=raw, content_type=FHIR)
    assert response.status_code == 200, response.get_data(as_text=True)[:300]


# ------------------------------------------------------------------ HL7: local codes (NextLevelSeven sample)
def _hl7(client, name: str, query: str = "") -> dict[str, Any]:  # type: ignore[no-untyped-def]
    response = client.post("/v1/hl7" + query, data=(FEEDS / "hl7" / name).read_bytes(), content_type=HL7)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()  # type: ignore[no-any-return]


def test_local_codes_through_the_example_profile(feed_client) -> None:  # type: ignore[no-untyped-def]
    body = _hl7(feed_client, "nextlevelseven-multiple-obr.hl7", "?lab=example-lab")
    by_code = {o["code"]: o for o in body["observations"] if o["outcome"] == "interpreted"}
    assert set(by_code) == {"K", "CA", "ALB"}
    assert by_code["K"]["result"]["basis"]["code"]["defined_by"] == "the laboratory profile's codes.toml"
    assert by_code["K"]["code_system"] == "L" and by_code["K"]["result"]["flag"] == "N"
    assert by_code["ALB"]["result"]["flag"] == "L" and by_code["ALB"]["flag_agrees"] is True
    cmp_panel = next(p for p in body["panels"] if p["derived"])
    assert cmp_panel["derived"][0]["analyte"] == "corrected_calcium"
    skipped = [o for o in body["observations"] if o["outcome"] == "skipped"]
    assert len(skipped) == len(body["observations"]) - 3
    assert all("nor mapped by laboratory profile 'example-lab'" in o["reason"] for o in skipped)


def test_local_codes_without_a_profile_are_explained_not_guessed(feed_client) -> None:  # type: ignore[no-untyped-def]
    body = _hl7(feed_client, "nextlevelseven-multiple-obr.hl7")
    assert all(o["outcome"] == "skipped" for o in body["observations"])
    k = next(o for o in body["observations"] if o["code"] == "K")
    assert "no laboratory profile was named" in k["reason"]  # "POTASSIUM" (the display) is never read


def test_alternate_triplet_and_its_system(feed_client) -> None:  # type: ignore[no-untyped-def]
    message = ("MSH|^~\\&|LAB|X|Y|Z|202601010800||ORU^R01|1|P|2.5.1\r"
               "OBX|1|NM|99K^Potassium^99LAB^K^POTASSIUM^L||5.9|mmol/L|||||F\r"
               "OBX|2|NM|K^POTASSIUM^99LAB||5.9|mmol/L|||||F\r")
    body = feed_client.post("/v1/hl7?lab=example-lab", data=message, content_type=HL7).get_json()
    first, second = body["observations"]
    assert first["outcome"] == "interpreted" and first["code"] == "K" and first["code_system"] == "L"
    assert second["outcome"] == "skipped"  # K is mapped under system L, not 99LAB


def test_fhir_local_coding_by_system(feed_client) -> None:  # type: ignore[no-untyped-def]
    observation = {"resourceType": "Observation", "status": "final",
                   "code": {"coding": [{"system": "http://lab.example.org/codes", "code": "K-PL"}]},
                   "valueQuantity": {"value": 5.9}}
    obs = _interpret_fhir(feed_client, observation, "?lab=example-lab")["entry"][0]["resource"]
    assert _ours(obs) == ["H"]
    assert "codes.toml says for code http://lab.example.org/codes|K-PL" in _notes(obs)  # unit assumed, said
    other = copy.deepcopy(observation)
    other["code"]["coding"][0]["system"] = "http://another.example/codes"
    bundle = _interpret_fhir(feed_client, other, "?lab=example-lab")
    assert _ours(bundle["entry"][0]["resource"]) == []
    assert any("none is mapped by laboratory profile 'example-lab'" in t for t in _outcome_texts(bundle))
    response = feed_client.post("/fhir/Observation/$interpret?lab=nowhere", data=json.dumps(observation),
                                content_type=FHIR)
    assert response.status_code == 422 and "unknown laboratory profile" in response.get_data(as_text=True)


def test_csv_analyte_column_reads_the_profiles_codes(feed_client) -> None:  # type: ignore[no-untyped-def]
    body = "specimen_id,analyte,value,unit\nS1,K,6.1,mmol/L\nS1,NA,140,mmol/L\n"
    response = feed_client.post("/v1/interpret/csv?lab=example-lab", data=body, content_type="text/csv")
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert rows[0]["flag"] == "H" and rows[0]["error"] == ""
    assert "unknown analyte 'NA'" in rows[1]["error"]
    plain = feed_client.post("/v1/interpret/csv", data=body, content_type="text/csv")
    assert "unknown analyte 'K'" in list(csv.DictReader(io.StringIO(plain.get_data(as_text=True))))[0]["error"]


# ------------------------------------------------------------------ HL7: birth date (python-hl7 sample)
def test_a_malformed_birth_date_never_refuses_the_message(feed_client) -> None:  # type: ignore[no-untyped-def]
    """python-hl7's GHH LAB sample carries PID-7 196203520: a warning, no age, every OBX still answered."""
    body = _hl7(feed_client, "python-hl7-ghh-lab.hl7")
    assert [w["code"] for w in body["warnings"]] == ["invalid_date"]
    assert "PID-7 '196203520'" in body["warnings"][0]["text"]
    assert len(body["observations"]) == 2 and all(o["outcome"] == "skipped" for o in body["observations"])


def test_a_valid_birth_date_gives_an_age(feed_client) -> None:  # type: ignore[no-untyped-def]
    message = (FEEDS / "hl7" / "python-hl7-ghh-lab.hl7").read_text().replace("196203520", "19620320")
    message = message.replace("1554-5^GLUCOSE^POST 12H CFST:MCNC:PT:SER/PLAS:QN||^182|mg/dl|70_105",
                              "2823-3^POTASSIUM^LN||^6.1|mmol/L|>3.5")
    body = feed_client.post("/v1/hl7", data=message, content_type=HL7).get_json()
    assert body["warnings"] == [] and body["panels"][0]["age_days"] > 39 * 365
    first = body["observations"][0]["result"]
    # OBX-7 ">3.5" gives no high bound: completed from the service's interval, never N for 6.1
    assert first["flag"] == "H" and "sent_range_completed" in [w["code"] for w in first["warnings"]]


# ------------------------------------------------------------------ off-scale text
@pytest.mark.parametrize("text, expected", [
    ("<0.5", ("<", "0.5")), ("<= 0.5", ("<=", "0.5")), (" >10 ", (">", "10")), (">=10", (">=", "10")),
    ("LESS THAN 1.0", ("<", "1.0")), ("less than1.0", ("<", "1.0")), ("Greater Than 8", (">", "8")),
    ("greaterthan 8", (">", "8")),
])
def test_off_scale_text_is_split(text, expected) -> None:
    assert split_comparator(text) == expected


@pytest.mark.parametrize("text", ["UNABLE TO REPORT", "HEMOLYZED", "< TNP", "LESS THAN", "4.0", "=<3", "<<3",
                                  "LESS THAN OR EQUAL 3", "about 3"])
def test_other_text_is_not_off_scale(text) -> None:
    assert split_comparator(text) == (None, text)


@pytest.mark.parametrize("obx5, value_type, comparator", [
    ("<0.5", "NM", "<"), ("LESS THAN 1.0", "NM", "<"), ("GREATER THAN 9.0", "ST", ">"), ("<^1.0", "SN", "<"),
    (">=^9", "SN", ">="),
])
def test_hl7_off_scale_values(feed_client, obx5, value_type, comparator) -> None:  # type: ignore[no-untyped-def]
    message = ("MSH|^~\\&|LAB|X|Y|Z|202601010800||ORU^R01|1|P|2.5.1\r"
               f"OBX|1|{value_type}|2823-3^K^LN||{obx5}|mmol/L|||||F\r")
    [obx] = feed_client.post("/v1/hl7", data=message, content_type=HL7).get_json()["observations"]
    assert obx["outcome"] == "interpreted" and obx["result"]["input"]["comparator"] == comparator


@pytest.mark.parametrize("obx5", ["UNABLE TO REPORT", "HEMOLYZED"])
def test_hl7_other_text_is_an_obx_error_naming_it(feed_client, obx5) -> None:  # type: ignore[no-untyped-def]
    message = ("MSH|^~\\&|LAB|X|Y|Z|202601010800||ORU^R01|1|P|2.5.1\r"
               f"OBX|1|ST|2823-3^K^LN||{obx5}|mmol/L|||||F\rOBX|2|NM|2823-3^K^LN||4.0|mmol/L|||||F\r")
    first, second = feed_client.post("/v1/hl7", data=message, content_type=HL7).get_json()["observations"]
    assert first["outcome"] == "not_interpreted" and "OBX-5" in first["reason"]
    assert second["outcome"] == "interpreted"


def test_csv_off_scale_text(feed_client) -> None:  # type: ignore[no-untyped-def]
    body = ("specimen_id,analyte,value,unit\nS1,potassium,LESS THAN 1.5,mmol/L\nS2,potassium,> 9,mmol/L\n"
            "S3,potassium,UNABLE TO REPORT,mmol/L\n")
    response = feed_client.post("/v1/interpret/csv", data=body, content_type="text/csv")
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert rows[0]["flag"] == "LL" and rows[1]["flag"] == "HH"
    assert "UNABLE TO REPORT" in rows[2]["error"] and "value" in rows[2]["error"]


# ------------------------------------------------------------------ one-sided sent ranges, every door
def test_fhir_reference_range_with_only_low(feed_client) -> None:  # type: ignore[no-untyped-def]
    observation = _fhir("us-core-Observation-serum-potassium.json")
    del observation["specimen"]
    observation["valueQuantity"]["value"] = 6.1
    del observation["referenceRange"][0]["high"]
    resource = _interpret_fhir(feed_client, observation)["entry"][0]["resource"]
    assert _ours(resource) == ["H"] and "gives no high bound" in _notes(resource)
    observation["referenceRange"][0]["high"] = {"value": 6.5, "unit": "mmol/L"}
    assert _ours(_interpret_fhir(feed_client, observation)["entry"][0]["resource"]) == ["N"]


def test_engine_one_sided_range_with_no_service_interval(engine) -> None:
    result = ResultInput("6298-4", 6.1, "mmol/L", reference_interval=SentInterval(3.5, None))
    [outcome] = engine.interpret(Panel((result,))).results
    assert outcome.verdict.classification == "indeterminate"
    assert "sent_range_not_completed" in [n.code for n in outcome.notes]


# ------------------------------------------------------------------ CSV: the laboratory's range per row
def _csv(client, body: str, query: str = "") -> list[dict[str, str]]:  # type: ignore[no-untyped-def]
    response = client.post("/v1/interpret/csv" + query, data=body, content_type="text/csv")
    assert response.status_code == 200, response.get_data(as_text=True)
    return list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))


def test_csv_reference_columns_as_a_sent_range(feed_client) -> None:  # type: ignore[no-untyped-def]
    """MIMIC's ref_range_lower/upper, OMOP's range_low/high: the same precedence as a range sent in JSON."""
    body = ("specimen_id,analyte,value,unit,age_years,reference_low,reference_high,reference_unit\n"
            "S1,potassium,5.4,mmol/L,50,3.5,5.5,\n"           # N by the laboratory's range (the default says H)
            "S2,potassium,5.4,mmol/L,50,,,\n"                 # no range sent: the default interval, H
            "S3,potassium,6.1,mmol/L,50,3.5,,\n"              # one-sided: completed, H
            "S4,calcium,2.0,mmol/L,50,8.5,10.2,mg/dL\n"      # another unit: converted, L
            "S5,potassium,4.0,mmol/L,50,5.5,3.5,\n"           # inverted: a row error naming it
            "S6,potassium,4.0,mmol/L,50,abc,5.0,\n")          # not a number: a row error naming it
    rows = _csv(feed_client, body)
    assert [r["flag"] for r in rows[:4]] == ["N", "H", "H", "L"]
    assert rows[0]["interval_origin"] == "result" and rows[1]["interval_origin"] == "default"
    assert "interval_from_request" in rows[0]["warnings"] and "interval_from_request" not in rows[1]["warnings"]
    assert "sent_range_completed" in rows[2]["warnings"] and rows[2]["ctcae_grade"] == "3"
    assert "'low' must be below 'high'" in rows[4]["error"]
    assert "reference_interval/low" in rows[5]["error"] and rows[5]["flag"] == ""


def test_csv_reference_columns_give_the_engines_answer(feed_client) -> None:  # type: ignore[no-untyped-def]
    """The file path applies the same rules once per distinct key: its answer is the JSON door's."""
    rows = _csv(feed_client, "specimen_id,analyte,value,unit,reference_low,reference_high\n"
                "S1,potassium,6.1,mmol/L,3.5,\n")
    single = feed_client.post("/v1/interpret", json={"results": [
        {"analyte": "potassium", "value": 6.1, "unit": "mmol/L", "reference_interval": {"low": 3.5}}]}).get_json()
    result = single["results"][0]
    assert rows[0]["flag"] == result["flag"] and rows[0]["ctcae_grade"] == str(result["ctcae"]["grade"])
    assert rows[0]["warnings"].split("|") == [w["code"] for w in result["warnings"]]
    assert float(rows[0]["interval_high"]) == result["reference_interval"]["high"]


# ------------------------------------------------------------------ verification of the real feeds (issue 14)
def _parsed_obx(text: str) -> list[list[str]]:
    segments = text.replace("\r\n", "\r").replace("\n", "\r").split("\r")
    return [s.split("|") for s in segments if s.startswith("OBX|")]


@pytest.mark.parametrize(("name", "query"), [("nextlevelseven-multiple-obr.hl7", "?lab=example-lab"),
                                             ("nextlevelseven-multiple-obr.hl7", "")])
def test_real_messages_are_verified_obx_by_obx(feed_client, name, query) -> None:  # type: ignore[no-untyped-def]
    """Every OBX of a real message comes out of /v1/hl7/verify, each interpreted one with a disposition; the
    annotated message keeps every OBX, marks the held ones R and adds an NTE per reason. Without the profile
    that maps its local codes nothing is interpreted, so nothing is held."""
    raw = (FEEDS / "hl7" / name).read_bytes()
    answer = feed_client.post("/v1/hl7/verify" + query, data=raw, content_type=HL7).get_json()
    plain = _hl7(feed_client, name, query)
    assert [o["segment"] for o in answer["observations"]] == [o["segment"] for o in plain["observations"]]
    interpreted = [o for o in answer["observations"] if o["outcome"] == "interpreted"]
    assert bool(interpreted) == bool(query)
    assert all(o["verification"]["disposition"] in ("release", "hold") for o in interpreted)
    held = [o for o in interpreted if o["verification"]["disposition"] == "hold"]
    assert answer["disposition"] == ("hold" if held else "release")
    annotated = feed_client.post("/v1/hl7/verify" + query + ("&" if query else "?") + "annotate=1", data=raw,
                                 content_type=HL7).get_data(as_text=True)
    sent, back = _parsed_obx(raw.decode()), _parsed_obx(annotated)
    assert len(back) == len(sent)
    statuses = {o["segment"]: o["verification"]["disposition"] for o in interpreted}
    segment_of = {tuple(s[:4]): o["segment"] for s, o in zip(sent, plain["observations"], strict=True)}
    for obx in back:
        if statuses.get(segment_of[tuple(obx[:4])]) == "hold":
            assert obx[11] == "R"
    reasons = sum(len(o["verification"]["reasons"]) for o in interpreted)
    assert annotated.count("|O|labinterp ") == reasons
    for o in interpreted:  # held exactly when a reason holds
        assert (o["verification"]["disposition"] == "hold") == any(r["holds"] for r in o["verification"]["reasons"])


def test_us_core_examples_verified_with_the_haemolysed_specimen(feed_client) -> None:  # type: ignore[no-untyped-def]
    """The US Core potassium of a haemolysed Specimen (no degree stated) is released with the haemolysis comment;
    the same Bundle without the condition has no haemolysis reason; both answers are R4-valid."""
    from labinterp.fhir.verify import DISPOSITION_SYSTEM
    from tests.fhir.helpers import validate

    for hemolysed in (True, False):
        response = feed_client.post("/fhir/Observation/$verify", data=json.dumps(_us_core_bundle(hemolysed)),
                                    content_type=FHIR)
        assert response.status_code == 200
        bundle = response.get_json()
        validate(bundle)
        potassium = _observations(bundle)["serum-potassium"]
        (tag,) = [t for t in potassium["meta"]["tag"] if t["system"] == DISPOSITION_SYSTEM]
        assert tag["code"] == "release"
        notes = _notes(potassium)
        assert ("Verification comment (hemolysis, action comment): Haemolysis reported (degree not stated)"
                in notes) is hemolysed
