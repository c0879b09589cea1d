"""HL7 v2 ORU^R01: a small parser, interpretation of each OBX through the engine, and annotation.

Segments may be separated by CR, LF or CRLF. Separators come from MSH-1 and MSH-2. Only the
segments the service reads are modelled (MSH, PID, OBR, OBX, NTE); others pass through untouched
when a message is annotated.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from labinterp import __version__
from labinterp.core import Engine, Panel, Patient, ResultInput, SentInterval
from labinterp.core.knowledge import Knowledge
from labinterp.core.numbers import read_number
from labinterp.core.offscale import split_comparator
from labinterp.core.outcomes import Outcome
from labinterp.core.patients import sex_of
from labinterp.render import v1 as render
from labinterp.render.numbers import four

SKIPPED_STATUS = {"D": "deleted", "W": "wrong (replaced by another result)", "X": "cannot be obtained"}
LAB_FLAGS = ("LL", "L", "N", "H", "HH", "A", "AA", "<", ">", "LU", "HU")
_DTM = re.compile(r"^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:\.\d+)?(?:([+-])(\d{2})(\d{2}))?$")
_NUMBER = r"\d+(?:\.\d*)?|\.\d+"
_RANGE = re.compile(rf"^\s*({_NUMBER})\s*(?:-|_|to)\s*({_NUMBER})\s*$")
_ONE_SIDED = re.compile(rf"^\s*(<=|>=|<|>)\s*({_NUMBER})\s*$")


class Hl7Error(Exception):
    """The message cannot be read: names the segment (1-based position) and the field."""

    def __init__(self, segment: int, field_name: str, reason: str):
        self.segment, self.field_name, self.reason = segment, field_name, reason
        super().__init__(f"segment {segment}, {field_name}: {reason}")


class TooManyResults(Hl7Error):
    """More OBX segments than LABINTERP_HL7_MAX_OBX: refused whole, before any is interpreted."""


@dataclass
class Segment:
    number: int  # position in the message, 1-based
    name: str
    fields: list[str]  # fields[n] is field n (for MSH, fields[1] is MSH-1, the field separator)

    def get(self, n: int) -> str:
        return self.fields[n] if n < len(self.fields) else ""

    def set(self, n: int, value: str) -> None:
        while len(self.fields) <= n:
            self.fields.append("")
        self.fields[n] = value


@dataclass
class Message:
    segments: list[Segment]
    field_sep: str
    component_sep: str
    repetition_sep: str
    escape: str
    subcomponent_sep: str

    @property
    def encoding(self) -> str:
        return self.component_sep + self.repetition_sep + self.escape + self.subcomponent_sep

    def components(self, text: str) -> list[str]:
        return text.split(self.repetition_sep)[0].split(self.component_sep)

    def unescape(self, text: str) -> str:
        e = self.escape
        if not e or e not in text:
            return text
        table = {"F": self.field_sep, "S": self.component_sep, "R": self.repetition_sep, "E": e,
                 "T": self.subcomponent_sep}
        return re.sub(re.escape(e) + r"([FSRET])" + re.escape(e), lambda m: table[m.group(1)], text)

    def escape_text(self, text: str) -> str:
        e = self.escape
        out = text.replace(e, f"{e}E{e}")
        for char, code in ((self.field_sep, "F"), (self.component_sep, "S"), (self.repetition_sep, "R"),
                           (self.subcomponent_sep, "T")):
            out = out.replace(char, f"{e}{code}{e}")
        return out

    def render(self) -> str:
        lines = []
        for s in self.segments:
            if s.name == "MSH":
                lines.append("MSH" + self.field_sep + self.field_sep.join(s.fields[2:]))
            else:
                lines.append(self.field_sep.join([s.name, *s.fields[1:]]))
        return "\r".join(lines) + "\r"


def parse(text: str, max_obx: int | None = None) -> Message:
    """Parse one message; Hl7Error names the segment and field of the first problem.

    TooManyResults when it holds more than `max_obx` OBX segments: the answer (one entry per OBX)
    and the worker's memory grow with their count.
    """
    text = text.lstrip("\ufeff").replace("\r\n", "\r").replace("\n", "\r")
    raw = [line for line in text.split("\r") if line.strip()]
    if not raw:
        raise Hl7Error(1, "MSH", "the message is empty")
    first = raw[0]
    if not first.startswith("MSH") or len(first) < 5:
        raise Hl7Error(1, "MSH", "a message must start with an MSH segment")
    sep = first[3]
    if sep.isalnum() or sep in " \t":
        raise Hl7Error(1, "MSH-1", f"'{sep}' cannot be the field separator")
    encoding = first[4:].split(sep)[0]
    if len(encoding) < 2 or len(set(encoding)) != len(encoding) or sep in encoding:
        raise Hl7Error(1, "MSH-2", "encoding characters must be at least component and repetition "
                                   "separators, all different (usually ^~\\&)")
    encoding = encoding + "\\&"[len(encoding) - 2:] if len(encoding) < 4 else encoding
    message = Message([], sep, encoding[0], encoding[1], encoding[2], encoding[3])
    for number, line in enumerate(raw, start=1):
        name = line[:3]
        if not re.match(r"^[A-Z][A-Z0-9]{2}$", name) or (len(line) > 3 and line[3] != sep):
            raise Hl7Error(number, f"segment {number}", f"'{line[:3]}' is not a segment name followed by "
                                                        f"'{sep}'")
        if name == "MSH":
            if number != 1:
                raise Hl7Error(number, "MSH", "one message per request: a second MSH segment was found")
            fields = ["MSH", sep, *line[4:].split(sep)]
        else:
            fields = line.split(sep)
        message.segments.append(Segment(number, name, fields))
    if max_obx is not None:
        obx = [s for s in message.segments if s.name == "OBX"]
        if len(obx) > max_obx:
            raise TooManyResults(obx[max_obx].number, "OBX", f"at most {max_obx} OBX segments per message "
                                 f"(LABINTERP_HL7_MAX_OBX); this one has {len(obx)}")
    msh = message.segments[0]
    kind = message.components(msh.get(9))
    if kind[:2] != ["ORU", "R01"]:
        raise Hl7Error(1, "MSH-9", f"message type '{msh.get(9)[:20]}' is not ORU^R01")
    return message


def parse_dtm(value: str, segment: Segment, field_name: str,
              warnings: list[dict[str, str]]) -> tuple[datetime | None, bool]:
    """(datetime, precise to the day); None when empty or not a valid HL7 date/time.

    The datetime is the time as written: with an offset (+HHMM / -HHMM) it carries it as its tzinfo (verification
    orders and compares collection times as instants), without one it is naive (read as UTC, as every door
    reads a time without an offset). An age compares the calendar dates as written, offsets set aside. An
    invalid date (20261100, 20260015, 1970031) or offset (+2400) is no date, never the nearest valid one: it is
    named in `warnings` and the message is still read, as a missing date would be.
    """
    value = value.strip()
    if not value:
        return None, False
    match = _DTM.match(value)
    moment = None
    day = None
    if match:
        year, month, day, hour, minute, second = (int(p) if p else None for p in match.groups()[:6])
        sign, offset_hours, offset_minutes = match.groups()[6:]
        try:
            if sign is not None and int(offset_minutes) >= 60:
                raise ValueError("minutes of an offset")
            zone = None if sign is None else timezone((-1 if sign == "-" else 1) * timedelta(
                hours=int(offset_hours), minutes=int(offset_minutes)))
            moment = datetime(year, 1 if month is None else month, 1 if day is None else day,  # type: ignore[arg-type]
                              hour or 0, minute or 0, second or 0, tzinfo=zone)
        except ValueError:
            moment = None
    if moment is None:
        warning = {"code": "invalid_date",
                   "text": f"{field_name} '{value[:26]}' (segment {segment.number}) is not a valid HL7 date/time "
                           "(YYYYMMDD[HHMM[SS]]): it was not used."}
        if warning not in warnings:
            warnings.append(warning)
        return None, False
    return moment, day is not None


def group_collected(message: Message, obr: Segment | None, observations: list[Observation],
                    warnings: list[dict[str, str]]) -> datetime | None:
    """An OBR group's collection time (parse_dtm): OBR-7, else the first valid OBX-14 of the group."""
    if obr is not None:
        moment, _ = parse_dtm(message.components(obr.get(7))[0], obr, "OBR-7", warnings)
        if moment is not None:
            return moment
    for o in observations:
        moment, _ = parse_dtm(message.components(o.segment.get(14))[0], o.segment, "OBX-14", warnings)
        if moment is not None:
            return moment
    return None


