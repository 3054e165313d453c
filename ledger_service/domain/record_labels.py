"""A record's human label: its title and original file name, and the category its content suggests
(docs/architecture.md, "Record titles").

Pure code: the suggestion reads a FHIR resource (a dict) or a file name and media type; the label's wire
form is what the node seals (ledger_service/crypto/sealing.py) and only the parties holding a recipient key
open. Titles are health information: nothing here logs them or puts them in an error message.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from typing import Any, Final

from ledger_service.errors import ValidationError

__all__ = [
    "CATEGORY_CLINICAL_NOTE",
    "CATEGORY_IMAGING",
    "CATEGORY_LABORATORY",
    "CATEGORY_MEDICATION",
    "CATEGORY_VITAL_SIGNS",
    "MAX_FILE_NAME",
    "MAX_TITLE",
    "RecordLabel",
    "Suggestion",
    "download_name",
    "suggest",
]

CATEGORY_LABORATORY: Final = "laboratory"
CATEGORY_IMAGING: Final = "imaging"
CATEGORY_MEDICATION: Final = "medication"
CATEGORY_CLINICAL_NOTE: Final = "clinical-note"
# Not one of the contract's constructor categories: the demo deployment registers it (chain/deploy.py).
CATEGORY_VITAL_SIGNS: Final = "vital-signs"

MAX_TITLE: Final = 200
MAX_FILE_NAME: Final = 255

# FHIR R4 observation-category codes (http://terminology.hl7.org/CodeSystem/observation-category).
_OBSERVATION_CATEGORIES: Final = {
    "vital-signs": CATEGORY_VITAL_SIGNS,
    "laboratory": CATEGORY_LABORATORY,
    "imaging": CATEGORY_IMAGING,
}
_RESOURCE_CATEGORIES: Final = {
    "DiagnosticReport": CATEGORY_LABORATORY,
    "Specimen": CATEGORY_LABORATORY,
    "ImagingStudy": CATEGORY_IMAGING,
    "Media": CATEGORY_IMAGING,
    "MedicationStatement": CATEGORY_MEDICATION,
    "MedicationRequest": CATEGORY_MEDICATION,
    "MedicationAdministration": CATEGORY_MEDICATION,
    "MedicationDispense": CATEGORY_MEDICATION,
    "Immunization": CATEGORY_MEDICATION,
    "DocumentReference": CATEGORY_CLINICAL_NOTE,
    "Composition": CATEGORY_CLINICAL_NOTE,
    "Condition": CATEGORY_CLINICAL_NOTE,
    "AllergyIntolerance": CATEGORY_CLINICAL_NOTE,
    "Procedure": CATEGORY_CLINICAL_NOTE,
    "Encounter": CATEGORY_CLINICAL_NOTE,
}
# LOINC codes of the vital signs profile (FHIR R4 "Vital Signs"), for Observations without a category.
_VITAL_SIGNS_LOINC: Final = frozenset(
    {"85353-1", "9279-1", "8867-4", "2708-6", "59408-5", "8310-5", "8302-2", "9843-4", "29463-7", "39156-5",
     "85354-9", "8480-6", "8462-4", "8478-0"}
)  # fmt: skip
_DATE_FIELDS: Final = (
    "effectiveDateTime",
    "effectivePeriod",
    "issued",
    "date",
    "recordedDate",
    "onsetDateTime",
    "authoredOn",
    "dateAsserted",
    "started",
    "performedDateTime",
    "occurrenceDateTime",
)
_MONTHS: Final = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_FILE_CATEGORIES: Final = (
    (("image/", "application/dicom"), CATEGORY_IMAGING),
    (("text/", "application/pdf"), CATEGORY_CLINICAL_NOTE),
)
_DICOM_EXTENSIONS: Final = (".dcm", ".dicom")


@dataclass(frozen=True)
class Suggestion:
    """A title and a category the provider may change before the upload (``category`` None: no guess)."""

    title: str
    category: str | None


def _text(value: Any) -> str:
    return " ".join(value.split()) if isinstance(value, str) else ""


def _concept_text(concept: Any) -> str:
    """A CodeableConcept in words: its ``text``, else its first coding's ``display``."""
    if not isinstance(concept, dict):
        return ""
    if text := _text(concept.get("text")):
        return text
    for coding in concept.get("coding") or ():
        if isinstance(coding, dict) and (display := _text(coding.get("display"))):
            return display
    return ""


def _codes(concept: Any) -> list[str]:
    if not isinstance(concept, dict):
        return []
    return [str(c.get("code")) for c in concept.get("coding") or () if isinstance(c, dict) and c.get("code")]


