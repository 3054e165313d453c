"""How the work scales: each scenario's time as its work grows 10× and 100×, checked for linear-or-better growth.

Measured: the scaling series the scenarios record (consent checks 100 -> 1,000 -> 10,000; relayed grants
16 -> 160 -> 1,600; record size 1 -> 10 -> 100 MB; audit history 300 -> 3,000 -> 30,000 disclosures), each with
its baseline's series from the same run. For each step the growth exponent k of time ~ work^k is reported;
k ≤ 1.15 (linear within noise) or less passes; a k near 2 would be a quadratic step.

    python -m benchmarks.scaling        # runs those four scenarios, then the analysis
"""

from __future__ import annotations

from typing import Any

from benchmarks._common import dump, growth_exponent

TOLERANCE = 1.15


def analyze(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    curves = {}
    for name, result in results.items():
        scaling = result.get("scaling") if isinstance(result, dict) else None
        if not scaling or len(scaling.get("points", [])) < 2:
            continue
        points = [(float(w), float(t)) for w, t in scaling["points"]]
        exponents = growth_exponent(points)
        base = [(float(w), float(t)) for w, t in scaling.get("baseline_points", [])]
        curves[name] = {
            "work": scaling["work"],
            "points": points,
            "exponents": exponents,
            "baseline_points": base,
            "baseline_exponents": growth_exponent(base) if len(base) >= 2 else [],
            "growth": max(points[-1][0] / points[0][0], 1.0),
            "linear_or_better": all(k <= TOLERANCE for k in exponents),
        }
    return {
        "scenario": "scaling",
        "target": f"linear or better (every growth exponent <= {TOLERANCE})",
        "met": bool(curves) and all(c["linear_or_better"] for c in curves.values()),
        "curves": curves,
    }


def run() -> dict[str, Any]:
    from benchmarks import audit_verify, consent_check, grant_relay, upload

    results = {
        "consent_check": consent_check.run(),
        "grant_relay": grant_relay.run(),
        "upload": upload.run(),
        "audit_verify": audit_verify.run(),
    }
    return analyze(results)


def main() -> None:
    dump(run())


if __name__ == "__main__":
    main()
