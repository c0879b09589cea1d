"""Property-based fuzzing of the HL7 parser, the FHIR reader and the JSON doors (issue 11).

Whatever arrives: no 500, and every OBX (every Observation) comes out, interpreted or with its
reason. Bounded for the default suite (LABINTERP_FUZZ_EXAMPLES examples per property, 40 unless
set); `make fuzz` runs only these, many more examples each.
"""

from __future__ import annotations

import json
import os
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labinterp.labwork import hl7
from tests.cdshooks.helpers import SERVICE
from tests.fhir.helpers import INTERPRET

pytestmark = pytest.mark.fuzz
FUZZ = settings(max_examples=int(os.environ.get("LABINTERP_FUZZ_EXAMPLES", "40")), deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large])
ANSWERS = {200, 400, 413, 415, 422}
LOINC = ["2823-3", "17861-6", "1751-7", "19123-9", "2601-3", "1994-3", "6298-4", "2951-2", "", "LN"]
UNITS = ["mmol/L", "mg/dL", "mEq/L", "g/dL", "m^9^9^9", "cd**9**9**7", "mol\\S\\9\\S\\9\\S\\7", "mg", "%", "",
         "\u00b5mol/L", "10**10**10"]
NUMBERS = ["6.4", "2.1", "<0.5", ">9", "0", "-1", "1e308", "nan", "inf", "0_5", "\u0664", "", "HEMOLYZED",
           "1.2.3", ">^9.0", "<=^1^-^2"]
DATES = ["19700315", "20261100", "20260015", "20261123073000", "2026", "1970031", "99999999", "", "20260230",
         "20261123073000.1234+0100"]
text = st.text(alphabet=string.printable + "\u00b5\u0664\uff15\u00e9", max_size=30)
field = st.one_of(text, st.sampled_from(LOINC + UNITS + NUMBERS + DATES + ["F", "D", "W", "X", "SN", "NM"]))


@st.composite
def hl7_messages(draw) -> str:  # type: ignore[no-untyped-def]
    sep = draw(st.sampled_from(["\r", "\n", "\r\n"]))
    segments = [draw(st.sampled_from(["MSH|^~\\&|LIS|LAB|EHR|W|20261123083000||ORU^R01|M1|P|2.5.1",
                                      "MSH|^~\\&", "MSH#^~\\&#A#B#C#D#2026##ORU^R01#1#P#2.5"]))]
    for _ in range(draw(st.integers(0, 8))):
        kind = draw(st.sampled_from(["PID", "OBR", "OBX", "OBX", "OBX", "NTE", "ZZZ", "MSH", "obx"]))
        if kind == "OBX":
            fields = [draw(text.map(lambda t: t[:3])), draw(st.sampled_from(["NM", "SN", "ST", ""])),
                      draw(st.sampled_from(LOINC)) + "^x^LN", "", draw(st.one_of(st.sampled_from(NUMBERS), text)),
                      draw(st.one_of(st.sampled_from(UNITS), text)), draw(field), draw(field), "", "",
                      draw(st.sampled_from(["F", "D", "W", "X", "", "C"])), "", "", draw(st.sampled_from(DATES))]
        elif kind == "PID":
            fields = ["1", "", "P1", "", "DOE^J", "", draw(st.sampled_from(DATES)), draw(field)]
        elif kind == "OBR":
            fields = ["1", "O", "F", "x", "", "", draw(st.sampled_from(DATES))]
        else:
            fields = draw(st.lists(field, max_size=4))
        segments.append("|".join([kind, *fields]))
    return sep.join(segments) + sep


def obx_count(message: str) -> int:
    return sum(1 for line in message.replace("\r\n", "\r").replace("\n", "\r").split("\r") if line[:4] == "OBX|")


def every_obx(client, route: str, message: str) -> list[dict]:  # type: ignore[no-untyped-def]
    """The door's answer to the message: no 500, and when it answers, every OBX comes out, interpreted or with
    its reason. The observations ([] when the message is refused)."""
    response = client.post(route, data=message.encode("utf-8", "surrogatepass"), content_type="application/hl7-v2")
    assert response.status_code in ANSWERS, response.get_data(as_text=True)[:300]
    if response.status_code != 200:
        return []
    observations: list[dict] = response.get_json()["observations"]
    assert len(observations) == obx_count(message)
    for o in observations:
        assert o["outcome"] in ("interpreted", "not_interpreted", "skipped")
        assert ("result" in o) if o["outcome"] == "interpreted" else o["reason"]
    return observations


@FUZZ
@given(st.one_of(hl7_messages(), st.text(max_size=300)))
def test_hl7_door_answers_every_obx_or_refuses_the_message(client, message):
    every_obx(client, "/v1/hl7", message)


