"""The FHIR codes this door emits, in one table each (tests check them against the code systems).

Only codes listed here are ever written into an answer: the interpretation flags of the
engine map onto v3-ObservationInterpretation, the range meaning onto referencerange-meaning.
"""

from __future__ import annotations

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
INTERPRETATION_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
RANGE_MEANING_SYSTEM = "http://terminology.hl7.org/CodeSystem/referencerange-meaning"
OBSERVATION_CATEGORY_SYSTEM = "http://terminology.hl7.org/CodeSystem/observation-category"
FHIR_VERSION = "4.0.1"
# Marks the interpretation this service adds, so that a reader tells it from one the sender gave (kept as
# sent): an extension on the CodeableConcept (Element.extension, valid on any R4 element).
INTERPRETATION_SOURCE_EXTENSION = "urn:labinterp:fhir:StructureDefinition:interpretation-source"
INTERPRETATION_SOURCE = "labinterp"
# v2-0493 Specimen Condition: the code that says a specimen is haemolysed.
SPECIMEN_CONDITION_SYSTEM = "http://terminology.hl7.org/CodeSystem/v2-0493"
HEMOLYSED_CONDITION = "HEM"

# engine flag -> (code, display) in v3-ObservationInterpretation
INTERPRETATION: dict[str, tuple[str, str]] = {
    "LL": ("LL", "Critical low"),
    "L": ("L", "Low"),
    "N": ("N", "Normal"),
    "H": ("H", "High"),
    "HH": ("HH", "Critical high"),
}

# referencerange-meaning: the only meaning this service gives a range it adds.
RANGE_MEANING: dict[str, tuple[str, str]] = {
    "normal": ("normal", "Normal Range"),
}

OBSERVATION_CATEGORY: dict[str, tuple[str, str]] = {
    "laboratory": ("laboratory", "Laboratory"),
}

# Observation statuses whose results are not interpreted (issue text).
NOT_INTERPRETED_STATUSES = ("entered-in-error", "cancelled")

# Bundle types accepted on input.
ACCEPTED_BUNDLE_TYPES = ("collection", "batch", "searchset", "transaction")

# HTTP status -> OperationOutcome issue type (http://hl7.org/fhir/issue-type).
ISSUE_TYPE_FOR_STATUS: dict[int, str] = {
    400: "structure", 401: "login", 403: "forbidden", 404: "not-found", 405: "not-supported",
    406: "not-supported", 412: "incomplete", 413: "too-costly", 415: "not-supported", 422: "invalid",
    429: "throttled", 500: "exception",
}


def interpretation_concept(flag: str) -> dict[str, object]:
    code, display = INTERPRETATION[flag]
    return {"extension": [{"url": INTERPRETATION_SOURCE_EXTENSION, "valueString": INTERPRETATION_SOURCE}],
            "coding": [{"system": INTERPRETATION_SYSTEM, "code": code, "display": display}], "text": display}


def range_type(meaning: str = "normal") -> dict[str, object]:
    code, display = RANGE_MEANING[meaning]
    return {"coding": [{"system": RANGE_MEANING_SYSTEM, "code": code, "display": display}], "text": display}


def category(name: str = "laboratory") -> dict[str, object]:
    code, display = OBSERVATION_CATEGORY[name]
    return {"coding": [{"system": OBSERVATION_CATEGORY_SYSTEM, "code": code, "display": display}], "text": display}
