"""marshmallow schemas: request validation and the OpenAPI document, from one definition."""

from __future__ import annotations

from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, post_load, validate, validates_schema

from labinterp.core.model import COMPARATORS, HEMOLYSIS, SEXES, SPECIMENS, Panel, Patient, ResultInput, SentInterval
from labinterp.core.patients import MAX_AGE_DAYS, MAX_AGE_YEARS, patient
from labinterp.core.verification import PreviousInput, VerificationInput


class StrictNumber(fields.Float):
    """A JSON number only: numeric strings and booleans are refused, never guessed."""

    default_error_messages = {"invalid": "must be a JSON number", "special": "must be a finite number"}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.make_error("invalid")
        return super()._deserialize(value, attr, data, **kwargs)


class Strict(Schema):
    class Meta:
        unknown = RAISE


class SentIntervalSchema(Strict):
    low = StrictNumber(allow_none=True, validate=validate.Range(min=0),
                       metadata={"description": "Lower bound, inclusive; null or absent: no lower bound."})
    high = StrictNumber(allow_none=True, validate=validate.Range(min=0),
                        metadata={"description": "Upper bound, inclusive; null or absent: no upper bound."})
    unit = fields.String(validate=validate.Length(min=1, max=32),
                         metadata={"description": "Unit of the bounds; default: the result's unit."})
    text = fields.String(validate=validate.Length(max=200),
                         metadata={"description": "The laboratory's name for this interval (shown as its source)."})

    @validates_schema
    def _one_bound(self, data: dict[str, Any], **kwargs: Any) -> None:
        if data.get("low") is None and data.get("high") is None:
            raise ValidationError("needs 'low', 'high' or both")

    @post_load
    def _make(self, data: dict[str, Any], **kwargs: Any) -> SentInterval:
        return SentInterval(data.get("low"), data.get("high"), data.get("unit"), data.get("text"))


class ResultSchema(Strict):
    id = fields.String(validate=validate.Length(min=1, max=64),
                       metadata={"description": "Caller's identifier, echoed back."})
    analyte = fields.String(required=True, validate=validate.Length(min=1, max=32), metadata={
        "description": "calcium (total), ionized_calcium, magnesium, potassium, albumin, or a LOINC code of one.",
        "example": "calcium"})
    value = StrictNumber(required=True, validate=validate.Range(min=0), metadata={"example": 8.1})
    unit = fields.String(required=True, validate=validate.Length(min=1, max=32), metadata={
        "description": "Concentration unit (UCUM or a common spelling: mg/dL, mmol/L, mEq/L, g/dL, ...).",
        "example": "mg/dL"})
    comparator = fields.String(validate=validate.OneOf(COMPARATORS),
                               metadata={"description": "For off-scale results: the value is <, <=, > or >= `value`."})
    specimen = fields.String(validate=validate.OneOf(SPECIMENS),
                             metadata={"description": "Overrides the request's specimen."})
    hemolysis = fields.String(validate=validate.OneOf(HEMOLYSIS))
    reference_interval = fields.Nested(SentIntervalSchema, metadata={
        "description": "The laboratory's own interval; replaces the default interval only."})

    @post_load
    def _make(self, data: dict[str, Any], **kwargs: Any) -> ResultInput:
        return ResultInput(**data)


class PatientSchema(Strict):
    age_years = StrictNumber(validate=validate.Range(min=0, max=MAX_AGE_YEARS),
                             metadata={"description": "Age at specimen collection, in years."})
    age_days = StrictNumber(validate=validate.Range(min=0, max=MAX_AGE_DAYS),
                            metadata={"description": "Age at specimen collection, in days (newborns, infants)."})
    sex = fields.String(validate=validate.OneOf(SEXES))

    @validates_schema
    def _one_age(self, data: dict[str, Any], **kwargs: Any) -> None:
        if "age_years" in data and "age_days" in data:
            raise ValidationError("give age_years or age_days, not both")

    @post_load
    def _make(self, data: dict[str, Any], **kwargs: Any) -> Patient:
        return patient(data.get("age_years"), data.get("age_days"), data.get("sex"))


