"""A self-contained HTML rendering of a verification :class:`~ledger_service.audit.verifier.Report`.

One file, no external resources: inline CSS, and one inline SVG timeline per patient (each disclosure a
mark on a time axis: consented, break-glass, or in violation). Every violation is listed with the
explanation of its code.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime
from html import escape
from typing import Final

from ledger_service.audit.verifier import VIOLATION_CODES, Report, TimelinePoint

_OK_COLOR: Final = "#1f7a3d"
_EMERGENCY_COLOR: Final = "#d97706"
_BAD_COLOR: Final = "#b42318"

_CSS: Final = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
main{max-width:1100px;margin:0 auto;padding:24px}
h1{font-size:22px;margin:0 0 4px}
h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #d9dde3;padding-bottom:4px}
.verdict{display:inline-block;padding:4px 10px;border-radius:4px;font-weight:600;color:#fff}
.ok{background:#1f7a3d}.bad{background:#b42318}
table{border-collapse:collapse;width:100%;background:#fff;margin:6px 0}
th,td{border:1px solid #e1e4e8;padding:5px 8px;text-align:left;vertical-align:top}
th{background:#eef0f3;font-weight:600}
td.num{text-align:right;font-variant-numeric:tabular-nums}
code,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:12px;word-break:break-all}
.code{font-weight:600;color:#b42318;white-space:nowrap}
.muted{color:#5b6472}
.card{background:#fff;border:1px solid #e1e4e8;border-radius:6px;padding:10px 12px;margin:8px 0}
.legend span{margin-right:14px}
.dot{display:inline-block;width:10px;height:10px;border-radius:50%;vertical-align:middle;margin-right:4px}
ul{margin:4px 0 4px 18px;padding:0}
""" + (
    f".dot.consented{{background:{_OK_COLOR}}}.dot.emergency{{background:{_EMERGENCY_COLOR}}}"
    f".dot.violation{{background:{_BAD_COLOR}}}\n"
)
# The CSP source that allows the report's one stylesheet and nothing else: the report has no style
# attributes and no scripts, so the portal can show it under its own policy (consent_api/app.py).
STYLE_SOURCE: Final = "'sha256-" + base64.b64encode(hashlib.sha256(_CSS.encode()).digest()).decode() + "'"


def _when(timestamp: int) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _short(value: str | None, keep: int = 10) -> str:
    if not value:
        return ""
    return value if len(value) <= 2 * keep + 1 else f"{value[:keep]}…{value[-6:]}"


def _timeline_svg(patient: str, points: Sequence[TimelinePoint], start: int, end: int) -> str:
    width, height, left, right = 1000, 34 + 18 * 3, 110, 20
    span = max(end - start, 1)
    lanes = {"consented": 0, "emergency": 1, "violation": 2}
    rows = []
    for name, row in lanes.items():
        y = 22 + row * 18
        rows.append(
            f'<text x="4" y="{y + 4}" font-size="11" fill="#5b6472">{name}</text>'
            f'<line x1="{left}" y1="{y}" x2="{width - right}" y2="{y}" stroke="#e1e4e8"/>'
        )
    marks = []
    for p in points:
        x = left + (p.timestamp - start) * (width - left - right) / span
        lane = "violation" if not p.ok else ("emergency" if p.emergency else "consented")
        color = _BAD_COLOR if not p.ok else (_EMERGENCY_COLOR if p.emergency else _OK_COLOR)
        y = 22 + lanes[lane] * 18
        title = escape(
            f"{_when(p.timestamp)} block {p.block}: record {p.record_id} to {p.accessor} for {p.purpose}"
            + (" (break-glass)" if p.emergency else "")
            + ("" if p.ok else " — VIOLATION")
            + (" [batched]" if p.source == "batch" else "")
        )
        marks.append(f'<circle cx="{x:.1f}" cy="{y}" r="4.5" fill="{color}"><title>{title}</title></circle>')
    axis_y = height - 6
    axis = (
        f'<text x="{left}" y="{axis_y}" font-size="10" fill="#5b6472">{escape(_when(start))}</text>'
        f'<text x="{width - right}" y="{axis_y}" font-size="10" fill="#5b6472" text-anchor="end">'
        f"{escape(_when(end))}</text>"
    )
    label = escape(f"Disclosures of patient {patient} over time")
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="100%" role="img" '
        f'aria-label="{label}"><rect width="{width}" height="{height}" fill="#fff"/>'
        + "".join(rows)
        + "".join(marks)
        + axis
        + "</svg>"
    )


