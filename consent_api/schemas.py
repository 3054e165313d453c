"""Request and response schemas of API v1 (camelCase JSON; bytes32 and addresses as 0x-hex)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from ledger_service.transparency.signatures import MAX_SIGNATURE_BYTES

Address = Annotated[str, Field(pattern=r"^0x[0-9a-fA-F]{40}$", examples=["0x90F79bf6EB2c4f870365E785982E1f101E93b906"])]
Bytes32 = Annotated[str, Field(pattern=r"^0x[0-9a-fA-F]{64}$", examples=["0x" + "00" * 32])]
HexBytes = Annotated[str, Field(pattern=r"^0x([0-9a-fA-F]{2})+$", max_length=2 + 2 * 1024)]
# A signature: 65 bytes of ECDSA, or a contract account's ERC-1271 proof (a passkey's WebAuthn assertion is
# 500-900 bytes), up to the relay's bound.
Signature = Annotated[str, Field(pattern=r"^0x([0-9a-fA-F]{2})+$", max_length=2 + 2 * MAX_SIGNATURE_BYTES)]
Uint64 = Annotated[int, Field(ge=0, le=2**64 - 1)]
Uint256 = Annotated[int, Field(ge=0, le=2**256 - 1)]


class Schema(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class Out(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


# ----------------------------------------------------------------- chain / health


class Health(Out):
    status: str
    chain_id: int
    block_number: int


class Eip712DomainOut(Out):
    name: str
    version: str
    chain_id: int
    verifying_contract: str


class DemoProvider(Out):
    address: str
    name: str
    emergency: bool


class DemoAccounts(Out):
    providers: list[DemoProvider]
    auditor: str
    patients: list[str]


class DeploymentOut(Out):
    """Where the ledger was deployed: a node checks it against its own chain node before it serves."""

    block_number: int
    tx_hash: str
    code_hash: str
    ledger_version: int


class CustodianListed(Out):
    index: int
    url: str | None = Field(default=None, description="Where a release is asked for (None: not served over HTTP)")
    public_key: str


class CustodyOut(Out):
    """The key custodians of a record version's data-key shares (docs/architecture.md, "Key custody")."""

    threshold: int
    custodians: list[CustodianListed]


class ChainInfo(Out):
    chain_id: int
    block_number: int
    contracts: dict[str, str]
    deployment: DeploymentOut | None = None
    eip712_domain: Eip712DomainOut
    categories: dict[str, str]
    purposes: list[str]
    demo: DemoAccounts | None = None
    custody: CustodyOut | None = None


class ProviderOut(Out):
    address: str
    name: str
    emergency: bool
    suspended: bool


class ProviderList(Out):
    providers: list[ProviderOut]


class Me(Out):
    address: str
    roles: list[str]
    expires_at: int


# ----------------------------------------------------------------- auth


class NonceOut(Out):
    nonce: str


class ContractNonceOut(Out):
    nonce: int


class LoginIn(Schema):
    message: str = Field(max_length=8192, description="The EIP-4361 message, exactly as signed")
    signature: str = Field(
        pattern=r"^0x([0-9a-fA-F]{2})+$",
        max_length=2 + 2 * 5120,  # a contract account's proof (4096 bytes), ERC-6492-wrapped
        description="personal_sign (EIP-191) signature of the message, or a contract account's ERC-1271 proof "
        "(ERC-6492-wrapped for a passkey account not deployed yet)",
    )


class LoginOut(Out):
    token: str
    address: str
    roles: list[str]
    expires_at: int


# ----------------------------------------------------------------- consents


class ConsentGrantIn(Schema):
    patient: Address
    grantee: Address
    scope: Bytes32
    purpose: Bytes32
    valid_from: Uint64
    valid_until: Uint64
    nonce: Uint256
    deadline: Uint256


class GrantRequest(Schema):
    grant: ConsentGrantIn
    signature: Signature

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "grant": {
                        "patient": "0x15d34AAf54267DB7D7c367839AAf71A00a2C6A65",
                        "grantee": "0x70997970C51812dc3A010C7d01b50e20d17dc79C",
                        "scope": "0x" + "00" * 32,
                        "purpose": "0x5452454154" + "00" * 27,
                        "validFrom": 0,
                        "validUntil": 0,
                        "nonce": 0,
                        "deadline": 1893456000,
                    },
                    "signature": "0x" + "11" * 65,
                }
            ]
        },
    )


class ConsentRevokeIn(Schema):
    patient: Address
    consent_id: Bytes32
    nonce: Uint256
    deadline: Uint256


class RevokeRequest(Schema):
    revoke: ConsentRevokeIn
    signature: Signature


class DelegateGrantIn(Schema):
    patient: Address
    delegate: Address
    valid_until: Uint64
    nonce: Uint256
    deadline: Uint256


class DelegateRequest(Schema):
    delegate: DelegateGrantIn
    signature: Signature


class GrantOut(Out):
    consent_id: str
    tx_hash: str


class TxOut(Out):
    tx_hash: str


class ConsentOut(Out):
    consent_id: str
    patient: str
    grantee: str
    grantee_name: str | None
    scope: str
    scope_kind: str
    scope_label: str
    purpose: str
    valid_from: int
    valid_until: int
    status: str
    granted_at: int
    tx_hash: str
    signer: str
    revoked_at: int | None = None
    revoke_tx_hash: str | None = None


class ConsentList(Out):
    consents: list[ConsentOut]


class DelegateOut(Out):
    delegate: str
    valid_until: int
    live: bool


class DelegateList(Out):
    delegates: list[DelegateOut]


# ----------------------------------------------------------------- records


MEDIA_TYPE_DOC = (
    "RFC 6838 type/subtype with optional parameters (422 invalid-media-type otherwise); a type the service "
    "does not serve as itself is stored as application/octet-stream"
)


