"""Record labels: the title and category a record's content suggests, the label's wire form and its sealing
to one recipient (docs/architecture.md, "Record titles")."""

from __future__ import annotations

import os

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from ledger_service.crypto.key_file import X25519KeyFile
from ledger_service.crypto.sealing import label_info, open_sealed, public_key_bytes, seal_to
from ledger_service.domain.record_labels import RecordLabel, Suggestion, download_name, suggest
from ledger_service.errors import DecryptionError, KeyCustodyError, ValidationError

FHIR = "application/fhir+json"
LEDGER = "0x5FbDB2315678afecb367f032d93F642f64180aa3"


def blood_pressure(**extra: object) -> dict[str, object]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "category": [
            {
                "coding": [
                    {"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}
                ]
            }
        ],
        "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9", "display": "Blood pressure panel"}]},
        "effectiveDateTime": "2026-11-30T08:15:00Z",
        **extra,
    }


def test_a_vital_signs_observation_is_titled_by_its_code_and_date_and_filed_as_vital_signs() -> None:
    assert suggest(media_type=FHIR, fhir=blood_pressure()) == Suggestion(
        "Blood pressure panel, 30 Nov 2026", "vital-signs"
    )
    # code.text wins over the coding's display
    with_text = blood_pressure(code={"text": "Blood pressure", "coding": [{"display": "BP panel"}]})
    assert suggest(media_type=FHIR, fhir=with_text).title == "Blood pressure, 30 Nov 2026"


def test_an_observation_without_category_is_vital_signs_by_its_loinc_code_else_laboratory() -> None:
    heart_rate = {
        "resourceType": "Observation",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]},
    }
    assert suggest(media_type=FHIR, fhir=heart_rate) == Suggestion("Heart rate", "vital-signs")
    potassium = {"resourceType": "Observation", "code": {"text": "Potassium"}, "issued": "2026-12"}
    assert suggest(media_type=FHIR, fhir=potassium) == Suggestion("Potassium, Dec 2026", "laboratory")
    imaging = {
        "resourceType": "Observation",
        "category": [{"coding": [{"code": "imaging"}]}],
        "code": {"text": "Chest X-ray finding"},
    }
    assert suggest(media_type=FHIR, fhir=imaging).category == "imaging"


@pytest.mark.parametrize(
    ("resource", "expected"),
    [
        ({"resourceType": "DiagnosticReport", "code": {"text": "Lipid panel"}, "effectiveDateTime": "2026-11-02"}, Suggestion("Lipid panel, 2 Nov 2026", "laboratory")),  # noqa: E501
        ({"resourceType": "DiagnosticReport", "category": [{"coding": [{"code": "RAD"}]}], "code": {"text": "CT head"}}, Suggestion("CT head", "imaging")),  # noqa: E501
        ({"resourceType": "MedicationStatement", "medicationCodeableConcept": {"coding": [{"display": "Metformin 500 mg"}]}}, Suggestion("Metformin 500 mg", "medication")),  # noqa: E501
        ({"resourceType": "DocumentReference", "type": {"text": "Discharge summary"}, "date": "2026-11-28T10:00:00Z"}, Suggestion("Discharge summary, 28 Nov 2026", "clinical-note")),  # noqa: E501
        ({"resourceType": "Condition", "code": {"text": "Type 2 diabetes"}, "recordedDate": "2025"}, Suggestion("Type 2 diabetes, 2025", "clinical-note")),  # noqa: E501
        ({"resourceType": "ImagingStudy"}, Suggestion("Imaging study", "imaging")),
        ({"resourceType": "Patient"}, Suggestion("Patient", None)),
        ({}, Suggestion("FHIR resource", None)),
    ],
)  # fmt: skip
def test_fhir_resources_are_titled_by_their_name_and_filed_by_their_type(
    resource: dict[str, object], expected: Suggestion
) -> None:
    assert suggest(media_type=FHIR, fhir=resource) == expected


def test_odd_fhir_values_give_a_title_rather_than_fail() -> None:
    odd = {"resourceType": "Observation", "code": "not a concept", "category": "x", "effectiveDateTime": 7}
    assert suggest(media_type=FHIR, fhir=odd) == Suggestion("Observation", "laboratory")
    long = {"resourceType": "Condition", "code": {"text": "x" * 500}}
    assert len(suggest(media_type=FHIR, fhir=long).title) == 200