def parse_range(text: str) -> tuple[float | None, float | None] | None:
    """OBX-7 as (low, high) inclusive bounds; '<5' gives a high just below 5. None: not readable."""
    match = _RANGE.match(text)
    if match:
        return float(match.group(1)), float(match.group(2))
    match = _ONE_SIDED.match(text)
    if match:
        comparison, bound = match.group(1), float(match.group(2))
        if comparison == "<":
            return None, math.nextafter(bound, -math.inf)
        if comparison == "<=":
            return None, bound
        if comparison == ">":
            return math.nextafter(bound, math.inf), None
        return bound, None
    return None


@dataclass
class Observation:
    """One OBX and what became of it."""

    segment: Segment
    obr: int  # index of the OBR group (0 when there is no OBR)
    entry: dict[str, Any]
    result: ResultInput | None = None
    notes: list[Segment] = field(default_factory=list)
    outcome: Outcome | None = None  # the engine's, once interpreted


@dataclass
class Interpretation:
    body: dict[str, Any]
    observations: list[Observation]
    message: Message


def interpret(engine: Engine, message: Message, lab: str | None = None) -> Interpretation:
    k = engine.profile(lab)
    pid = next((s for s in message.segments if s.name == "PID"), None)
    warnings: list[dict[str, str]] = []
    birth, precise = (None, False)
    sex = None
    if pid is not None:
        birth, precise = parse_dtm(message.components(pid.get(7))[0], pid, "PID-7", warnings)
        if birth is not None and not precise:
            warnings.append({"code": "birth_date_imprecise",
                             "text": "PID-7 gives no day of birth: age was not computed."})
            birth = None
        sex_code = message.components(pid.get(8))[0].strip().upper()
        sex = sex_of(sex_code) if sex_code else None
        if sex_code and sex is None:
            warnings.append({"code": "unknown_sex_code",
                             "text": f"PID-8 '{sex_code[:5]}' is not an HL7 administrative sex code: ignored."})
    groups: list[tuple[Segment | None, list[Observation]]] = [(None, [])]
    current: Observation | None = None
    for s in message.segments:
        if s.name == "OBR":
            groups.append((s, []))
            current = None
        elif s.name == "OBX":
            current = _observation(engine, k, message, s, len(groups) - 1)
            groups[-1][1].append(current)
        elif s.name == "NTE":
            if current is not None:
                current.notes.append(s)
        else:
            current = None
    panels = []
    for index, (obr, observations) in enumerate(groups):
        if not observations:
            continue
        # PID-7's, and this group's OBR-7 and OBX-14: each of its results carries them too.
        date_warnings = [w for w in warnings if w["code"] == "invalid_date"]
        collected = group_collected(message, obr, observations, date_warnings)
        age_days = None
        if birth is not None and collected is not None:
            age_days = (collected.replace(tzinfo=None) - birth.replace(tzinfo=None)).total_seconds() / 86400.0
            if age_days < 0:
                raise Hl7Error(pid.number if pid else 1, "PID-7", "the birth date is after the collection time "
                               "(OBR-7 or OBX-14)")
        elif birth is not None:
            warnings.append({"code": "no_collection_time", "text": "Neither OBR-7 nor OBX-14 gives the collection "
                             "time: age at collection could not be computed."})
        patient = Patient(age_days=age_days, sex=sex)
        usable = []
        for o in observations:
            if o.result is None:
                continue
            refusal = engine.refusal(Panel((o.result,), patient, None, lab))
            if refusal:
                o.entry["outcome"] = "not_interpreted"
                o.entry["reason"] = "; ".join(f"{_field_of(e.path)}: {e.reason}" for e in refusal)
                continue
            usable.append(o)
        panel_out: dict[str, Any] = {"obr": index or None, "age_days": None if age_days is None else age_days,
                                     "derived": [], "patterns": []}
        if usable:
            outcome = engine.interpret(Panel(tuple(o.result for o in usable if o.result), patient, None, lab))
            answer = render.answer(outcome)
            for o, result, one in zip(usable, answer["results"], outcome.results, strict=True):
                o.entry["outcome"] = "interpreted"
                o.entry["result"] = result
                o.outcome = one
                lab_flag = o.entry.get("laboratory_flag")
                if lab_flag:
                    o.entry["flag_agrees"] = lab_flag == result["flag"]
            panel_out["derived"], panel_out["patterns"] = answer["derived"], answer["patterns"]
            for o in usable:
                o.entry["result"]["warnings"] = [*o.entry["result"]["warnings"], *date_warnings]
        for warning in date_warnings:
            if warning not in warnings:
                warnings.append(warning)
        panels.append(panel_out)
    observations = [o for _, group in groups for o in group]
    msh = message.segments[0]
    body = {
        "message": {"control_id": msh.get(10) or None, "type": "ORU^R01", "version": msh.get(12) or None},
        "observations": [o.entry for o in observations],
        "panels": panels,
        "warnings": warnings,
        "data_version": k.data_version,
        "laboratory": k.lab,
        "disclaimer": k.disclaimer,
        "symptoms_note": k.symptoms_note,
    }
    return Interpretation(body, observations, message)


