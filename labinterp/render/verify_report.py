"""The verification validation report: a self-contained HTML page (inline SVG) and a terminal summary."""

from __future__ import annotations

from html import escape
from typing import Any

from labinterp.core.verification import ORDER, VerificationRules, VerifySummary
from labinterp.render.numbers import rounded
from labinterp.render.verify import window

ALERT_CODES = ("delta_check", "edta_contamination", "iv_fluid_contamination", "hemolysis")
STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:60rem;color:#1b1b1b;line-height:1.4}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #ccc}
table{border-collapse:collapse;width:100%;margin:.5rem 0}td,th{border:1px solid #ccc;padding:.25rem .5rem;
text-align:left;vertical-align:top}th{background:#f2f2f2}td.n{text-align:right;font-variant-numeric:tabular-nums}
.big{font-size:2.2rem;font-weight:600}.muted{color:#555;font-size:.9rem}svg text{font-size:12px}
"""


def percent(part: int, whole: int) -> float:
    return 100.0 * part / whole if whole else 0.0


def pct(part: int, whole: int) -> str:
    return f"{percent(part, whole):.1f} %"


def bars(items: list[tuple[str, float, str]], colour: str, width: int = 640) -> str:
    """A horizontal bar chart as inline SVG: (label, value 0-100, shown text) per bar."""
    row, label_w, chart_w = 22, 190, width - 190 - 90
    height = row * len(items) + 4
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}">']
    for i, (label, value, shown) in enumerate(items):
        y = 2 + i * row
        length = max(0.0, min(100.0, value)) / 100.0 * chart_w
        parts.append(f'<text x="0" y="{y + 15}">{escape(label)}</text>'
                     f'<rect x="{label_w}" y="{y + 3}" width="{chart_w}" height="15" fill="#eee"/>'
                     f'<rect class="bar" x="{label_w}" y="{y + 3}" width="{length:.1f}" height="15" fill="{colour}">'
                     f'<title>{escape(label)}: {escape(shown)}</title></rect>'
                     f'<text x="{label_w + chart_w + 6}" y="{y + 15}">{escape(shown)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _source(rules: VerificationRules, sid: str | None) -> str:
    if not sid:
        return '<span class="muted">local policy (no clinical figure)</span>'
    title = escape(rules.source_titles.get(sid, sid))
    url = rules.source_urls.get(sid)
    return f'{title} <span class="muted">[{escape(sid)}]</span>' + (
        f' <span class="muted">{escape(url)}</span>' if url else "")


def thresholds(rules: VerificationRules) -> list[tuple[str, str, str, str]]:
    """(rule, state, thresholds in words, source) for every rule, in the order they apply."""
    out: list[tuple[str, str, str, str]] = []
    off = {o.code: o.why for o in rules.rules_off()}
    for code in ORDER:
        state = "on" if code not in off else ("off (switched off)" if off[code] == "disabled" else "off (no data)")
        action = rules.actions.get(code, "")
        source = _source(rules, rules.sources.get(code))
        if code == "critical_value":
            text = f"critical limits of limits.toml (or the profile's); action {action}"
            source = "the source of each critical limit (see /v1/reference-intervals)"
        elif code == "implausible":
            text = f"implausible limits of limits.toml; action {action}"
            source = "the source of each implausible limit (see /v1/reference-intervals)"
        elif code == "off_scale":
            text = f"a result reported with a comparator (<, <=, >, >=); action {action}"
        elif code == "measuring_range":
            ranges = [f"{m.analyte} {rounded(m.stated_low)}-{rounded(m.stated_high)} {m.unit}"
                      for m in rules.measuring.values()]
            text = (", ".join(ranges) or "none stated") + f"; above: {action}, below: {rules.below_action}"
            ranged = sorted({m.source for m in rules.measuring.values() if m.source})
            source = "; ".join(_source(rules, s) for s in ranged) or "the laboratory's instrument"
        elif code == "hemolysis":
            lines = []
            for h in rules.hemolysis.values():
                tiers = ", ".join(f"{t.comparison} {rounded(t.threshold)} {rules.index_unit}: {t.action}"
                                  for t in h.tiers)
                lines.append(f"{h.analyte}: {tiers}")
            grades = ", ".join(f"{g}: {a}" for g, a in rules.grades.items())
            text = "; ".join(lines) + (f"; qualitative grades {grades}" if grades else "")
            cited = sorted({h.source for h in rules.hemolysis.values()}
                           | {s for s in (rules.index_source, rules.grade_source) if s})
            source = "; ".join(_source(rules, s) for s in cited)
        elif code == "edta_contamination":
            e = rules.edta
            text = (f"potassium >= {rounded(e.stated)} {e.unit} with low (L/LL) {' or '.join(e.low_calcium)}; "
                    f"holds {', '.join(e.affects)}; action {action}")
            source = "; ".join(_source(rules, s) for s in (e.source, e.affects_source) if s)
        elif code == "iv_fluid_contamination":
            parts = []
            for r in rules.iv_fluid.values():
                if r.change_percent_at_most is not None:
                    parts.append(f"{r.analyte} change <= {rounded(r.change_percent_at_most)} %")
                else:
                    parts.append(f"{r.analyte} rise >= {rounded(r.stated_rise)} {r.unit}")
            text = (", ".join(parts) + f" vs the previous result (window: {window(rules, rules.iv_window_hours)}); "
                    f"whole specimen: {action}")
            source += "; " + _source(rules, rules.window_source)
        elif code == "delta_check":
            parts = []
            for d in rules.delta.values():
                within = window(rules, d.window_hours)
                if d.absolute_limit is not None:
                    parts.append(f"{d.analyte} > {rounded(d.stated_absolute)} {d.unit} within {within}")
                elif d.percent_limit is not None:
                    parts.append(f"{d.analyte} > {rounded(d.percent_limit)} % within {within}")
                else:
                    limit = d.limit_percent(rules.delta_z)
                    parts.append(f"{d.analyte} RCV {rounded(limit)} % (CVI {rounded(d.cvi_percent)} %, "
                                 f"CVA {rounded(d.cva_percent)} %, z {rounded(rules.delta_z)}) within {within}")
            text = "; ".join(parts) or "no analyte configured"
            sids = sorted({s for d in rules.delta.values() for s in (d.source, d.cvi_source) if s})
            source = "; ".join(_source(rules, s) for s in [rules.sources.get("delta_check"), *sids] if s)
        else:
            text = f"no interval applies to the result; action {action}"
        out.append((code, state, text, source))
    return out


def html(summary: VerifySummary, rules: VerificationRules, file_name: str) -> str:
    """The report page: rates overall and per analyte, holds by reason and action, alerts, thresholds."""
    n = summary.rows
    analytes = sorted({a for a, _ in summary.by_analyte})
    per_analyte = []
    for a in analytes:
        total = summary.by_analyte[(a, "release")] + summary.by_analyte[(a, "hold")]
        per_analyte.append((a, total, summary.by_analyte[(a, "release")], summary.by_analyte[(a, "hold")]))
    reasons = [(code, summary.by_reason[code]) for code in ORDER if summary.by_reason[code]]
    actions = sorted(summary.by_action.items(), key=lambda item: -item[1])
    lab = rules.lab or "default rules (no laboratory profile)"
    out: list[str] = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">",
        f"<title>Verification report: {escape(file_name)}</title><style>{STYLE}</style></head><body>",
        f"<h1>Verification report: {escape(file_name)}</h1>",
        f'<p class="muted">Laboratory: {escape(lab)}. Verification data version {escape(rules.data_version)}. '
        "The rules apply in the order listed under Thresholds; a result is released only when no rule holds "
        "it (CLSI AUTO10/AUTO15 autoverification; EP33 delta checks).</p>",
        "<h2>Autoverification rate</h2>",
        f'<p><span class="big" id="overall-rate">{pct(summary.released, n)}</span> of {n:,} results released '
        f"without review ({summary.released:,} released, {summary.held:,} held); "
        f"{summary.errors:,} rows could not be interpreted (not counted).</p>",
        bars([("overall", percent(summary.released, n), pct(summary.released, n))]
             + [(a, percent(r, t), pct(r, t)) for a, t, r, _ in per_analyte], "#2e7d32"),
        '<table id="per-analyte"><tr><th>Analyte</th><th>Results</th><th>Released</th><th>Held</th>'
        "<th>Autoverification rate</th></tr>",
    ]
    for a, t, r, h in per_analyte:
        out.append(f'<tr><td>{escape(a)}</td><td class="n">{t:,}</td><td class="n">{r:,}</td>'
                   f'<td class="n">{h:,}</td><td class="n">{pct(r, t)}</td></tr>')
    out.append("</table>")
    out.append("<h2>Holds by reason</h2><p class=\"muted\">A held result counts once under every rule that holds "
               "it; rates are of all results.</p>")
    if reasons:
        out.append(bars([(code, percent(c, n), f"{c:,} ({pct(c, n)})") for code, c in reasons], "#c62828"))
    out.append('<table id="by-reason"><tr><th>Reason</th><th>Held results</th><th>Rate</th></tr>')
    for code, c in reasons:
        out.append(f'<tr><td>{escape(code)}</td><td class="n">{c:,}</td><td class="n">{pct(c, n)}</td></tr>')
    out.append("</table><h2>Holds by action</h2>")
    if actions:
        out.append(bars([(a, percent(c, n), f"{c:,} ({pct(c, n)})") for a, c in actions], "#ef6c00"))
    out.append('<table id="by-action"><tr><th>Action</th><th>Reasons</th><th>Rate</th></tr>')
    for a, c in actions:
        out.append(f'<tr><td>{escape(a)}</td><td class="n">{c:,}</td><td class="n">{pct(c, n)}</td></tr>')
    out.append("</table><h2>Alert rates</h2><p class=\"muted\">Results on which the rule fired, holding or "
               "releasing with a comment.</p>")
    out.append(bars([(code, percent(summary.alerts[code], n), f"{summary.alerts[code]:,} "
                      f"({pct(summary.alerts[code], n)})") for code in ALERT_CODES], "#1565c0"))
    out.append('<table id="alerts"><tr><th>Rule</th><th>Alerts</th><th>Rate</th></tr>')
    for code in ALERT_CODES:
        out.append(f'<tr><td>{escape(code)}</td><td class="n">{summary.alerts[code]:,}</td>'
                   f'<td class="n">{pct(summary.alerts[code], n)}</td></tr>')
    out.append("</table><h2>Thresholds in force</h2>")
    out.append('<table id="thresholds"><tr><th>Rule</th><th>State</th><th>Thresholds and action</th>'
               "<th>Source</th></tr>")
    for code, state, text, source in thresholds(rules):
        out.append(f"<tr><td>{escape(code)}</td><td>{escape(state)}</td><td>{escape(text)}</td><td>{source}</td></tr>")
    out.append("</table></body></html>")
    return "\n".join(out)


def terminal(summary: VerifySummary) -> str:
    """A one-screen summary for the terminal."""
    n = summary.rows
    lines = [f"results {n:,}: released {summary.released:,} ({pct(summary.released, n)}), held {summary.held:,} "
             f"({pct(summary.held, n)}); rows with errors {summary.errors:,}"]
    for a in sorted({a for a, _ in summary.by_analyte}):
        r, h = summary.by_analyte[(a, "release")], summary.by_analyte[(a, "hold")]
        lines.append(f"  {a:<18} {r + h:>10,} results, autoverified {pct(r, r + h):>7}")
    held: list[Any] = [(code, summary.by_reason[code]) for code in ORDER if summary.by_reason[code]]
    if held:
        lines.append("holds by reason: " + ", ".join(f"{code} {c:,}" for code, c in held))
    if summary.by_action:
        lines.append("holds by action: " + ", ".join(f"{a} {c:,}" for a, c in summary.by_action.most_common()))
    return "\n".join(lines)