@pytest.mark.parametrize(
    ("file_name", "media_type", "expected"),
    [
        ("discharge-letter.pdf", "application/pdf", Suggestion("Discharge letter", "clinical-note")),
        ("C:\\scans\\knee_mri_2026.dcm", "application/octet-stream", Suggestion("Knee mri 2026", "imaging")),
        ("photo.png", "image/png", Suggestion("Photo", "imaging")),
        ("", "application/octet-stream", Suggestion("Document", None)),
    ],
)
def test_files_are_titled_by_their_name(file_name: str, media_type: str, expected: Suggestion) -> None:
    assert suggest(media_type=media_type, file_name=file_name) == expected


def test_a_label_is_checked_and_round_trips_its_wire_form() -> None:
    label = RecordLabel.of("  Blood   pressure  ", "C:\\Users\\x\\discharge-letter.pdf")
    assert label == RecordLabel("Blood pressure", "discharge-letter.pdf")
    assert RecordLabel.decode(label.encode()) == label
    assert RecordLabel.decode(RecordLabel("Électrocardiogramme", "écg.pdf").encode()).file_name == "écg.pdf"
    with pytest.raises(ValidationError, match="title is longer"):
        RecordLabel.of("x" * 201, None)
    with pytest.raises(ValidationError, match="control characters"):
        RecordLabel.of("a\x00b", None)
    with pytest.raises(ValidationError):
        RecordLabel.decode(b"\xff")
    with pytest.raises(ValidationError):
        RecordLabel.decode(b'{"title": 3}')


def test_the_download_name_is_the_file_name_else_the_title_else_the_fallback() -> None:
    assert (
        download_name(RecordLabel("Letter", "discharge-letter.pdf"), extension=".pdf", fallback="r.pdf")
        == "discharge-letter.pdf"
    )
    assert (
        download_name(RecordLabel("Blood pressure, 30 Nov 2026"), extension=".json", fallback="r.json")
        == "Blood pressure 30 Nov 2026.json"
    )
    assert download_name(RecordLabel('a/b:"c"'), extension=".pdf", fallback="r.pdf") == "a b c.pdf"
    assert download_name(None, extension=".pdf", fallback="r.pdf") == "r.pdf"
    assert download_name(RecordLabel(" ..."), extension=".pdf", fallback="r.pdf") == "r.pdf"


def _info(recipient: bytes, *, record_id: bytes = b"\x11" * 32, version: int = 1) -> bytes:
    return label_info(chain_id=31337, ledger=LEDGER, record_id=record_id, version=version, recipient=recipient)


def test_a_sealed_label_opens_only_with_its_key_for_its_record_version() -> None:
    key, other = X25519PrivateKey.generate(), X25519PrivateKey.generate()
    public = public_key_bytes(key)
    plaintext = RecordLabel("Blood pressure", "bp.json").encode()
    sealed = seal_to(plaintext, public, _info(public))
    assert plaintext not in sealed and b"Blood" not in sealed
    assert open_sealed(sealed, key, _info(public)) == plaintext
    with pytest.raises(DecryptionError):
        open_sealed(sealed, other, _info(public_key_bytes(other)))
    with pytest.raises(DecryptionError):
        open_sealed(sealed, key, _info(public, version=2))
    with pytest.raises(DecryptionError):
        open_sealed(sealed, key, _info(public, record_id=b"\x22" * 32))
    tampered = bytearray(sealed)
    tampered[-1] ^= 1
    with pytest.raises(DecryptionError):
        open_sealed(bytes(tampered), key, _info(public))
    with pytest.raises(DecryptionError):
        open_sealed(sealed[:20], key, _info(public))
    # Two seals of one label differ (a fresh ephemeral key each time): equal titles cannot be matched.
    assert seal_to(plaintext, public, _info(public)) != sealed


def test_sealing_refuses_a_missing_or_malformed_key() -> None:
    with pytest.raises(KeyCustodyError, match="no encryption key"):
        seal_to(b"x", bytes(32), _info(bytes(32)))
    with pytest.raises(KeyCustodyError):
        seal_to(b"x", b"\x01" * 31, b"")
    with pytest.raises(KeyCustodyError):
        label_info(chain_id=1, ledger="0x1234", record_id=b"\x11" * 32, version=1, recipient=b"\x01" * 32)
    with pytest.raises(KeyCustodyError):
        label_info(chain_id=1, ledger=LEDGER, record_id=b"\x11" * 32, version=0, recipient=b"\x01" * 32)


def test_a_node_key_file_opens_labels_sealed_to_any_of_its_keys(tmp_path: os.PathLike[str]) -> None:
    key_file = X25519KeyFile(f"{tmp_path}/encryption.key")
    first = key_file.public_key
    sealed = seal_to(b"label", first, _info(first))
    key_file.rotate()
    assert key_file.public_key != first
    assert key_file.open_sealed(sealed, _info, first) == b"label"
    with pytest.raises(DecryptionError):
        key_file.open_sealed(sealed, _info)  # the current key is another one
