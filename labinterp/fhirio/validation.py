"""Is this FHIR R4? Checks shared by the FHIR door and the CDS Hooks prefetch.

fhir.resources R4B models check structure; they coerce some JSON types (a date from a number) and do
not check terminology, so the JSON rules of FHIR (no null, no empty object, array or string) and the
required bindings of the elements the service reads are checked here first.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from labinterp.fhirio import codes

Problem = tuple[str, list[dict[str, Any]]]


def check_resource(body: Any, accepted: tuple[str, ...]) -> Problem | None:
    """None when `body` is a valid FHIR R4 resource of an accepted type, else (detail, issues)."""
    if not isinstance(body, dict) or not isinstance(body.get("resourceType"), str):
        return ("Not a FHIR resource: expected a JSON object with resourceType ("
                + " or ".join(accepted) + ").", [])
    kind = body["resourceType"]
    if kind not in accepted:
        return (f"resourceType '{kind[:40]}' is not accepted here: expected " + " or ".join(accepted) + ".", [])
    if kind == "Bundle" and body.get("type") not in codes.ACCEPTED_BUNDLE_TYPES:
        shown = body.get("type") if isinstance(body.get("type"), str) else "missing"
        return (f"Bundle type '{str(shown)[:40]}' is not accepted: use one of "
                f"{', '.join(codes.ACCEPTED_BUNDLE_TYPES)}.",
                [{"severity": "error", "code": "not-supported", "expression": ["Bundle.type"],
                  "diagnostics": f"Bundle.type must be one of {', '.join(codes.ACCEPTED_BUNDLE_TYPES)}"}])
    empty = _first_empty(body, kind)
    if empty is not None:
        return (f"The {kind} is not valid FHIR JSON.", [{
            "severity": "error", "code": "structure", "expression": [empty[0]],
            "diagnostics": f"{empty[0]}: {empty[1]} (FHIR JSON has no null values and no empty objects, "
                           "arrays or strings)"}])
    bad = _bad_code(body)
    if bad is not None:
        return (f"The {kind} is not valid FHIR R4.", [{
            "severity": "error", "code": "code-invalid", "expression": [bad[0]], "diagnostics": f"{bad[0]}: {bad[1]}"}])
    from fhir.resources.R4B import get_fhir_model_class

    try:
        get_fhir_model_class(kind).model_validate(body)
    except ValidationError as error:
        return (f"The {kind} is not valid FHIR R4.", _validation_issues(error, kind))
    except (ValueError, TypeError, KeyError):
        return (f"The {kind} is not valid FHIR R4.", [])
    return None


def _validation_issues(error: ValidationError, root: str) -> list[dict[str, Any]]:
    issues = []
    for e in error.errors()[:50]:
        path = root
        for part in e["loc"]:
            if isinstance(part, int):
                path += f"[{part}]"
            elif str(part) not in ("__root__",):
                path += f".{part}"
        kind = "required" if e["type"] == "missing" else "structure" if e["type"] == "extra_forbidden" else "value"
        issues.append({"severity": "error", "code": kind, "diagnostics": f"{path}: {e['msg']}",
                       "expression": [path]})
    return issues


# FHIR JSON primitives the service reads, whose JSON type R4B models would coerce (a date from a
# number, a decimal from a string): checked here so that a wrong JSON type is refused, not guessed.
_STRING_KEYS = frozenset(("birthDate", "effectiveDateTime", "effectiveInstant", "unit", "system", "display",
                          "text", "reference", "fullUrl", "id", "status", "gender", "comparator", "resourceType"))
_QUANTITY_KEYS = frozenset(("valueQuantity", "low", "high"))


def _first_empty(value: Any, path: str) -> tuple[str, str] | None:
    """The first null, empty object, array or string, or mistyped primitive, as (FHIRPath, what)."""
    if isinstance(value, dict):
        if not value:
            return path, "empty object"
        for key, item in value.items():
            if item is None:
                return f"{path}.{key}", "null"
            if key in _STRING_KEYS and not isinstance(item, (str, dict, list)):
                return f"{path}.{key}", "must be a JSON string"
            if key in ("code", "type") and not isinstance(item, (str, dict, list)):
                return f"{path}.{key}", "must be a JSON string or object"
            if (key in _QUANTITY_KEYS and isinstance(item, dict) and "value" in item
                    and (isinstance(item["value"], bool) or not isinstance(item["value"], (int, float)))):
                return f"{path}.{key}.value", "must be a JSON number"
            found = _first_empty(item, f"{path}.{key}")
            if found:
                return found
    elif isinstance(value, list):
        if not value:
            return path, "empty array"
        for i, item in enumerate(value):
            found = _first_empty(item, f"{path}[{i}]") if item is not None else None
            if found:
                return found
    elif isinstance(value, str) and value == "":
        return path, "empty string"
    return None


# Required bindings of the elements the service reads (R4B models do not check terminology).
_REQUIRED_CODES: dict[tuple[str, str], tuple[str, ...]] = {
    ("Observation", "status"): ("registered", "preliminary", "final", "amended", "corrected", "cancelled",
                                "entered-in-error", "unknown"),
    ("Patient", "gender"): ("male", "female", "other", "unknown"),
}
_SEVERITIES = ("fatal", "error", "warning", "information")
_COMPARATORS = ("<", "<=", ">=", ">")


def _array(value: Any) -> list[Any]:
    """An array element as sent, or nothing to look into when it is not an array (the R4B model then
    refuses its type)."""
    return value if isinstance(value, list) else []


def _bad_code(body: dict[str, Any]) -> tuple[str, str] | None:
    resources = [(body, body["resourceType"])]
    if body["resourceType"] == "OperationOutcome":
        for i, issue in enumerate(_array(body.get("issue"))):
            if isinstance(issue, dict) and issue.get("severity") not in _SEVERITIES:
                return f"OperationOutcome.issue[{i}].severity", f"must be one of {', '.join(_SEVERITIES)}"
    if body["resourceType"] == "Bundle":
        resources = [(e["resource"], f"Bundle.entry[{i}].resource") for i, e in enumerate(_array(body.get("entry")))
                     if isinstance(e, dict) and isinstance(e.get("resource"), dict)]
    for resource, path in resources:
        for (kind, element), allowed in _REQUIRED_CODES.items():
            if resource.get("resourceType") == kind and element in resource and resource[element] not in allowed:
                return f"{path}.{element}", f"must be one of {', '.join(allowed)}"
        if resource.get("resourceType") != "Observation":
            continue
        quantities = [("valueQuantity", resource.get("valueQuantity"))]
        for i, rr in enumerate(_array(resource.get("referenceRange"))):
            if isinstance(rr, dict):
                quantities += [(f"referenceRange[{i}].{side}", rr.get(side)) for side in ("low", "high")]
        for where, quantity in quantities:
            if isinstance(quantity, dict) and "comparator" in quantity and quantity["comparator"] not in _COMPARATORS:
                return f"{path}.{where}.comparator", f"must be one of {', '.join(_COMPARATORS)}"
    return None


