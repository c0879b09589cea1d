"""Verification outcomes -> the /v1/verify answer (the /v1/interpret answer plus dispositions), and CSV cells."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from labinterp.core.verification import Detail, PanelVerification, Reason, RuleOff, Verification, VerificationRules
from labinterp.render import v1
from labinterp.render.numbers import rounded


class _Filled(dict[str, str]):
    """Template values; a name a laboratory's text uses but the reason lacks reads as itself."""

    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def shown(rules: VerificationRules, value: Detail) -> str:
    """A reason's detail as its text shows it (the words are the data's: verification.toml [text] word.*)."""
    if value is None:
        return rules.texts["word.not_stated"]
    if isinstance(value, bool):
        return rules.texts["word.yes" if value else "word.no"]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (int, float)):
        return rounded(float(value))
    return value


def window(rules: VerificationRules, hours: Detail) -> str:
    """A rule's window in the data's words (window.any, window.hours)."""
    if not isinstance(hours, (int, float)) or isinstance(hours, bool):
        return rules.texts["window.any"]
    return rules.texts["window.hours"].format(hours=rounded(float(hours)))


def text(rules: VerificationRules, reason: Reason) -> str:
    template = rules.texts.get(reason.text_key) or rules.texts.get(reason.code, reason.code)
    values = _Filled({name: shown(rules, value) for name, value in reason.details})
    values["window"] = window(rules, reason.detail().get("window_hours"))
    if "grade" in values:  # a haemolysis grade in the data's words (`grade.<code>` in [text]), else its code
        values["grade"] = rules.texts.get(f"grade.{values['grade']}", values["grade"])
    return template.format_map(values)


def off_text(rules: VerificationRules, off: RuleOff) -> str:
    return rules.texts.get(f"rules_off.{off.why}", "{code}: off").format_map(_Filled(code=off.code))


def _json_detail(value: Detail) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def reason(rules: VerificationRules, r: Reason) -> dict[str, Any]:
    out: dict[str, Any] = {"code": r.code, "text": text(rules, r), "action": r.action, "holds": r.holds,
                           "source": None if r.source is None else rules.source_titles.get(r.source, r.source),
                           "source_id": r.source}
    for name, value in r.details:
        out.setdefault(name, _json_detail(value))
    return out


def verification(rules: VerificationRules, v: Verification) -> dict[str, Any]:
    return {"disposition": v.disposition, "reasons": [reason(rules, r) for r in v.reasons]}


def answer(pv: PanelVerification, *, packed: bool = False) -> dict[str, Any]:
    """The v1 interpretation, each result with its verification, and the panel's disposition. `packed`: for
    orjson.dumps only, as for v1.answer (the same bytes)."""
    out = v1.answer(pv.outcome, packed=packed)
    for result, v in zip(out["results"], pv.results, strict=True):
        result["verification"] = verification(pv.rules, v)
    out["disposition"] = pv.disposition
    out["verification"] = {
        "data_version": pv.rules.data_version,
        "rules_off": [{"code": off.code, "text": off_text(pv.rules, off)} for off in pv.rules_off],
    }
    return out


def csv_cells(rules: VerificationRules, v: Verification) -> tuple[str, str, str]:
    """(disposition, verification_actions, verification_reasons) for one CSV row."""
    actions: list[str] = []
    for r in v.reasons:
        if r.action not in actions:
            actions.append(r.action)
    return v.disposition, ";".join(actions), " | ".join(f"{r.code}: {text(rules, r)}" for r in v.reasons)
