"""Prefetched FHIR data -> the FHIR door's translation -> the engine -> CDS Hooks cards.

No rule lives here: results are read and interpreted exactly as `POST /fhir/Observation/$interpret`
does (labinterp.fhirio.translate), and every clinical text on a card comes from the engine's answer.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from labinterp.core import Engine
from labinterp.core.knowledge import Knowledge
from labinterp.core.outcomes import Outcome
from labinterp.fhirio.translate import Item, Reader, Translation, effective_text, interpret
from labinterp.render.numbers import general, sig

SERVICE_ID = "labinterp-electrolytes"
HOOK = "patient-view"
SUMMARY_LIMIT = 139
INDICATOR = {"LL": "critical", "HH": "critical", "L": "warning", "H": "warning"}


def prefetch_templates(k: Knowledge) -> dict[str, str]:
    """The Patient, and the Observations of every LOINC code the reference data reads (not derived ones)."""
    codes = ",".join(f"http://loinc.org|{c}" for c, v in sorted(k.loinc.items())
                     if not k.analytes[v.analyte].derived)
    return {
        "patient": "Patient/{{context.patientId}}",
        "labs": "Observation?patient={{context.patientId}}&code=" + codes + "&_sort=-date&_count=100",
    }


def discovery(k: Knowledge) -> dict[str, Any]:
    return {"services": [{
        "hook": HOOK,
        "id": SERVICE_ID,
        "title": "Calcium, magnesium and potassium results",
        "description": "Flags the patient's most recent calcium, ionized calcium, magnesium and potassium "
                       "results (and albumin-corrected calcium) against sourced reference intervals and critical "
                       "limits, with CTCAE v5.0 laboratory grades, symptoms and their sources. Uses the "
                       "prefetched data; a prefetch left out is fetched from fhirServer (https) with "
                       "fhirAuthorization, when this deployment allows that server.",
        "prefetch": prefetch_templates(k),
        "usageRequirements": "Prefetch 'patient' (for age at collection and sex) and 'labs' (a searchset "
                             "Bundle of Observations), or send fhirServer and fhirAuthorization (read access "
                             "to Patient and Observation) so that the service fetches them.",
    }]}


def _truncate(text: str) -> str:
    return text if len(text) <= SUMMARY_LIMIT else text[:SUMMARY_LIMIT - 1].rstrip() + "…"


def _when(item: Item) -> dt.datetime:
    text = effective_text(item.resource)
    if text:
        try:
            moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
            return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
        except ValueError:
            try:
                return dt.datetime.fromisoformat(text[:10]).replace(tzinfo=dt.UTC)
            except ValueError:
                pass
    return dt.datetime.min.replace(tzinfo=dt.UTC)


class CardMaker:
    def __init__(self, engine: Engine, base_url: str):
        self.engine = engine
        self.k = engine.knowledge
        self.base_url = base_url

    # ---------------------------------------------------------------- reading
    def translate(self, patient_id: str, patient: dict[str, Any] | None,
                  observations: list[dict[str, Any]]) -> Translation:
        entries: list[dict[str, Any]] = []
        if patient is not None:
            entries.append({"fullUrl": f"Patient/{patient_id}", "resource": patient})
        for i, obs in enumerate(observations):
            entries.append({"fullUrl": f"urn:labinterp:prefetch:labs:{i}", "resource": obs})
        return interpret(self.engine, Reader(self.k).read({"resourceType": "Bundle", "type": "collection",
                                                            "entry": entries}))

    # ------------------------------------------------------------------ cards
    def cards(self, translation: Translation) -> list[dict[str, Any]]:
        latest: dict[str, Item] = {}
        for item in translation.items:
            if item.answer is None:
                continue
            analyte = item.answer["analyte"]
            if analyte not in latest or _when(item) > _when(latest[analyte]):
                latest[analyte] = item
        cards: list[dict[str, Any]] = []
        chosen = set(map(id, latest.values()))
        for item in sorted(latest.values(), key=lambda i: i.answer["analyte"]):  # type: ignore[index]
            assert item.answer is not None and item.outcome is not None
            card = self.result_card(item.answer, item.outcome, item)
            if card:
                cards.append(card)
        for group in translation.groups:
            if group.answer is None or group.outcome is None:
                continue
            live = [i for i in group.items if i.answer is not None]
            calcium = next((i for i in live if i.answer["analyte"] == "calcium"), None)  # type: ignore[index]
            if calcium is not None and id(calcium) in chosen:
                for derived, outcome in zip(group.answer["derived"], group.outcome.derived, strict=True):
                    card = self.result_card(derived, outcome.outcome, calcium, derived=True)
                    if card:
                        cards.append(card)
            for pattern, hit in zip(group.answer["patterns"], group.outcome.patterns, strict=True):
                involved = [live[r["index"]] for r in pattern["results"] if r["index"] is not None]
                if involved and all(id(i) in chosen for i in involved):
                    cards.append(self.pattern_card(pattern, hit.pattern.source))
        skipped = [i for i in translation.items if i.answer is None and any(
            issue.severity in ("warning", "error") for issue in i.issues)]
        if skipped:
            cards.append(self.skipped_card(skipped))
        order = {"critical": 0, "warning": 1, "info": 2}
        return sorted(cards, key=lambda c: order[c["indicator"]])

    def _source(self, source_id: str | None) -> dict[str, Any]:
        """The card's source: the page of the data source that decided, else this service."""
        url = (self.k.sources[source_id].url if source_id else "") or self.base_url
        return {"label": f"labinterp (reference data {self.k.data_version})", "url": url}

    def _display(self, result: dict[str, Any]) -> str:
        return self.k.analytes[result["analyte"]].display

    def _value(self, result: dict[str, Any], item: Item, derived: bool) -> str:
        if derived:
            return f"{sig(result['value']['value'])} {result['value']['unit']}"
        shown = result["input"]
        return f"{shown.get('comparator', '')}{shown['value']:g} {item.unit_text or shown['unit']}"

    def result_card(self, result: dict[str, Any], outcome: Outcome, item: Item,
                    derived: bool = False) -> dict[str, Any] | None:
        flag = result["flag"]
        reason = result["classification_reason"]
        value = self._value(result, item, derived)
        name = self._display(result)
        if flag in INDICATOR:
            indicator = INDICATOR[flag]
            summary = f"{result['flag_display']} {name.lower()}: {value}"
        elif reason == "implausible":
            indicator = "warning"
            summary = f"Implausible {name.lower()} result {value}: verify the specimen"
        elif flag is None:
            indicator = "info"
            summary = f"{name} {value} could not be classified"
        else:
            return None  # normal: no card
        if outcome.sent is not None:
            source_id = None  # the laboratory's own range: no page of ours to point to
        elif outcome.interval is not None:
            source_id = outcome.interval.source
        else:
            source_id = None if outcome.critical_rule is None else outcome.critical_rule.source
        return {
            "uuid": str(uuid.uuid4()),
            "summary": _truncate(summary),
            "indicator": indicator,
            "detail": self.detail(result, item, value, derived),
            "source": self._source(source_id),
        }

    def detail(self, result: dict[str, Any], item: Item, value: str, derived: bool) -> str:
        lines = [f"**{self._display(result)}** (LOINC {result['loinc']}): **{value}**"
                 + (f", collected {effective_text(item.resource)}" if effective_text(item.resource) else "")
                 + f" — {result['flag_display'] or 'not classified'}", ""]
        if derived:
            lines.append(f"- Formula: {result['formula']} (source: {result['formula_source']})")
        lines.append(f"- Rule: {result['basis']['rule']}")
        ri = result["reference_interval"]
        if ri is not None:
            st = ri["stated"]
            lines.append(f"- Reference interval ({ri['origin']}): {_num(st['low'])} to {_num(st['high'])} "
                         f"{st['unit']}, {ri['applies_to']} (source: {ri['source']})")
        crit = result["critical_limits"]
        if crit is not None:
            sides = [f"{side} {crit[side + '_comparison']} {_num(crit['stated'][side])} {crit['stated']['unit']}"
                     for side in ("low", "high") if crit[side] is not None]
            lines.append(f"- Critical limits ({crit['origin']}): {'; '.join(sides)} (source: {crit['source']})")
        grade = result["ctcae"]
        if grade is not None:
            lines.append(f"- CTCAE v{grade['version']} {grade['term']}: **grade {grade['grade']}** "
                         f"({grade['basis']}) (source: {grade['source']})")
        if result["symptoms"]:
            lines.append(f"- Symptoms associated with {result.get('condition', '')}:")
            for symptom in result["symptoms"]:
                lines.append(f"  - {symptom['text']} ({symptom['system']}; source: {symptom['source']})")
        for note in result["notes"]:
            lines.append(f"- {note['text']}" + (f" (source: {note['source']})" if note.get("source") else ""))
        for warning in result["warnings"]:
            lines.append(f"- Warning: {warning['text']}"
                         + (f" (source: {warning['source']})" if warning.get("source") else ""))
        lines += ["", f"_{self.k.disclaimer}_"]
        if result["symptoms"]:
            lines += ["", f"_{self.k.symptoms_note}_"]
        return "\n".join(lines)

    def pattern_card(self, pattern: dict[str, Any], source_id: str) -> dict[str, Any]:
        critical = any(r["flag"] in ("LL", "HH") for r in pattern["results"])
        involved = ", ".join(f"{r['analyte'].replace('_', ' ')} ({r['flag']})" for r in pattern["results"])
        detail = "\n".join([f"**{pattern['title']}**: {involved}", "", pattern["text"], "",
                            f"Source: {pattern['source']}", "", f"_{self.k.disclaimer}_"])
        return {"uuid": str(uuid.uuid4()), "summary": _truncate(pattern["title"]),
                "indicator": "critical" if critical else "warning", "detail": detail,
                "source": self._source(source_id)}

    def skipped_card(self, items: list[Item]) -> dict[str, Any]:
        lines = ["These prefetched results were not interpreted:", ""]
        for item in items:
            reasons = "; ".join(i.text for i in item.issues if i.severity in ("warning", "error"))
            code = ", ".join(c for c in _codes(item.resource)) or "no code"
            lines.append(f"- {code}: {reasons}")
        return {"uuid": str(uuid.uuid4()),
                "summary": _truncate(f"{len(items)} result{'s' if len(items) > 1 else ''} could not be interpreted"),
                "indicator": "info", "detail": "\n".join(lines), "source": self._source(None)}


def _codes(resource: dict[str, Any]) -> list[str]:
    from labinterp.fhirio.translate import loinc_codes

    return [f"LOINC {c}" for c in loinc_codes(resource)]


def _num(value: float | None) -> str:
    return general(value, "none")