def _first_date(resource: dict[str, Any]) -> str:
    for name in _DATE_FIELDS:
        value = resource.get(name)
        if isinstance(value, dict):
            value = value.get("start")
        if isinstance(value, str) and (match := re.match(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?", value)):
            year, month, day = match.groups()
            if month and 1 <= int(month) <= 12:
                month_name = _MONTHS[int(month) - 1]
                return f"{int(day)} {month_name} {year}" if day else f"{month_name} {year}"
            return year
    return ""


def _split_words(name: str) -> str:
    """``DiagnosticReport`` -> ``Diagnostic report``."""
    words = re.sub(r"(?<!^)(?=[A-Z])", " ", name).split()
    return " ".join([words[0], *(w.lower() for w in words[1:])]) if words else name


def _fhir_name(resource: dict[str, Any]) -> str:
    kind = resource.get("resourceType")
    if kind in {"MedicationStatement", "MedicationRequest", "MedicationAdministration", "MedicationDispense"}:
        if name := _concept_text(resource.get("medicationCodeableConcept")):
            return name
        reference = resource.get("medicationReference")
        if isinstance(reference, dict) and (name := _text(reference.get("display"))):
            return name
    if kind == "Immunization" and (name := _concept_text(resource.get("vaccineCode"))):
        return name
    if kind == "DocumentReference":
        if name := _text(resource.get("description")) or _concept_text(resource.get("type")):
            return name
        for item in resource.get("content") or ():
            attachment = item.get("attachment") if isinstance(item, dict) else None
            if isinstance(attachment, dict) and (name := _text(attachment.get("title"))):
                return name
    if kind == "Composition" and (name := _text(resource.get("title"))):
        return name
    if name := _concept_text(resource.get("code")) or _concept_text(resource.get("type")):
        return name
    return _split_words(kind) if isinstance(kind, str) and kind else "FHIR resource"


def _fhir_category(resource: dict[str, Any]) -> str | None:
    kind = resource.get("resourceType")
    if kind == "Observation":
        categories = resource.get("category") or []
        for concept in categories if isinstance(categories, list) else [categories]:
            for code in _codes(concept):
                if code in _OBSERVATION_CATEGORIES:
                    return _OBSERVATION_CATEGORIES[code]
        if _VITAL_SIGNS_LOINC.intersection(_codes(resource.get("code"))):
            return CATEGORY_VITAL_SIGNS
        return CATEGORY_LABORATORY
    if kind == "DiagnosticReport":
        for concept in resource.get("category") or ():
            codes = _codes(concept)
            if any(c in {"RAD", "imaging", "LP29684-5"} for c in codes):
                return CATEGORY_IMAGING
    return _RESOURCE_CATEGORIES.get(kind) if isinstance(kind, str) else None


def _title_from_file_name(file_name: str) -> str:
    stem = file_name.rsplit("/", 1)[-1].rsplit("\\", 1)[-1]
    if "." in stem.lstrip("."):
        stem = stem[: stem.rfind(".")]
    words = " ".join(re.sub(r"[_\-.]+", " ", stem).split())
    return words[:1].upper() + words[1:] if words else ""


def suggest(*, media_type: str, fhir: dict[str, Any] | None = None, file_name: str | None = None) -> Suggestion:
    """The title and category a record's content suggests: from a FHIR resource its name (``code.text`` or
    the first ``code.coding.display``, or its type) and date; from a file its name. Never fails on odd
    content: a resource without a name is titled by its type."""
    if fhir is not None:
        name = _fhir_name(fhir)
        when = _first_date(fhir)
        title = f"{name}, {when}" if when else name
        return Suggestion(title=_clip(title, MAX_TITLE), category=_fhir_category(fhir))
    title = _title_from_file_name(file_name or "")
    essence = media_type.split(";")[0].strip().lower()
    category = None
    lowered = (file_name or "").lower()
    if lowered.endswith(_DICOM_EXTENSIONS):
        category = CATEGORY_IMAGING
    else:
        for prefixes, code in _FILE_CATEGORIES:
            if essence.startswith(prefixes):
                category = code
                break
    return Suggestion(title=_clip(title, MAX_TITLE) or "Document", category=category)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _clean(value: str | None, limit: int, field: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValidationError(f"{field} must be text", field=field)
    value = unicodedata.normalize("NFC", " ".join(value.split()))
    if len(value) > limit:
        raise ValidationError(f"{field} is longer than {limit} characters", field=field)
    if any(unicodedata.category(c) == "Cc" for c in value):
        raise ValidationError(f"{field} has control characters", field=field)
    return value


@dataclass(frozen=True)
class RecordLabel:
    """What a person calls a record: a title and, for a file, its original name. Health information."""

    title: str
    file_name: str = ""

    @classmethod
    def of(cls, title: str | None, file_name: str | None) -> RecordLabel:
        """A label from an upload's fields (checked: length, no control characters; whitespace folded)."""
        clean_name = _clean(file_name, MAX_FILE_NAME, "fileName")
        if "/" in clean_name or "\\" in clean_name:
            clean_name = clean_name.replace("\\", "/").rsplit("/", 1)[-1]
        return cls(title=_clean(title, MAX_TITLE, "title"), file_name=clean_name)

    @property
    def empty(self) -> bool:
        return not self.title and not self.file_name

    def encode(self) -> bytes:
        """The plaintext that is sealed: compact JSON ``{"title", "fileName"}`` in UTF-8."""
        return json.dumps(
            {"title": self.title, "fileName": self.file_name}, ensure_ascii=False, separators=(",", ":")
        ).encode("utf-8")

    @classmethod
    def decode(cls, raw: bytes) -> RecordLabel:
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise ValidationError("a record label is not JSON") from None
        if not isinstance(data, dict):
            raise ValidationError("a record label is not a JSON object")
        title, file_name = data.get("title", ""), data.get("fileName", "")
        if not isinstance(title, str) or not isinstance(file_name, str):
            raise ValidationError("a record label's fields are text")
        return cls(title=title, file_name=file_name)


def download_name(label: RecordLabel | None, *, extension: str, fallback: str) -> str:
    """The name a download is saved under: the original file name, else the title made a file name (with
    ``extension``, e.g. ``.pdf``), else ``fallback``."""
    if label is not None and label.file_name:
        return label.file_name
    if label is not None and label.title:
        stem = re.sub(r'[\\/:*?"<>|\x00-\x1f]+', " ", label.title)
        stem = " ".join(stem.replace(",", "").split())[:120].strip(" .")
        if stem:
            return stem + extension
    return fallback