def render_html(report: Report) -> str:
    """The report as one self-contained HTML page."""
    data = report.to_json()
    verdict = (
        '<span class="verdict ok">PASSED: no violation found</span>'
        if report.ok
        else f'<span class="verdict bad">FAILED: {len(report.violations)} violation(s)</span>'
    )
    scope = data["scope"]
    scope_text = ", ".join(
        f"{k} {escape(str(v))}" for k, v in (("patient", scope["patient"]), ("record", scope["recordId"])) if v
    )
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>Consent Ledger verification — {'passed' if report.ok else 'failed'}</title>",
        f"<style>{_CSS}</style></head><body><main>",
        "<h1>Consent Ledger — independent verification report</h1>",
        f"<p>{verdict}</p>",
        "<div class='card'>",
        f"<div>Ledger <code>{escape(report.contract)}</code> on chain {report.chain_id}</div>",
        f"<div>Blocks {report.from_block} to {report.to_block}"
        + (f", checks from block {scope['fromBlock']}" if scope["fromBlock"] else "")
        + (f"; scope: {scope_text}" if scope_text else "; scope: everything")
        + "</div>",
        f"<div class='muted'>Started {escape(report.started_at)}, took {report.duration:.2f} s</div>",
        "</div>",
        "<h2>Summary</h2><table><tr><th>what</th><th>count</th></tr>",
    ]
    for key, value in data["summary"].items():
        parts.append(f"<tr><td>{escape(key)}</td><td class='num'>{value:,}</td></tr>")
    parts.append("</table>")

    parts.append("<h2>What was checked</h2><ul>")
    parts.extend(f"<li>{escape(c)}</li>" for c in report.checks)
    parts.append("</ul>")
    if report.notes:
        parts.append("<h2>Not checked</h2><ul>")
        parts.extend(f"<li>{escape(n)}</li>" for n in report.notes)
        parts.append("</ul>")

    parts.append("<h2>Violations</h2>")
    if not report.violations:
        parts.append("<p>None.</p>")
    else:
        parts.append("<table><tr><th>code</th><th>count</th><th>meaning</th></tr>")
        for code, count in report.violations_by_code().items():
            parts.append(
                f"<tr><td class='code'>{escape(code)}</td><td class='num'>{count}</td>"
                f"<td>{escape(VIOLATION_CODES.get(code, ''))}</td></tr>"
            )
        parts.append("</table>")
        for v in report.violations:
            where = [
                f"record <code>{escape(v.record_id)}</code>" if v.record_id else "",
                f"block {v.block}" if v.block is not None else "",
                f"tx <code>{escape(v.tx)}</code>" if v.tx else "",
                f"entry {escape(v.entry)}" if v.entry else "",
                f"patient <code>{escape(v.patient)}</code>" if v.patient else "",
            ]
            parts.append(
                "<div class='card'>"
                f"<div><span class='code'>{escape(v.code)}</span> — {escape(VIOLATION_CODES.get(v.code, ''))}</div>"
                f"<div>{escape(v.message)}</div>"
                f"<div class='muted'>{' · '.join(w for w in where if w)}</div></div>"
            )

    parts.append("<h2>Break-glass accesses (flagged for review)</h2>")
    if not report.emergencies:
        parts.append("<p>None.</p>")
    else:
        parts.append(
            "<table><tr><th>time</th><th>block</th><th>record</th><th>patient</th><th>accessor</th>"
            "<th>reason</th><th>authorized</th></tr>"
        )
        for e in report.emergencies:
            reason = (
                escape(e.reason) if e.reason else f"<span class='muted'>hash {escape(_short(e.reason_hash))}</span>"
            )
            parts.append(
                f"<tr><td>{escape(_when(e.timestamp))}</td><td class='num'>{e.block}</td>"
                f"<td><code>{escape(_short(e.record_id))}</code></td><td><code>{escape(e.patient)}</code></td>"
                f"<td><code>{escape(e.accessor)}</code></td><td>{reason}</td>"
                f"<td>{'yes' if e.authorized else '<b>NO</b>'}</td></tr>"
            )
        parts.append("</table>")

    parts.append("<h2>Disclosure timeline per patient</h2>")
    parts.append(
        "<p class='legend'>"
        "<span><i class='dot consented'></i>consented</span>"
        "<span><i class='dot emergency'></i>break-glass</span>"
        "<span><i class='dot violation'></i>violation</span>"
        "<span class='muted'>hover a mark for details</span></p>"
    )
    if not report.timeline:
        parts.append("<p>No disclosures in scope.</p>")
    else:
        start = min(p.timestamp for p in report.timeline)
        end = max(p.timestamp for p in report.timeline)
        by_patient: dict[str, list[TimelinePoint]] = {}
        for p in report.timeline:
            by_patient.setdefault(p.patient, []).append(p)
        for patient, points in sorted(by_patient.items()):
            bad = sum(1 for p in points if not p.ok)
            emergencies = sum(1 for p in points if p.emergency)
            parts.append(
                f"<div class='card'><div><code>{escape(patient)}</code> — {len(points)} disclosure(s), "
                f"{emergencies} break-glass, {bad} in violation</div>"
                f"{_timeline_svg(patient, points, start, end)}</div>"
            )
    parts.append("</main></body></html>")
    return "\n".join(parts)
