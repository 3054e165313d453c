"""Play the whole Consent Ledger story over HTTP against a running `consent-ledger up`.

A stand-alone client: it uses only the public surfaces (the README's EIP-712 types, the
EIP-4361 sign-in, API v1) with httpx and eth-account — no code from the service — so it
doubles as the proof that another client can be written from the documentation alone.

    python scripts/demo.py [--url http://127.0.0.1:8000]

Story: a clinic uploads a lab result for a patient; the patient grants the clinic
access; the clinic reads it; the patient sees the disclosure; the patient revokes; the
clinic is refused; the auditor verifies the patient's trail.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlparse

import httpx
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount

# anvil's public development keys (README, the demo roles); never use them elsewhere.
DEMO_KEYS = {
    "clinic": "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "auditor": "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
    "patient": "0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a",
}

CONSENT_GRANT = [
    {"name": "patient", "type": "address"},
    {"name": "grantee", "type": "address"},
    {"name": "scope", "type": "bytes32"},
    {"name": "purpose", "type": "bytes32"},
    {"name": "validFrom", "type": "uint64"},
    {"name": "validUntil", "type": "uint64"},
    {"name": "nonce", "type": "uint256"},
    {"name": "deadline", "type": "uint256"},
]
CONSENT_REVOKE = [
    {"name": "patient", "type": "address"},
    {"name": "consentId", "type": "bytes32"},
    {"name": "nonce", "type": "uint256"},
    {"name": "deadline", "type": "uint256"},
]
EIP712_DOMAIN = [
    {"name": "name", "type": "string"},
    {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"},
    {"name": "verifyingContract", "type": "address"},
]


def step(text: str) -> None:
    print(f"\n== {text}", flush=True)


def expect(response: httpx.Response, *statuses: int) -> Any:
    if response.status_code not in statuses:
        print(f"unexpected {response.status_code}: {response.text}", file=sys.stderr)
        raise SystemExit(1)
    return response.json() if "json" in response.headers.get("content-type", "") else response.content


class Client:
    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=60)
        self.url = url
        self.chain = expect(self.http.get("/v1/chain"), 200)

    def sign_in(self, account: LocalAccount) -> dict[str, str]:
        nonce = expect(self.http.get("/v1/auth/nonce"), 200)["nonce"]
        host = urlparse(self.url).netloc
        now = datetime.now(UTC)
        message = "\n".join(
            [
                f"{host} wants you to sign in with your Ethereum account:",
                account.address,
                "",
                "Sign in to Consent Ledger",
                "",
                f"URI: {self.url}",
                "Version: 1",
                f"Chain ID: {self.chain['chainId']}",
                f"Nonce: {nonce}",
                f"Issued At: {now.strftime('%Y-%m-%dT%H:%M:%SZ')}",
                f"Expiration Time: {(now + timedelta(minutes=10)).strftime('%Y-%m-%dT%H:%M:%SZ')}",
            ]
        )
        signature = Account.sign_message(encode_defunct(text=message), account.key).signature
        login = expect(
            self.http.post("/v1/auth/login", json={"message": message, "signature": "0x" + signature.hex()}), 200
        )
        print(f"   signed in {account.address} as {', '.join(login['roles']) or 'patient'}")
        return {"Authorization": f"Bearer {login['token']}"}

    def typed(self, primary: str, fields: list[dict[str, str]], message: dict[str, Any]) -> dict[str, Any]:
        return {
            "types": {"EIP712Domain": EIP712_DOMAIN, primary: fields},
            "primaryType": primary,
            "domain": self.chain["eip712Domain"],
            "message": message,
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    args = parser.parse_args()
    api = Client(args.url.rstrip("/"))
    clinic, auditor, patient = (Account.from_key(DEMO_KEYS[k]) for k in ("clinic", "auditor", "patient"))

    step("Demo Clinic uploads a FHIR Observation for the patient")
    as_clinic = api.sign_in(clinic)
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "2339-0", "display": "Glucose"}]},
        "valueQuantity": {"value": 95, "unit": "mg/dL"},
    }
    record = expect(
        api.http.post(
            "/v1/records",
            json={
                "patient": patient.address,
                "category": "laboratory",
                "mediaType": "application/fhir+json",
                "content": observation,
            },
            headers=as_clinic,
        ),
        201,
    )
    print(f"   record {record['recordId']} v{record['version']} cid {record['cid']}")

    step("The patient grants Demo Clinic TREAT access to all records (EIP-712, relayed)")
    nonce = expect(api.http.get(f"/v1/consents/nonce/{patient.address}"), 200)["nonce"]
    grant = {
        "patient": patient.address,
        "grantee": clinic.address,
        "scope": "0x" + "00" * 32,
        "purpose": "0x" + b"TREAT".ljust(32, b"\x00").hex(),
        "validFrom": 0,
        "validUntil": 0,
        "nonce": nonce,
        "deadline": int(time.time()) + 600,
    }
    signed = Account.sign_typed_data(patient.key, full_message=api.typed("ConsentGrant", CONSENT_GRANT, grant))
    consent = expect(
        api.http.post("/v1/consents", json={"grant": grant, "signature": "0x" + signed.signature.hex()}), 201, 200
    )
    print(f"   consent {consent['consentId']} tx {consent['txHash']}")

    step("Demo Clinic reads the record for treatment")
    read = api.http.get(f"/v1/records/{record['recordId']}", params={"purpose": "TREAT"}, headers=as_clinic)
    expect(read, 200)
    print(
        f"   {read.headers['content-type']}: {read.json()['code']['coding'][0]['display']} "
        f"{read.json()['valueQuantity']['value']} — disclosure tx {read.headers['X-Disclosure-Tx']}"
    )

    step("The patient sees the disclosure")
    as_patient = api.sign_in(patient)
    disclosures = expect(api.http.get(f"/v1/patients/{patient.address}/disclosures", headers=as_patient), 200)
    latest = disclosures["disclosures"][0]
    print(
        f"   {latest['accessorName']} read {latest['recordId'][:12]}… for {latest['purpose']}"
        f" in block {latest['blockNumber']}"
    )
    assert latest["txHash"] == read.headers["X-Disclosure-Tx"]

    step("The patient revokes the consent")
    nonce = expect(api.http.get(f"/v1/consents/nonce/{patient.address}"), 200)["nonce"]
    revoke = {
        "patient": patient.address,
        "consentId": consent["consentId"],
        "nonce": nonce,
        "deadline": int(time.time()) + 600,
    }
    signed = Account.sign_typed_data(patient.key, full_message=api.typed("ConsentRevoke", CONSENT_REVOKE, revoke))
    expect(
        api.http.post(
            f"/v1/consents/{consent['consentId']}/revoke",
            json={"revoke": revoke, "signature": "0x" + signed.signature.hex()},
        ),
        200,
    )
    print("   revoked")

    step("Demo Clinic is refused now")
    refused = api.http.get(f"/v1/records/{record['recordId']}", params={"purpose": "TREAT"}, headers=as_clinic)
    problem = expect(refused, 403)
    print(f"   {refused.status_code} {refused.headers['content-type']}: {problem['title']} — {problem['detail']}")

    step("The auditor verifies the patient's trail")
    as_auditor = api.sign_in(auditor)
    report = expect(api.http.post("/v1/audit/verify", json={"patient": patient.address}, headers=as_auditor), 200)
    print(f"   ok={report['ok']} summary={report['summary']}")
    print("\ndone.")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