class PanelSchema(Strict):
    results = fields.List(fields.Nested(ResultSchema), required=True, validate=validate.Length(min=1))
    patient = fields.Nested(PatientSchema)
    specimen = fields.String(validate=validate.OneOf(SPECIMENS), metadata={"description": "Default: serum."})
    lab = fields.String(validate=validate.Length(min=1, max=64),
                        metadata={"description": "Laboratory profile whose intervals and limits to use."})

    def __init__(self, *args: Any, max_results: int | None = None, **kwargs: Any):
        # None: the door checks LABINTERP_MAX_RESULTS itself (v1 builds this schema once, at import,
        # before any configuration exists); the batch door passes the configured limit.
        super().__init__(*args, **kwargs)
        self.max_results = max_results

    @validates_schema(pass_original=True)
    def _not_too_many(self, data: dict[str, Any], original: Any, **kwargs: Any) -> None:
        if self.max_results is not None and len(data.get("results", [])) > self.max_results:
            raise ValidationError(f"at most {self.max_results} results per panel", "results")

    @post_load
    def _make(self, data: dict[str, Any], **kwargs: Any) -> Panel:
        return Panel(tuple(data["results"]), data.get("patient"), data.get("specimen"), data.get("lab"))


# ----------------------------------------------------------------- response documentation
class Quantity(Schema):
    value = fields.Float()
    unit = fields.String()
    comparator = fields.String()


class Stated(Schema):
    low = fields.Float(allow_none=True)
    high = fields.Float(allow_none=True)
    unit = fields.String()


class IntervalOut(Schema):
    low = fields.Float(allow_none=True)
    high = fields.Float(allow_none=True)
    unit = fields.String()
    applies_to = fields.String()
    origin = fields.String(metadata={"enum": ["result", "laboratory", "default"]})
    source = fields.String()
    stated = fields.Nested(Stated)


class CriticalOut(Schema):
    low = fields.Float(allow_none=True)
    high = fields.Float(allow_none=True)
    unit = fields.String()
    low_comparison = fields.String(allow_none=True)
    high_comparison = fields.String(allow_none=True)
    origin = fields.String()
    source = fields.String()
    stated = fields.Nested(Stated)


class CtcaeOut(Schema):
    grade = fields.Integer()
    term = fields.String()
    version = fields.String()
    laboratory_only = fields.Boolean()
    basis = fields.String()
    edges = fields.Dict()
    source = fields.String()
    note = fields.String()


class SymptomOut(Schema):
    text = fields.String()
    system = fields.String(metadata={"enum": ["muscle", "nerve", "other"]})
    source = fields.String()


class NoteOut(Schema):
    text = fields.String()
    source = fields.String(allow_none=True)


class WarningOut(Schema):
    code = fields.String()
    text = fields.String()
    source = fields.String()


class Reference(Schema):
    index = fields.Integer(allow_none=True)
    id = fields.String(allow_none=True)
    analyte = fields.String()
    flag = fields.String(allow_none=True)


class ResultOut(Schema):
    id = fields.String(allow_none=True)
    analyte = fields.String()
    loinc = fields.String()
    input = fields.Nested(Quantity)
    value = fields.Nested(Quantity)
    specimen = fields.String()
    reference_interval = fields.Nested(IntervalOut, allow_none=True)
    critical_limits = fields.Nested(CriticalOut, allow_none=True)
    classification = fields.String(metadata={"enum": ["hypo", "normal", "hyper", "indeterminate"]})
    classification_reason = fields.String(allow_none=True)
    flag = fields.String(allow_none=True, metadata={"enum": ["LL", "L", "N", "H", "HH", None]})
    flag_display = fields.String(allow_none=True)
    critical = fields.Boolean()
    condition = fields.String()
    ctcae = fields.Nested(CtcaeOut, allow_none=True)
    symptoms = fields.List(fields.Nested(SymptomOut))
    notes = fields.List(fields.Nested(NoteOut))
    warnings = fields.List(fields.Nested(WarningOut))
    basis = fields.Dict()
    formula = fields.String()
    formula_source = fields.String()
    derived_from = fields.List(fields.Nested(Reference))


class PatternOut(Schema):
    id = fields.String()
    title = fields.String()
    text = fields.String()
    source = fields.String()
    results = fields.List(fields.Nested(Reference))