@FUZZ
@given(st.text(max_size=400))
def test_hl7_parser_reads_or_names_the_problem(message):
    try:
        hl7.parse(message)
    except hl7.Hl7Error as error:
        assert error.field_name and error.segment >= 1


json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**30, 10**30),
                         st.floats(allow_nan=False, allow_infinity=False), text)
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(["value", "unit", "code", "x"]) | text, inner,
                                                 max_size=4)), max_leaves=12)
quantity = st.fixed_dictionaries({"value": st.one_of(st.floats(allow_nan=False), st.integers(-10**30, 10**30),
                                                     json_values),
                                  "unit": st.one_of(st.sampled_from(UNITS), json_values)},
                                 optional={"comparator": st.sampled_from(["<", ">", "<=", ">=", "~", "ad"]),
                                           "code": st.sampled_from(UNITS), "system": text})
observation = st.fixed_dictionaries(
    {"resourceType": st.just("Observation"), "status": st.sampled_from(["final", "amended", "preliminary",
                                                                         "entered-in-error", "x"]),
     "code": st.fixed_dictionaries({"coding": st.lists(st.fixed_dictionaries(
         {"system": st.sampled_from(["http://loinc.org", "x"]), "code": st.sampled_from(LOINC)}), max_size=2)})},
    optional={"id": text, "valueQuantity": quantity, "valueString": text, "effectiveDateTime": st.one_of(
        st.sampled_from(["2026-01-15", "2026-13-45", "2026", "2026-01-15T08:00:00Z", ""]), text),
        "subject": st.fixed_dictionaries({"reference": st.sampled_from(["Patient/p1", "Patient/p2", "x", ""])}),
        "referenceRange": st.lists(st.fixed_dictionaries({}, optional={"low": quantity, "high": quantity}),
                                   max_size=2),
        "extra": json_values})
patient = st.fixed_dictionaries({"resourceType": st.just("Patient"), "id": st.sampled_from(["p1", "p2"])},
                                optional={"birthDate": st.one_of(st.sampled_from(["1970-05-05", "2026-02-30",
                                                                                   "1970", "3000-01-01"]), text),
                                          "gender": st.one_of(st.sampled_from(["female", "male", "x"]), text)})


@FUZZ
@given(st.one_of(observation, st.lists(st.one_of(observation, patient, json_values), max_size=6).map(
    lambda resources: {"resourceType": "Bundle", "type": "collection",
                       "entry": [{"resource": r} for r in resources]}), json_values))
def test_fhir_reader_answers_every_observation_or_refuses(client, body):
    response = client.post(INTERPRET, data=json.dumps(body), headers={"Content-Type": "application/fhir+json"})
    assert response.status_code in ANSWERS, response.get_data(as_text=True)[:300]
    if response.status_code == 200:
        sent = [body] if body.get("resourceType") == "Observation" else [
            e["resource"] for e in body["entry"] if e["resource"].get("resourceType") == "Observation"]
        out = [e["resource"] for e in response.get_json()["entry"]
               if e["resource"]["resourceType"] == "Observation"]
        assert len(out) == len(sent)


result = st.fixed_dictionaries(
    {"analyte": st.one_of(st.sampled_from(["calcium", "potassium", "magnesium", "ionized_calcium", "albumin",
                                           "2823-3", "sodium"]), json_values),
     "value": st.one_of(st.floats(), st.integers(-10**400, 10**400), json_values),
     "unit": st.one_of(st.sampled_from(UNITS), json_values)},
    optional={"comparator": st.sampled_from(["<", ">", "="]), "specimen": text, "id": json_values,
              "reference_interval": json_values})
panel = st.fixed_dictionaries({"results": st.one_of(st.lists(result, max_size=5), json_values)},
                              optional={"patient": st.dictionaries(st.sampled_from(["age_years", "sex", "age_days"]),
                                                                   json_scalars, max_size=2),
                                        "specimen": text, "lab": text, "id": text})


def finite_json(body) -> bytes:  # type: ignore[no-untyped-def]
    raw = json.dumps(body)  # NaN and Infinity as JSON extensions, which the doors must refuse, not crash on
    return raw.encode()


@FUZZ
@given(st.one_of(panel, json_values))
def test_v1_interpret_never_fails(client, body):
    response = client.post("/v1/interpret", data=finite_json(body), content_type="application/json")
    assert response.status_code in ANSWERS, response.get_data(as_text=True)[:300]
    if response.status_code == 200:
        assert len(response.get_json()["results"]) == len(body["results"])