def _field_of(path: tuple[str | int, ...]) -> str:
    names = {"analyte": "OBX-3", "value": "OBX-5", "unit": "OBX-6", "reference_interval": "OBX-7",
             "comparator": "OBX-5", "specimen": "OBX-3", "sex": "PID-8"}
    for part in reversed(path):
        if isinstance(part, str) and part in names:
            return names[part]
    return "/".join(map(str, path)) or "OBX"


def obx_codes(message: Message, s: Segment) -> list[tuple[str, str]]:
    """OBX-3's primary triplet (3.1-3.3), then its alternate (3.4-3.6), as (code, coding system); never the
    display text."""
    return _triplets([message.unescape(p) for p in message.components(s.get(3))])


def _triplets(code_parts: list[str]) -> list[tuple[str, str]]:
    return [(code_parts[i].strip(), code_parts[i + 2].strip() if len(code_parts) > i + 2 else "")
            for i in (0, 3) if len(code_parts) > i and code_parts[i].strip()]


def obx_value(message: Message, s: Segment) -> tuple[Any, str | None, str]:
    """OBX-5 as a number (the text when it is not one: the engine refuses it with its own reason), its
    comparator (SN, or off-scale text) and OBX-6's unit (its code, else its text)."""
    raw_value = message.unescape(s.get(5).split(message.repetition_sep)[0])
    value: Any = raw_value.strip()
    comparator = None
    if s.get(2).strip().upper() == "SN":
        parts = raw_value.split(message.component_sep)
        comparator = parts[0].strip() or None
        if comparator == "=":
            comparator = None
        value = parts[1].strip() if len(parts) > 1 else ""
        if len(parts) > 3 and parts[2].strip():
            value = raw_value  # a ratio or range (SN with a separator) is not one number
            comparator = None
    else:
        found, number_text = split_comparator(value)
        if found is not None:
            comparator, value = found, number_text
    number: Any = read_number(value)
    if number is None:
        number = raw_value.strip()
    unit_parts = message.components(s.get(6))
    unit = message.unescape(unit_parts[0].strip() or (unit_parts[1].strip() if len(unit_parts) > 1 else ""))
    return number, comparator, unit


