"""Run every benchmark scenario, then write benchmarks/results/latest.json, the PNG plots, and the results
table (with the machine's cores, memory and versions) into BENCHMARKS.md between its result markers.

Each figure is a ratio against a baseline measured in the same run on the same machine (see each scenario's
docstring for what is measured against what). ``make bench`` runs this.

    python -m benchmarks.run [--only gas consent_check ...] [--no-write]
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from benchmarks._common import RESULTS_DIR, log, machine

SCENARIOS = ("gas", "consent_check", "grant_relay", "read_path", "upload", "audit_verify")
BENCHMARKS_MD = Path(__file__).resolve().parent.parent / "BENCHMARKS.md"
BEGIN = "<!-- bench:results:begin (written by python -m benchmarks.run) -->"
END = "<!-- bench:results:end -->"
OP_LABELS = {
    "grant": "relayed grant (grantConsentBySig)",
    "grant_first": "the patient's first grant (its nonce word from zero)",
    "grant_passkey": "passkey-signed grant (grantConsentBySig, ERC-1271 WebAuthn)",
    "revoke": "relayed revoke (revokeConsentBySig)",
    "anchor": "record anchor (anchorRecordBySig)",
    "amend": "amendment (amendRecordBySig)",
    "logAccess": "disclosure (logAccessBySig)",
    "emergency": "break-glass disclosure (logEmergencyAccessBySig)",
    "erase": "erasure (eraseRecordBySig)",
    "undelegate": "guardian removal (revokeDelegateBySig)",
    "batch": "batched disclosure, per entry at N=1,000",
}


def _mark(met: bool | None) -> str:
    return "n/a" if met is None else ("**yes**" if met else "**NO**")


def table(results: dict[str, Any]) -> list[str]:
    rows = ["| scenario | project figure | baseline (same run) | ratio | target | met |", "|---|---|---|---:|---|---|"]
    gas = results.get("gas", {})
    for name, op in gas.get("ops", {}).items():
        if name == "batch":
            figure = f"{op['gas_per_entry']} gas/entry ({op['gas_used']:,} per anchor)"
            base = f"floor {op['floor_per_entry']} gas/entry"
            target = "≤ 1.25× floor; ≤ 50 gas/entry"
        elif name == "grant_passkey":
            figure = f"{op['gas_used']:,} gas (+{op['over_ecdsa']:,} over ECDSA)"
            base = f"ECDSA grant {op['ecdsa_grant']:,}; EVM floor {op['floor']:,}"
            target = "≤ ECDSA grant + 30,000"
        else:
            figure, base, target = f"{op['gas_used']:,} gas", f"EVM floor {op['floor']:,}", "≤ 1.25× floor"
        rows.append(f"| gas: {OP_LABELS[name]} | {figure} | {base} | {op['ratio']}× | {target} | {_mark(op['met'])} |")
    cc = results.get("consent_check", {})
    if "ratio" in cc:
        rows.append(
            f"| consent check ({cc['calls']} sequential `authorizing_consent`) | {cc['service_checks_per_s']:,} "
            f"checks/s, p50 {cc['service_p50_ms']} ms | raw eth_call {cc['raw_eth_call_per_s']:,}/s, "
            f"p50 {cc['raw_p50_ms']} ms | {cc['ratio']}× | ≥ 0.5× | {_mark(cc['met'])} |"
        )
    gr = results.get("grant_relay", {})
    if "ratio" in gr:
        rows.append(
            f"| grant relay ({gr['grants']} grants, {gr['clients']} concurrent clients) | {gr['api_grants_per_s']} "
            f"grants/s, p50 {gr['api_p50_ms']} ms | bare sign+send {gr['bare_submissions_per_s']}/s | "
            f"{gr['ratio']}× | ≥ 0.5× | {_mark(gr['met'])} |"
        )
    for mode, r in results.get("read_path", {}).get("modes", {}).items():
        if "error" in r:
            rows.append(f"| read path, {mode} | not measured: {r['error'][:120]} | | | | n/a |")
            continue
        for lv in r["levels"]:
            rows.append(
                f"| read path, {mode}, concurrency {lv['concurrency']} | p50 {lv['read']['p50_ms']} ms, "
                f"p99 {lv['read']['p99_ms']} ms, {lv['reads_per_s']} reads/s | trivial p50 {lv['trivial']['p50_ms']} "
                f"ms + logAccessBySig {r['log_access_ms']} ms + {r.get('custody_threshold', 2)} custodians in "
                f"parallel {r.get('custodian_round_trips_ms', 0)} ms = {lv['bound_ms']} ms | {lv['ratio']}× | ≤ 3× | "
                f"{_mark(lv['met'])} |"
            )
    up = results.get("upload", {})
    for size, c in up.get("checks", {}).items():
        rss = f", peak RSS +{c['peak_growth_mb']} MB over idle" if size == "100MB" else ""
        target = "≥ 0.5×; RSS ≤ 64 MB" if size == "100MB" else "≥ 0.5×"
        rows.append(
            f"| upload {size} | {c['upload_mb_s']} MB/s{rss} | AES-256-GCM+SHA-256 {c['baseline_mb_s']} MB/s | "
            f"{c['ratio']}× | {target} | {_mark(c['met'])} |"
        )
    av = results.get("audit_verify", {})
    if "ratio" in av:
        p = av["series"][-1]
        rows.append(
            f"| audit verify ({av['records']:,} versions, {av['disclosures']:,} disclosures) | "
            f"{av['versions_per_s']} versions/s, {av['disclosures_per_s']:,} disclosures/s ({p['verify_seconds']} s) | "
            f"hash blobs + batched eth_getLogs {p['baseline_seconds']} s | {av['ratio']}× | ≥ 0.3× | "
            f"{_mark(av['met'])} |"
        )
    for skip in av.get("skipped", []):
        rows.append(
            f"| audit verify ({skip['records']:,} versions, {skip['disclosures']:,} disclosures) | skipped: estimated "
            f"{skip['estimated_seconds']} s from the previous step, over the step budget | | | | n/a |"
        )
    for name, curve in results.get("scaling", {}).get("curves", {}).items():
        pts = " → ".join(f"{w:g}" for w, _t in curve["points"])
        rows.append(
            f"| scaling: {name} ({curve['work']} {pts}) | growth exponents {curve['exponents']} | baseline "
            f"{curve['baseline_exponents']} | max {max(curve['exponents'])} | ≤ 1.15 (linear) | "
            f"{_mark(curve['linear_or_better'])} |"
        )
    for name, r in results.items():
        if isinstance(r, dict) and "error" in r and name != "read_path":
            rows.append(f"| {name} | not measured: {r['error'][:160]} | | | | n/a |")
    return rows


def machine_lines(m: dict[str, Any]) -> list[str]:
    pk = ", ".join(f"{k} {v}" for k, v in m["packages"].items() if v)
    return [
        f"Machine: {m['cores']} cores ({m['cpu']}), {m['memory_gb']} GB RAM, {m['os']}; Python {m['python']}; "
        f"{m['anvil']}; {pk}.",
    ]


def plots(results: dict[str, Any]) -> list[str]:
    """PNG plots into benchmarks/results/; returns their file names (empty if matplotlib is missing)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib is not installed: no plots")
        return []
    written = []
    curves = results.get("scaling", {}).get("curves", {})
    if curves:
        fig, axes = plt.subplots(1, len(curves), figsize=(3.2 * len(curves), 3.0))
        for ax, (name, c) in zip(axes if len(curves) > 1 else [axes], curves.items(), strict=True):
            w = [p[0] for p in c["points"]]
            ax.loglog(w, [p[1] for p in c["points"]], "o-", label="project")
            if c["baseline_points"]:
                ax.loglog(w, [p[1] for p in c["baseline_points"]], "s--", label="baseline")
            t0 = c["points"][0][1]
            ax.loglog(w, [t0 * x / w[0] for x in w], ":", color="grey", label="linear")
            ax.set_title(name.replace("_", " "), fontsize=9)
            ax.set_xlabel(c["work"], fontsize=8)
            ax.set_ylabel("seconds", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(RESULTS_DIR / "scaling.png", dpi=72)
        plt.close(fig)
        written.append("scaling.png")
    modes = {m: r for m, r in results.get("read_path", {}).get("modes", {}).items() if "levels" in r}
    if modes:
        fig, ax = plt.subplots(figsize=(5.5, 3.4))
        for mode, r in modes.items():
            cs = [lv["concurrency"] for lv in r["levels"]]
            ax.plot(cs, [lv["read"]["p50_ms"] for lv in r["levels"]], "o-", label=f"read p50 ({mode})")
            ax.plot(cs, [lv["bound_ms"] for lv in r["levels"]], ":", label=f"trivial p50 + logAccessBySig ({mode})")
        first = next(iter(modes.values()))
        cs = [lv["concurrency"] for lv in first["levels"]]
        ax.plot(cs, [lv["trivial"]["p50_ms"] for lv in first["levels"]], "s--", label="trivial endpoint p50")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("concurrent clients", fontsize=8)
        ax.set_ylabel("ms", fontsize=8)
        ax.set_title("read path latency", fontsize=9)
        ax.legend(fontsize=6)
        fig.tight_layout()
        fig.savefig(RESULTS_DIR / "read_path.png", dpi=72)
        plt.close(fig)
        written.append("read_path.png")
    ops = results.get("gas", {}).get("ops", {})
    if ops:
        names = [n for n in ops if n != "batch"]
        fig, ax = plt.subplots(figsize=(5.5, 3.0))
        x = range(len(names))
        ax.bar([i - 0.2 for i in x], [ops[n]["gas_used"] for n in names], 0.4, label="gas used")
        ax.bar([i + 0.2 for i in x], [ops[n]["floor"] for n in names], 0.4, label="EVM floor")
        ax.set_xticks(list(x), names, fontsize=8)
        ax.set_ylabel("gas", fontsize=8)
        ax.set_title("gas per operation vs floor", fontsize=9)
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(RESULTS_DIR / "gas.png", dpi=72)
        plt.close(fig)
        written.append("gas.png")
    return written


def write_markdown(lines: list[str]) -> None:
    block = "\n".join([BEGIN, *lines, END])
    text = BENCHMARKS_MD.read_text(encoding="utf-8") if BENCHMARKS_MD.exists() else "# Benchmarks\n\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        _old, tail = rest.split(END, 1)
        text = head + block + tail
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    BENCHMARKS_MD.write_text(text, encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", choices=SCENARIOS, default=list(SCENARIOS))
    parser.add_argument("--no-write", action="store_true", help="print the table; write no files")
    args = parser.parse_args()
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    results: dict[str, Any] = {}
    durations: dict[str, float] = {}
    loads: dict[str, list[float]] = {}
    for name in args.only:
        log(f"=== {name} (load average {os.getloadavg()[0]:.2f})")
        load_before = os.getloadavg()[0]
        t = time.perf_counter()
        try:
            results[name] = importlib.import_module(f"benchmarks.{name}").run()
        except Exception as exc:  # one broken scenario must not hide the others
            traceback.print_exc()
            results[name] = {"scenario": name, "error": f"{type(exc).__name__}: {exc}"[:500]}
        durations[name] = round(time.perf_counter() - t, 1)
        loads[name] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
        log(f"=== {name} done in {durations[name]} s")
    from benchmarks.scaling import analyze

    results["scaling"] = analyze(results)
    total = round(time.perf_counter() - began, 1)
    info = machine()
    stamp = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    rows = table(results)
    lines = [
        f"Run {stamp}, {total} s in all ({', '.join(f'{k} {v} s' for k, v in durations.items())}).",
        "",
        "1-minute load average before/after each scenario (other work on the machine shows here): "
        + ", ".join(f"{k} {v[0]}/{v[1]}" for k, v in loads.items())
        + ".",
        "",
        *machine_lines(info),
        "",
        *rows,
    ]
    print("\n".join(lines))
    if not args.no_write:
        pngs = plots(results)
        if pngs:
            lines += ["", *[f"![{p[:-4]}](benchmarks/results/{p})" for p in pngs]]
        (RESULTS_DIR / "latest.json").write_text(
            json.dumps(
                {
                    "run_at": stamp,
                    "total_seconds": total,
                    "durations": durations,
                    "load_average": loads,
                    "machine": info,
                    "results": results,
                },
                indent=1,
                default=str,
            )
            + "\n",
            encoding="utf-8",
        )
        write_markdown(lines)
        log(f"wrote {RESULTS_DIR / 'latest.json'}, {', '.join(pngs)} and {BENCHMARKS_MD.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