TITLE_DOC = (
    "What people call the record (health information: sealed to the author and the patient, never stored "
    'in clear; docs/architecture.md, "Record titles")'
)
FILE_NAME_DOC = "The original file name, sealed with the title; downloads are saved under it"


class RecordCreateIn(Schema):
    patient: Address
    category: str = Field(min_length=1, max_length=64, examples=["laboratory"])
    media_type: str = Field(
        min_length=1, max_length=255, examples=["application/fhir+json"], description=MEDIA_TYPE_DOC
    )
    content: dict[str, Any] | str = Field(
        description="A FHIR resource object for application/fhir+json, else the bytes as base64"
    )
    title: str | None = Field(default=None, max_length=200, description=TITLE_DOC)
    file_name: str | None = Field(default=None, max_length=255, description=FILE_NAME_DOC)


class RecordAmendIn(Schema):
    media_type: str = Field(min_length=1, max_length=255, description=MEDIA_TYPE_DOC)
    content: dict[str, Any] | str
    title: str | None = Field(default=None, max_length=200, description=TITLE_DOC)
    file_name: str | None = Field(default=None, max_length=255, description=FILE_NAME_DOC)


class RecordSuggestIn(Schema):
    """What POST /v1/records takes, to be looked at, not stored (``patient`` and ``category`` optional)."""

    patient: Address | None = None
    category: str | None = Field(default=None, max_length=64)
    media_type: str = Field(min_length=1, max_length=255, description=MEDIA_TYPE_DOC)
    content: dict[str, Any] | str | None = Field(
        default=None, description="A FHIR resource object for application/fhir+json; ignored for other types"
    )
    file_name: str | None = Field(default=None, max_length=255)


class LabelDepositIn(Schema):
    """A record label the author's node sealed to the patient's key on chain (docs/architecture.md, "Record
    titles"); the hub keeps it as it is, unopened."""

    version: int = Field(ge=1, lt=2**32)
    recipient: Address
    recipient_key: Bytes32
    sealed: str = Field(pattern=r"^0x([0-9a-fA-F]{2}){48,4096}$")


class RecordSuggestion(Out):
    title: str
    category: str | None = Field(description="A registered category the content suggests, or null")


class RecordCreated(Out):
    record_id: str
    version: int
    cid: str
    tx_hash: str
    media_type: str | None = Field(
        default=None,
        description="The media type the version is stored and served as: the declared one in canonical form "
        "if the service serves it as itself, else application/octet-stream",
    )


class SealedLabelOut(Out):
    """A record label HPKE-sealed to ``recipientKey`` (docs/architecture.md, "Record titles")."""

    version: int
    recipient_key: str
    sealed: str


class RecordOut(Out):
    record_id: str
    patient: str
    author: str
    author_name: str | None
    category: str
    media_type: str
    version: int
    cid: str
    size: int
    created_at: int
    erased: bool
    title: str | None = Field(default=None, description="The record's title, for its author (opened by its node)")
    file_name: str | None = Field(default=None, description="The original file name, with the title")
    sealed_label: SealedLabelOut | None = Field(
        default=None,
        description="For the patient: the label sealed to the patient's encryption key, opened in the browser",
    )


class RecordList(Out):
    records: list[RecordOut]


class EmergencyIn(Schema):
    reason: str = Field(min_length=1, max_length=2000, examples=["Unconscious patient in the emergency department"])


class RecordEraseIn(Schema):
    patient: Address
    record_id: Bytes32
    nonce: Uint256
    deadline: Uint256


class EraseRequest(Schema):
    """The patient's (or a live delegate's) signed ``RecordErase``: the hub cannot erase without it."""

    erase: RecordEraseIn
    signature: Signature


class DelegateRevokeIn(Schema):
    patient: Address
    delegate: Address
    nonce: Uint256
    deadline: Uint256


class DelegateRevokeRequest(Schema):
    revoke: DelegateRevokeIn
    signature: Signature


class ErasureOut(Out):
    record_id: str
    tx_hash: str


class DisclosureOut(Out):
    record_id: str
    version: int
    accessor: str
    accessor_name: str | None
    purpose: str
    consent_id: str | None
    emergency: bool
    reason: str | None
    block_number: int
    timestamp: int
    # Per-read mode: the logAccess transaction. Batched mode: null; the entry is ``leaf_index`` of the
    # disclosure log and ``proof`` is its receipt (the receipts.py JSON: entry, leaf index, tree size,
    # inclusion proof, the anchoring tx/block/root, chain id, contract), or {"status": "pending",
    # "leafIndex": n} until its batch is anchored.
    tx_hash: str | None = None
    leaf_index: int | None = None
    proof: dict[str, Any] | None = None
    # The disclosure's name for an emergency review (POST /v1/patients/{p}/emergency-reviews), and for an
    # emergency access when the patient marked it reviewed (null until then; absent meaning for others).
    disclosure_id: str | None = None
    reviewed_at: int | None = None


class DisclosureList(Out):
    disclosures: list[DisclosureOut]


class EmergencyReviewIn(Schema):
    disclosure_id: str = Field(
        min_length=1, max_length=96, pattern=r"^(0x[0-9a-f]{64}:[0-9]{1,9}|leaf:[0-9]{1,18})$", examples=["leaf:0"]
    )


class EmergencyReviewOut(Out):
    disclosure_id: str
    reviewed_at: int


class RecordAccessOut(Out):
    record_id: str
    # The purposes the caller's consents cover for this record now (codes of ``GET /v1/chain`` purposes).
    covered_purposes: list[str]
    # Whether the caller may break the glass (holds EMERGENCY_ROLE).
    emergency: bool


class VerifyIn(Schema):
    patient: Address | None = None
