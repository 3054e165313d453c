"""FHIR R4 views of the ledger: Consent from grants, AuditEvent from disclosures (IHE Basic
Audit Log Patterns, "read" and break-glass), Provenance from record versions.

Identifiers are the ledger's own: accounts as CAIP-10 (``eip155:<chain>:<address>``),
records, consents and transactions by their 0x ids, so a resource can be checked against
the chain. Every resource is validated with fhir.resources (R4B models: R4's technical
correction, identical for these resources) before it is returned.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ledger_service.domain.codes import PURPOSE_DISPLAY

ACCOUNT_SYSTEM = "urn:ietf:params:caip-10"  # values "eip155:<chainId>:<address>"
CONSENT_ID_SYSTEM = "urn:consent-ledger:consent-id"
RECORD_ID_SYSTEM = "urn:consent-ledger:record-id"
TX_SYSTEM = "urn:consent-ledger:tx-hash"
CATEGORY_SYSTEM = "urn:consent-ledger:category"
ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
DCM = "http://dicom.nema.org/resources/ontology/DCM"


def iso(timestamp: int) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _fhir_id(hex_id: str) -> str:
    """FHIR ids are at most 64 characters: a 0x-prefixed bytes32 without its prefix."""
    return hex_id[2:] if hex_id.startswith("0x") else hex_id


@dataclass(frozen=True)
class Accounts:
    chain_id: int

    def ref(self, address: str, display: str | None = None) -> dict[str, Any]:
        reference: dict[str, Any] = {
            "identifier": {"system": ACCOUNT_SYSTEM, "value": f"eip155:{self.chain_id}:{address}"}
        }
        if display:
            reference["display"] = display
        return reference


@dataclass(frozen=True)
class ConsentFacts:
    consent_id: str
    patient: str
    grantee: str
    grantee_name: str | None
    scope_kind: str  # all | category | record
    scope_value: str  # "" | category code | record id
    purpose: str
    valid_from: int
    valid_until: int
    status: str  # active | pending | expired | revoked
    granted_at: int
    signer: str
    tx_hash: str


@dataclass(frozen=True)
class DisclosureFacts:
    record_id: str
    version: int
    patient: str
    accessor: str
    accessor_name: str | None
    custodian: str
    purpose: str
    emergency: bool
    reason: str | None
    timestamp: int
    block_number: int
    tx_hash: str | None = None  # per-read mode: the disclosure's own transaction
    leaf_index: int | None = None  # batched mode: the entry in the anchored disclosure log

    @property
    def event_id(self) -> str:
        return _fhir_id(self.tx_hash) if self.tx_hash else f"leaf-{self.leaf_index}"

    @property
    def locator(self) -> str:
        if self.tx_hash:
            return f"tx {self.tx_hash} block {self.block_number}"
        return f"disclosure log leaf {self.leaf_index} (authorized at block {self.block_number})"


@dataclass(frozen=True)
class VersionFacts:
    record_id: str
    version: int
    patient: str
    author: str
    author_name: str | None
    cid: str
    version_hash: str
    previous_hash: str
    timestamp: int
    tx_hash: str


def consent_resource(c: ConsentFacts, accounts: Accounts) -> dict[str, Any]:
    status = {"active": "active", "pending": "proposed"}.get(c.status, "inactive")
    period: dict[str, str] = {"start": iso(c.valid_from)} if c.valid_from else {}
    if c.valid_until:
        period["end"] = iso(c.valid_until)
    provision: dict[str, Any] = {
        "type": "permit",
        "actor": [
            {
                "role": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                            "code": "IRCP",
                            "display": "information recipient",
                        }
                    ]
                },
                "reference": accounts.ref(c.grantee, c.grantee_name),
            }
        ],
        "purpose": [{"system": ACT_REASON, "code": c.purpose, "display": PURPOSE_DISPLAY.get(c.purpose, c.purpose)}],
    }
    if period:
        provision["period"] = period
    if c.scope_kind == "record":
        provision["data"] = [
            {"meaning": "instance", "reference": {"identifier": {"system": RECORD_ID_SYSTEM, "value": c.scope_value}}}
        ]
    elif c.scope_kind == "category":
        provision["class"] = [{"system": CATEGORY_SYSTEM, "code": c.scope_value}]
    return {
        "resourceType": "Consent",
        "id": _fhir_id(c.consent_id),
        "identifier": [
            {"system": CONSENT_ID_SYSTEM, "value": c.consent_id},
            {"system": TX_SYSTEM, "value": c.tx_hash},
        ],
        "status": status,
        "scope": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]
        },
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0", "display": "Patient Consent"}]}],
        "patient": accounts.ref(c.patient),
        "dateTime": iso(c.granted_at),
        "performer": [accounts.ref(c.signer)],
        "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}]},
        "provision": provision,
    }


def audit_event_resource(d: DisclosureFacts, accounts: Accounts) -> dict[str, Any]:
    """A disclosure as IHE BALP's "read" audit event (ETREAT marks break-glass)."""
    entity: list[dict[str, Any]] = [
        {
            "what": {"identifier": {"system": RECORD_ID_SYSTEM, "value": d.record_id}},
            "type": {
                "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                "code": "2",
                "display": "System Object",
            },
            "role": {
                "system": "http://terminology.hl7.org/CodeSystem/object-role",
                "code": "4",
                "display": "Domain Resource",
            },
            "detail": [{"type": "version", "valueString": str(d.version)}],
        },
        {
            "what": accounts.ref(d.patient),
            "type": {
                "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                "code": "1",
                "display": "Person",
            },
            "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "1", "display": "Patient"},
        },
    ]
    if d.emergency and d.reason:
        entity[0]["detail"].append({"type": "break-glass-reason", "valueString": d.reason})
    return {
        "resourceType": "AuditEvent",
        "id": d.event_id,
        "type": {
            "system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
            "code": "rest",
            "display": "RESTful Operation",
        },
        "subtype": [{"system": "http://hl7.org/fhir/restful-interaction", "code": "read", "display": "read"}],
        "action": "R",
        "recorded": iso(d.timestamp),
        "outcome": "0",
        "purposeOfEvent": [
            {
                "coding": [
                    {"system": ACT_REASON, "code": d.purpose, "display": PURPOSE_DISPLAY.get(d.purpose, d.purpose)}
                ]
            }
        ],
        "agent": [
            {
                "type": {"coding": [{"system": DCM, "code": "110153", "display": "Source Role ID"}]},
                "who": accounts.ref(d.custodian, "Consent Ledger custodian"),
                "requestor": False,
            },
            {
                "type": {"coding": [{"system": DCM, "code": "110152", "display": "Destination Role ID"}]},
                "who": accounts.ref(d.accessor, d.accessor_name),
                "requestor": True,
                "purposeOfUse": [{"coding": [{"system": ACT_REASON, "code": d.purpose}]}],
            },
        ],
        "source": {
            "site": d.locator,
            "observer": {"display": "Consent Ledger"},
            "type": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/security-source-type",
                    "code": "4",
                    "display": "Application Server",
                }
            ],
        },
        "entity": entity,
    }