class InterpretationOut(Schema):
    results = fields.List(fields.Nested(ResultOut))
    derived = fields.List(fields.Nested(ResultOut))
    patterns = fields.List(fields.Nested(PatternOut))
    caveats = fields.List(fields.Nested(WarningOut), metadata={
        "description": "What the service does not model for this patient (e.g. pregnancy), with its source."})
    data_version = fields.String()
    laboratory = fields.String(allow_none=True)
    disclaimer = fields.String()
    symptoms_note = fields.String()


class ProblemOut(Schema):
    type = fields.String()
    title = fields.String()
    status = fields.Integer()
    detail = fields.String()
    errors = fields.List(fields.Dict())


class LabQuery(Strict):
    lab = fields.String(validate=validate.Length(min=1, max=64))


# ----------------------------------------------------------------- verification (/v1/verify)
class VerifyResultSchema(ResultSchema):
    collected_at = fields.DateTime(format="iso", metadata={
        "description": "When this result's specimen was collected (ISO 8601; without an offset: UTC). "
                       "Overrides the panel's."})
    hemolysis_index = StrictNumber(validate=validate.Range(min=0), metadata={
        "description": "The analyser's haemolysis index (H-index scale: free haemoglobin, mg/dL). "
                       "Overrides the panel's."})

    @post_load
    def _make(self, data: dict[str, Any], **kwargs: Any) -> Any:
        facts = (data.pop("collected_at", None), data.pop("hemolysis_index", None))
        return ResultInput(**data), facts


class PreviousSchema(Strict):
    analyte = fields.String(required=True, validate=validate.Length(min=1, max=32))
    value = StrictNumber(required=True, validate=validate.Range(min=0))
    unit = fields.String(required=True, validate=validate.Length(min=1, max=32))
    collected_at = fields.DateTime(format="iso", metadata={"description": "ISO 8601; without an offset: UTC."})
    comparator = fields.String(validate=validate.OneOf(COMPARATORS))

    @post_load
    def _make(self, data: dict[str, Any], **kwargs: Any) -> PreviousInput:
        return PreviousInput(**data)


class VerifySchema(PanelSchema):
    results = fields.List(fields.Nested(VerifyResultSchema), required=True, validate=validate.Length(min=1))
    collected_at = fields.DateTime(format="iso", metadata={
        "description": "When the specimen was collected (ISO 8601; without an offset: UTC)."})
    hemolysis_index = StrictNumber(validate=validate.Range(min=0), metadata={
        "description": "The specimen's haemolysis index (H-index scale: free haemoglobin, mg/dL)."})
    previous = fields.List(fields.Nested(PreviousSchema), validate=validate.Length(max=1000), metadata={
        "description": "Earlier results of the same patient (for the delta and contamination rules)."})

    @post_load
    def _make(self, data: dict[str, Any], **kwargs: Any) -> VerificationInput:
        pairs = data["results"]
        panel = Panel(tuple(r for r, _ in pairs), data.get("patient"), data.get("specimen"), data.get("lab"))
        collected = tuple(f[0] if f[0] is not None else data.get("collected_at") for _, f in pairs)
        index = tuple(f[1] if f[1] is not None else data.get("hemolysis_index") for _, f in pairs)
        return VerificationInput(panel, collected, index, tuple(data.get("previous", ())))


class ReasonOut(Schema):
    code = fields.String(metadata={"enum": ["critical_value", "implausible", "off_scale", "measuring_range",
                                            "hemolysis", "edta_contamination", "iv_fluid_contamination",
                                            "delta_check", "no_interval"]})
    text = fields.String()
    action = fields.String(metadata={"enum": ["notify", "review", "rerun", "recollect", "comment", "suppress"]})
    holds = fields.Boolean()
    source = fields.String(allow_none=True)
    source_id = fields.String(allow_none=True)


class VerificationOut(Schema):
    disposition = fields.String(metadata={"enum": ["release", "hold"]})
    reasons = fields.List(fields.Nested(ReasonOut))


class VerifiedResultOut(ResultOut):
    verification = fields.Nested(VerificationOut)


class RuleOffOut(Schema):
    code = fields.String()
    text = fields.String()


class VerificationMetaOut(Schema):
    data_version = fields.String()
    rules_off = fields.List(fields.Nested(RuleOffOut))


class VerifyOut(InterpretationOut):
    results = fields.List(fields.Nested(VerifiedResultOut))
    disposition = fields.String(metadata={"enum": ["release", "hold"]})
    verification = fields.Nested(VerificationMetaOut)