def _observation(engine: Engine, k: Knowledge, message: Message, s: Segment, obr: int) -> Observation:
    # the first of OBX-3's codes the engine knows, read with its coding system (LN: LOINC; any other: the
    # profile's codes.toml)
    code_parts = [message.unescape(p) for p in message.components(s.get(3))]
    triplets = _triplets(code_parts)  # as obx_codes reads them, with the display text kept for the entry
    code, system = triplets[0] if triplets else ("", "")
    for candidate, candidate_system in triplets:
        if engine.resolve_code(k, candidate, candidate_system or None)[0] is not None:
            code, system = candidate, candidate_system
            break
    status = s.get(11).strip().upper()
    entry: dict[str, Any] = {
        "segment": s.number, "set_id": s.get(1) or None, "code": code or None,
        "code_system": system or None,
        "code_text": code_parts[1] if len(code_parts) > 1 and code_parts[1] else None,
        "status": status or None,
        "laboratory_range": message.unescape(s.get(7)) or None,
        "laboratory_flag": (s.get(8).split(message.repetition_sep)[0].strip() or None),
    }
    o = Observation(s, obr, entry)
    if status in SKIPPED_STATUS:
        entry["outcome"] = "skipped"
        entry["reason"] = f"OBX-11 status {status}: {SKIPPED_STATUS[status]}"
        return o
    if engine.resolve_code(k, code, system or None)[0] is None:
        entry["outcome"] = "skipped"
        shown = "; ".join(f"'{c[:20]}' ({'system ' + t[:20] if t else 'no system'})" for c, t in triplets)
        mapped = (f"nor mapped by laboratory profile '{k.lab}' (codes.toml)" if k.lab
                  else "and no laboratory profile was named (?lab=) to map local codes")
        entry["reason"] = (f"OBX-3 code {shown} is not a LOINC code of an analyte this service interprets, {mapped}"
                           if code else "OBX-3 gives no code")
        return o
    number, comparator, unit = obx_value(message, s)
    sent = None
    range_text = entry["laboratory_range"]
    if range_text:
        bounds = parse_range(range_text)
        if bounds is None:
            entry["range_warning"] = (f"OBX-7 '{range_text[:30]}' is not a range this service reads "
                                      "(low-high, <high, >low): the profile's or default interval was used.")
        else:
            sent = SentInterval(bounds[0], bounds[1], None, f"the laboratory's range '{range_text[:30]}' (OBX-7)")
    o.result = ResultInput(code, number, unit, id=entry["set_id"],
                           comparator=comparator, reference_interval=sent, code_system=system or None)
    return o


