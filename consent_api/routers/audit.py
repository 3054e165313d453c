"""The auditor's verification of the hash trail, through the independent verifier."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from consent_api.deps import AuditorCaller, ServicesDep, address_param, record_id_param
from consent_api.schemas import VerifyIn
from ledger_service.errors import NotFoundError
from ledger_service.hub.audit import record_trail

router = APIRouter(prefix="/v1/audit", tags=["audit"])


def _named(services: ServicesDep, items: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """Each item with the on-chain name of the provider at ``key`` beside it (``<key>Name``, null if none)."""
    for item in items:
        address = item.get(key)
        item[f"{key}Name"] = services.directory.name_of(address) if isinstance(address, str) and address else None
    return items


@router.post("/verify", summary="Verify the trail of everything, or of one patient")
def verify(body: VerifyIn, request: Request, caller: AuditorCaller, services: ServicesDep) -> dict[str, Any]:
    patient = address_param(body.patient, "patient") if body.patient else None
    run = services.audit.run(patient=patient)
    result = run.report.to_json()
    # The erased records in scope, from the chain's RecordErased events, so a report can mark them.
    result["erasures"] = [
        {
            "recordId": "0x" + e.record_id.hex(),
            "patient": e.patient,
            "erasedBy": e.erased_by,
            "blockNumber": e.at.block,
            "timestamp": e.at.timestamp,
            "txHash": e.at.tx,
        }
        for e in run.trail.erasures
        if patient is None or e.patient == patient
    ]
    _named(services, result.get("emergencies") or [], "accessor")
    result["reportUrl"] = str(request.url_for("audit_report", report_id=run.report_id))
    return result


@router.get("/records/{record_id}", summary="The verified trail of one record")
def record(record_id: str, request: Request, caller: AuditorCaller, services: ServicesDep) -> dict[str, Any]:
    record_id = record_id_param(record_id)
    raw = bytes.fromhex(record_id[2:])
    run = services.audit.run(record_id=raw)
    trail = record_trail(run, raw)
    if not trail["versions"]:
        raise NotFoundError(f"no record {record_id} on the ledger", record_id=record_id)
    report = run.report.to_json()
    _named(services, trail["versions"], "author")
    _named(services, trail["disclosures"], "accessor")
    _named(services, report["emergencies"], "accessor")
    return {
        "recordId": record_id,
        "ok": report["ok"],
        **trail,
        "violations": report["violations"],
        "emergencies": report["emergencies"],  # the break-glass accesses, with their reasons where held
        "checks": report["checks"],
        "reportUrl": str(request.url_for("audit_report", report_id=run.report_id)),
    }


@router.get("/reports/{report_id}", name="audit_report", response_class=HTMLResponse, summary="A report as HTML")
def report_html(report_id: str, caller: AuditorCaller, services: ServicesDep) -> HTMLResponse:
    html = services.audit.html(report_id)
    if html is None:
        raise NotFoundError("no such report (reports are kept for the last 32 runs)")
    return HTMLResponse(html, headers={"Cache-Control": "no-store"})