def provenance_resource(v: VersionFacts, accounts: Accounts) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Provenance",
        "id": _fhir_id(v.version_hash),
        "target": [{"identifier": {"system": RECORD_ID_SYSTEM, "value": f"{v.record_id}/v{v.version}"}}],
        "recorded": iso(v.timestamp),
        "activity": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/v3-DataOperation",
                    "code": "CREATE" if v.version == 1 else "UPDATE",
                }
            ]
        },
        "agent": [
            {
                "type": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                            "code": "author",
                        }
                    ]
                },
                "who": accounts.ref(v.author, v.author_name),
            }
        ],
    }
    entities = [{"role": "source", "what": {"identifier": {"system": "urn:ipfs:cid", "value": v.cid}}}]
    if v.version > 1:
        entities.append(
            {
                "role": "revision",
                "what": {"identifier": {"system": RECORD_ID_SYSTEM, "value": f"{v.record_id}/v{v.version - 1}"}},
            }
        )
    resource["entity"] = entities
    return resource


def validate(resource: dict[str, Any]) -> dict[str, Any]:
    """Validate with fhir.resources; raises its ValidationError on any non-conformance."""
    from fhir.resources.R4B import get_fhir_model_class

    get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    return resource


def searchset(resources: Iterable[dict[str, Any]], base_url: str) -> dict[str, Any]:
    entries = [
        {
            "fullUrl": f"{base_url.rstrip('/')}/{r['resourceType']}/{r['id']}",
            "resource": validate(r),
            "search": {"mode": "match"},
        }
        for r in resources
    ]
    bundle = {"resourceType": "Bundle", "type": "searchset", "total": len(entries), "entry": entries}
    return validate(bundle)


def bundle_of(kind: str, items: Sequence[Any], accounts: Accounts, base_url: str) -> dict[str, Any]:
    builders: dict[str, Callable[[Any, Accounts], dict[str, Any]]] = {
        "Consent": consent_resource,
        "AuditEvent": audit_event_resource,
        "Provenance": provenance_resource,
    }
    return searchset((builders[kind](item, accounts) for item in items), base_url)
