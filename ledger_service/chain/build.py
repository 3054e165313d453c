"""Compile the Solidity contracts into build artifacts (ABI + bytecode) with py-solc-x.

The compiler is a native ``solc`` when one is on PATH at the pinned version, else the
project's solc-js wrapper (``scripts/solc``), which behaves like native solc for
``--version`` and ``--standard-json``. Every source, OpenZeppelin's included, is passed
inline as standard-JSON content (resolved here, not by the compiler's import callback), so
both compilers see the same input and the output is deterministic: metadata hashes are
off, so compiling twice gives identical bytecode.

Run as ``python -m ledger_service.chain.build`` (the Makefile does).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import solcx

from ledger_service.errors import ConfigurationError

SOLC_VERSION = "0.8.30"
EVM_VERSION = "osaka"
OPTIMIZER_RUNS = 10_000
# The deployed contracts; each must be defined in contracts/src/<Name>.sol.
CONTRACTS = ("ConsentLedger", "PatientAccountFactory", "PatientAccount")

REPO_ROOT = Path(__file__).resolve().parents[2]
CONTRACTS_DIR = REPO_ROOT / "contracts"
NODE_MODULES = REPO_ROOT / "node_modules"
ARTIFACTS_DIR = Path(__file__).resolve().parent / "artifacts"

_IMPORT_RE = re.compile(r"""^\s*import\s+(?:[^"';]*?\sfrom\s+)?["']([^"']+)["']""", re.MULTILINE)


def find_solc() -> Path:
    """A native solc at the pinned version if on PATH, else the solc-js wrapper."""
    native = shutil.which("solc")
    if native:
        try:
            out = subprocess.run([native, "--version"], capture_output=True, text=True, timeout=30, check=True).stdout
        except (OSError, subprocess.SubprocessError):
            out = ""
        if f"Version: {SOLC_VERSION}+" in out:
            return Path(native)
    wrapper = REPO_ROOT / "scripts" / "solc"
    if not (NODE_MODULES / "solc").is_dir():
        raise ConfigurationError("solc-js is not installed: run `npm ci` (or `make setup`) in the repository root")
    return wrapper


def _resolve(unit: str, importer: str | None) -> str:
    if unit.startswith("."):
        if importer is None:
            raise ConfigurationError(f"relative import {unit!r} without an importer")
        parts = list(Path(importer).parent.parts)
        for piece in Path(unit).parts:
            if piece == "..":
                parts.pop()
            elif piece != ".":
                parts.append(piece)
        return "/".join(parts)
    return unit


def _read_unit(unit: str) -> str:
    for root in (CONTRACTS_DIR, NODE_MODULES):
        candidate = root / unit
        if candidate.is_file():
            return candidate.read_text(encoding="utf-8")
    raise ConfigurationError(f"Solidity source not found: {unit}")


def collect_sources(entry_points: list[str]) -> dict[str, dict[str, str]]:
    """Every source unit reachable from the entry points, keyed by source unit name."""
    sources: dict[str, dict[str, str]] = {}
    pending = list(entry_points)
    importers: dict[str, str | None] = dict.fromkeys(entry_points)
    while pending:
        unit = pending.pop()
        if unit in sources:
            continue
        content = _read_unit(unit)
        sources[unit] = {"content": content}
        for imported in _IMPORT_RE.findall(content):
            name = _resolve(imported, unit)
            if name not in sources:
                importers[name] = unit
                pending.append(name)
    return dict(sorted(sources.items()))


def standard_json_input(entry_points: list[str] | None = None) -> dict[str, Any]:
    entry_points = entry_points or [f"src/{name}.sol" for name in CONTRACTS]
    return {
        "language": "Solidity",
        "sources": collect_sources(entry_points),
        "settings": {
            "evmVersion": EVM_VERSION,
            "optimizer": {"enabled": True, "runs": OPTIMIZER_RUNS},
            "metadata": {"bytecodeHash": "none", "appendCBOR": False},
            "outputSelection": {"*": {"*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"]}},
        },
    }


def compile_contracts(
    solc_binary: Path | None = None, *, units: dict[str, str] | None = None
) -> dict[str, dict[str, Any]]:
    """Compile and return ``{name: {"abi", "bytecode", "deployedBytecode", ...}}``: the deployed contracts, or
    ``units`` (contract name -> source unit under contracts/, e.g. a test mock in ``test/mocks/``) with the
    same settings."""
    solc = solc_binary or find_solc()
    units = units or {name: f"src/{name}.sol" for name in CONTRACTS}
    input_data = standard_json_input(list(units.values()))
    try:
        output = solcx.compile_standard(input_data, solc_binary=solc, allow_paths=[str(REPO_ROOT)])
    except solcx.exceptions.SolcError as exc:
        raise ConfigurationError(f"Solidity compilation failed: {exc.message}") from exc
    errors = [e for e in output.get("errors", []) if e.get("severity") == "error"]
    if errors:
        raise ConfigurationError("Solidity compilation failed:\n" + "\n".join(e["formattedMessage"] for e in errors))
    source_hash = hashlib.sha256(json.dumps(input_data, sort_keys=True).encode()).hexdigest()
    artifacts: dict[str, dict[str, Any]] = {}
    for name, unit in units.items():
        compiled = output["contracts"][unit][name]
        artifacts[name] = {
            "contractName": name,
            "abi": compiled["abi"],
            "bytecode": "0x" + compiled["evm"]["bytecode"]["object"],
            "deployedBytecode": "0x" + compiled["evm"]["deployedBytecode"]["object"],
            "compiler": {"version": SOLC_VERSION, "evmVersion": EVM_VERSION, "optimizerRuns": OPTIMIZER_RUNS},
            "sourceHash": source_hash,
        }
    return artifacts


def write_artifacts(artifacts: dict[str, dict[str, Any]], out_dir: Path = ARTIFACTS_DIR) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, artifact in artifacts.items():
        path = out_dir / f"{name}.json"
        path.write_text(json.dumps(artifact, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        written.append(path)
    return written


def load_artifact(name: str) -> dict[str, Any]:
    """The artifact written by the last build (``make build``)."""
    path = ARTIFACTS_DIR / f"{name}.json"
    if not path.is_file():
        raise ConfigurationError(f"contract artifact {path} is missing: run `make build` first")
    artifact: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return artifact


def main() -> int:
    artifacts = compile_contracts()
    for path in write_artifacts(artifacts):
        size = (len(artifacts[path.stem]["deployedBytecode"]) - 2) // 2
        print(f"wrote {path.relative_to(REPO_ROOT)} ({size} bytes deployed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