def annotate(engine: Engine, interpretation: Interpretation, lab: str | None = None) -> str:
    """The message with OBX-7 and OBX-8 filled where empty, each followed by an NTE saying so."""
    k = engine.profile(lab)
    message = interpretation.message
    added: dict[int, Segment] = {}  # segment number of the OBX (or its last NTE) -> NTE to insert after
    for o in interpretation.observations:
        result = o.entry.get("result")
        if result is None or o.outcome is None:
            continue
        s = o.segment
        filled = []
        interval = result["reference_interval"]
        in_unit = render.bounds_in_unit(o.outcome, o.outcome.factor)
        if not s.get(7).strip() and interval is not None and in_unit is not None:
            low, high = in_unit
            text = (f"{_g(low)}-{_g(high)}" if low is not None and high is not None
                    else f">={_g(low)}" if low is not None else f"<={_g(high)}")
            s.set(7, message.escape_text(text))
            filled.append(f"OBX-7 (reference interval {text} {result['input']['unit']}, "
                          f"{interval['origin']}: {interval['applies_to']}; source: {interval['source']})")
        if not s.get(8).strip() and result["flag"]:
            s.set(8, result["flag"])
            filled.append(f"OBX-8 (flag {result['flag']}{', critical' if result['critical'] else ''})")
        if not filled:
            continue
        note = (f"Added by labinterp {__version__} (data {k.data_version}), not by the laboratory: "
                + "; ".join(filled) + ". Decision support only; verify against the laboratory's own ranges.")
        anchor = o.notes[-1].number if o.notes else s.number
        set_id = str(len(o.notes) + 1)
        added[anchor] = Segment(0, "NTE", ["NTE", set_id, "O", message.escape_text(note)])
    segments = []
    for s in message.segments:
        segments.append(s)
        if s.number in added:
            segments.append(added[s.number])
    return Message(segments, message.field_sep, message.component_sep, message.repetition_sep,
                   message.escape, message.subcomponent_sep).render()


def _g(value: float | None) -> str:
    return four(value, "")