@FUZZ
@given(st.lists(st.one_of(panel.map(lambda p: {**p, "id": "p"}), json_values), max_size=4))
def test_batch_answers_every_panel(client, panels):
    response = client.post("/v1/interpret/batch", data=finite_json({"panels": panels}),
                           content_type="application/json")
    assert response.status_code in ANSWERS, response.get_data(as_text=True)[:300]
    if response.status_code == 200:
        answers = response.get_json()["panels"]
        assert len(answers) == len(panels)
        assert all(("result" in a) != ("error" in a) for a in answers)


@FUZZ
@given(st.lists(observation, max_size=4), st.one_of(patient, json_values), json_values)
def test_cds_hooks_never_fails(client, observations, who, extra):
    body = {"hook": "patient-view", "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
            "context": {"userId": "Practitioner/x", "patientId": "p1"},
            "prefetch": {"patient": who, "labs": {"resourceType": "Bundle", "type": "searchset",
                                                  "entry": [{"resource": o} for o in observations]}},
            "extension": extra}
    response = client.post(SERVICE, data=finite_json(body), content_type="application/json")
    assert response.status_code in ANSWERS, response.get_data(as_text=True)[:300]


GOOD = ("MSH|^~\\&|LIS|LAB|EHR|W|20261123083000||ORU^R01|M1|P|2.5.1\rPID|1||P1||DOE^J||19700315|F\r"
        "OBR|1|O|F|x|||20261123073000\rOBX|1|NM|2823-3^K^LN||6.4|mmol/L|||||F\rOBX|2|NM|2823-3^K^LN||4|mmol/L|||||D\r")


def test_the_hl7_property_holds_for_a_good_message(client):
    test_hl7_door_answers_every_obx_or_refuses_the_message.hypothesis.inner_test(client, GOOD)


def test_the_hl7_property_catches_a_lost_obx_and_a_500(client, monkeypatch):
    check = test_hl7_door_answers_every_obx_or_refuses_the_message.hypothesis.inner_test
    real = hl7.interpret

    def losing_the_last(engine, message, lab=None):  # type: ignore[no-untyped-def]
        answer = real(engine, message, lab)
        answer.body["observations"].pop()
        return answer

    monkeypatch.setattr(hl7, "interpret", losing_the_last)
    with pytest.raises(AssertionError):
        check(client, GOOD)

    def crashing(engine, message, lab=None):  # type: ignore[no-untyped-def]
        raise RuntimeError("boom")

    monkeypatch.setattr(hl7, "interpret", crashing)
    with pytest.raises(AssertionError):
        check(client, GOOD)


# ------------------------------------------------------------------ the verification doors, with a laboratory
# profile that names haemolysis index codes (tests/verify/helpers.py: L|HI in HL7, a system URI in FHIR)
@pytest.fixture(scope="module")
def lab_client(tmp_path_factory):  # type: ignore[no-untyped-def]
    from labinterp.app import create_app
    from tests.verify.helpers import make_labs

    return create_app({"TESTING": True, "LABS_DIR": str(make_labs(tmp_path_factory.mktemp("labs")))}).test_client()


@FUZZ
@given(hl7_messages(), st.integers(0, 3))
def test_hl7_verify_answers_every_obx_with_its_disposition(lab_client, message, indices):
    """Some OBX become the laboratory's haemolysis index: every OBX still comes out, each interpreted one with a
    disposition, every index OBX read or with why not."""
    message = message.replace("2823-3^x^LN", "HI^x^L", indices)
    for o in every_obx(lab_client, "/v1/hl7/verify?lab=testlab", message):
        if o["outcome"] == "interpreted":
            assert o["verification"]["disposition"] in ("release", "hold")
        if o.get("code") == "HI" and o.get("code_system") == "L":
            assert ("hemolysis_index" in o) != ("hemolysis_index_not_read" in o), o


index_observation = observation.map(lambda o: {**o, "code": {"coding": [
    {"system": "http://lab.example.org/codes", "code": "HIDX"}]}})


@FUZZ
@given(st.lists(st.one_of(observation, index_observation, patient, json_values), max_size=6))
def test_fhir_verify_answers_every_observation(lab_client, resources):
    body = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources]}
    response = lab_client.post("/fhir/Observation/$verify?lab=testlab", data=json.dumps(body),
                               headers={"Content-Type": "application/fhir+json"})
    assert response.status_code in ANSWERS, response.get_data(as_text=True)[:300]
    if response.status_code == 200:
        sent = [r for r in resources if isinstance(r, dict) and r.get("resourceType") == "Observation"]
        out = [e["resource"] for e in response.get_json()["entry"] if e["resource"]["resourceType"] == "Observation"]
        assert len(out) == len(sent)
