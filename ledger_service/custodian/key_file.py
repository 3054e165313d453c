"""The key custodian's development implementation: KEKs in a 0600 key file.

:class:`LocalKeyFile` implements :class:`ledger_service.crypto.custody.KeyCustody` (the seam a
KMS/HSM adapter implements too), which the node and the hub use without knowing this room
(docs/architecture.md).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import json
import os
import secrets
import stat
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ledger_service.crypto.custody import WrappedKey
from ledger_service.crypto.envelope import DataKey
from ledger_service.errors import DecryptionError, KeyCustodyError

__all__ = ["LocalKeyFile", "SecretKeyFile"]

KEK_SIZE: Final = 32
_NONCE_SIZE: Final = 12
_WRAP_VERSION: Final = b"\x01"
_WRAPPED_SIZE: Final = len(_WRAP_VERSION) + _NONCE_SIZE + 32 + 16
_WRAP_DOMAIN: Final = b"consent-ledger/v1/kek-wrap\x00"


def _wrap_aad(kek_id: str, context: bytes) -> bytes:
    # kek_id is length-prefixed and context comes last, so the encoding is unambiguous.
    encoded_id = kek_id.encode()
    return _WRAP_DOMAIN + struct.pack(">H", len(encoded_id)) + encoded_id + bytes(context)


def _check_context(context: object) -> bytes:
    if not isinstance(context, (bytes, bytearray, memoryview)):
        raise KeyCustodyError("wrap context must be bytes")
    return bytes(context)


def _wrap_with(kek: AESGCM, kek_id: str, data_key: DataKey, context: bytes) -> WrappedKey:
    # Random 96-bit nonces: safe for well under 2**32 wraps per KEK, which rotation keeps us far from.
    nonce = os.urandom(_NONCE_SIZE)
    ciphertext = kek.encrypt(nonce, data_key.to_bytes(), _wrap_aad(kek_id, context))
    return WrappedKey(kek_id=kek_id, ciphertext=_WRAP_VERSION + nonce + ciphertext)


def _unwrap_with(kek: AESGCM, wrapped: WrappedKey, context: bytes) -> DataKey:
    blob = wrapped.ciphertext
    if not isinstance(blob, bytes) or len(blob) != _WRAPPED_SIZE or blob[:1] != _WRAP_VERSION:
        raise DecryptionError("wrapped data key failed authentication", kek_id=wrapped.kek_id)
    nonce, body = blob[1 : 1 + _NONCE_SIZE], blob[1 + _NONCE_SIZE :]
    try:
        return DataKey(kek.decrypt(nonce, body, _wrap_aad(wrapped.kek_id, context)))
    except InvalidTag:
        raise DecryptionError("wrapped data key failed authentication", kek_id=wrapped.kek_id) from None


@dataclass(frozen=True)
class _Kek:
    kek_id: str
    created_at: str
    key: bytes

    def __repr__(self) -> str:
        return f"_Kek(kek_id={self.kek_id!r}, created_at={self.created_at!r})"


class SecretKeyFile:
    """A JSON file of 32-byte secret keys readable only by its owner (mode 0600), one of them current.

    The file is created on first use with ``O_CREAT | O_EXCL`` and mode 0600 (no umask race)
    and published atomically; a file readable by group or others is refused. Rotation and
    retirement rewrite it atomically (0600 temp file, fsync, rename) under an advisory lock,
    so concurrent processes never lose a key. Thread-safe. Subclasses say what the keys are for
    (:meth:`_loaded` builds their per-key objects) and never hand key bytes out. Not for production:
    the keys sit in process memory and on disk in the clear; use a KMS/HSM adapter there.
    """

    file_format: str = "consent-ledger/kek-file/v1"
    id_prefix: str = "local-"

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._path = Path(path)
        self._lock = threading.RLock()
        self._keks: dict[str, _Kek] = {}
        self._current = ""
        with self._lock, self._file_lock():
            if not self._path.exists():
                self._create()
            self._load()

    @property
    def path(self) -> Path:
        return self._path

    @property
    def current_kek_id(self) -> str:
        """The current key's id (the one new work uses)."""
        with self._lock:
            return self._current

    def kek_ids(self) -> tuple[str, ...]:
        """All keys still available, oldest first (to find what can be retired)."""
        with self._lock:
            return tuple(self._keks)

    def rotate(self) -> str:
        """Create a new current key and return its id; older keys stay until retired."""
        with self._lock, self._file_lock():
            self._load()
            kek = _new_kek(existing=self._keks, prefix=self.id_prefix)
            self._write_atomic({**self._keks, kek.kek_id: kek}, kek.kek_id)
            self._load()
            return self._current

    def retire(self, kek_id: str) -> None:
        """Destroy a non-current key."""
        with self._lock, self._file_lock():
            self._load()
            if kek_id not in self._keks:
                raise KeyCustodyError("cannot retire an unknown key", kek_id=kek_id, path=str(self._path))
            if kek_id == self._current:
                raise KeyCustodyError("cannot retire the current key; rotate first", kek_id=kek_id)
            remaining = {k: v for k, v in self._keks.items() if k != kek_id}
            self._write_atomic(remaining, self._current)
            self._load()

    def _loaded(self, keks: dict[str, _Kek]) -> None:
        """Build the per-key objects of a freshly read file (called under the lock)."""

    def _reload(self) -> None:
        """Read the file again (another process may have rotated since)."""
        with self._lock, self._file_lock():
            self._load()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(path={str(self._path)!r}, current_kek_id={self._current!r}, keks={len(self._keks)})"
        )

    __str__ = __repr__

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError(f"{type(self).__name__} cannot be pickled")

    # ----------------------------------------------------------------- file handling

    @contextlib.contextmanager
    def _file_lock(self) -> Iterator[None]:
        """Cross-process advisory lock on a sidecar file (the key file itself is replaced by rename)."""
        self._path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        lock_path = self._path.with_name(self._path.name + ".lock")
        try:
            fd = os.open(lock_path, os.O_CREAT | os.O_RDWR, 0o600)
        except OSError as exc:
            raise KeyCustodyError("cannot open key file lock", path=str(lock_path), errno=exc.errno) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the flock

    def _create(self) -> None:
        """First run: write a fresh KEK to a 0600 temp file, then publish it with link() (fails if present)."""
        kek = _new_kek(existing={}, prefix=self.id_prefix)
        payload = _serialize({kek.kek_id: kek}, kek.kek_id, self.file_format)
        tmp = self._tmp_path()
        try:
            _write_new_file(tmp, payload)
            try:
                os.link(tmp, self._path)
            except FileExistsError:
                return  # created concurrently; _load() will use theirs
            _fsync_dir(self._path.parent)
        except OSError as exc:
            raise KeyCustodyError("cannot create key file", path=str(self._path), errno=exc.errno) from exc
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    def _write_atomic(self, keks: dict[str, _Kek], current: str) -> None:
        tmp = self._tmp_path()
        try:
            _write_new_file(tmp, _serialize(keks, current, self.file_format))
            os.replace(tmp, self._path)
            _fsync_dir(self._path.parent)
        except OSError as exc:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise KeyCustodyError("cannot rewrite key file", path=str(self._path), errno=exc.errno) from exc

    def _tmp_path(self) -> Path:
        return self._path.with_name(f".{self._path.name}.{secrets.token_hex(8)}.tmp")

    def _load(self) -> None:
        path = str(self._path)
        try:
            fd = os.open(self._path, os.O_RDONLY)
        except OSError as exc:
            raise KeyCustodyError("cannot open key file", path=path, errno=exc.errno) from exc
        try:
            st = os.fstat(fd)  # checked on the opened file, not the path: no check/use race
            if not stat.S_ISREG(st.st_mode):
                raise KeyCustodyError("key file is not a regular file", path=path)
            mode = stat.S_IMODE(st.st_mode)
            if mode & 0o077:
                raise KeyCustodyError(
                    f"key file {path} has mode {mode:04o}; it must not be accessible by group or others (chmod 600)",
                    path=path,
                    mode=f"{mode:04o}",
                )
            with os.fdopen(fd, "rb", closefd=False) as fh:
                raw = fh.read()
        finally:
            os.close(fd)
        keks, current = _parse(raw, path, self.file_format)
        self._keks = keks
        self._loaded(keks)
        self._current = current


class LocalKeyFile(SecretKeyFile):
    """Development custody of KEKs (:class:`ledger_service.crypto.custody.KeyCustody`): AES-256-GCM
    key-encryption keys in a :class:`SecretKeyFile`."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._aeads: dict[str, AESGCM] = {}
        super().__init__(path)

    def _loaded(self, keks: dict[str, _Kek]) -> None:
        self._aeads = {kek_id: AESGCM(kek.key) for kek_id, kek in keks.items()}

    def wrap(self, data_key: DataKey, context: bytes) -> WrappedKey:
        if not isinstance(data_key, DataKey):
            raise KeyCustodyError("data_key must be a DataKey")
        ctx = _check_context(context)
        with self._lock:
            kek_id = self._current
            aead = self._aeads[kek_id]
        return _wrap_with(aead, kek_id, data_key, ctx)

    def unwrap(self, wrapped: WrappedKey, context: bytes) -> DataKey:
        if not isinstance(wrapped, WrappedKey):
            raise KeyCustodyError("wrapped must be a WrappedKey")
        ctx = _check_context(context)
        with self._lock:
            aead = self._aeads.get(wrapped.kek_id)
            if aead is None:
                # Another process may have rotated since we loaded; look at the file once more.
                self._reload()
                aead = self._aeads.get(wrapped.kek_id)
        if aead is None:
            raise KeyCustodyError(
                "KEK is not available (unknown or retired)", kek_id=wrapped.kek_id, path=str(self._path)
            )
        return _unwrap_with(aead, wrapped, ctx)


def _new_kek(existing: dict[str, _Kek], prefix: str) -> _Kek:
    while True:
        kek_id = prefix + secrets.token_hex(8)
        if kek_id not in existing:
            break
    created_at = datetime.now(UTC).isoformat(timespec="seconds")
    return _Kek(kek_id=kek_id, created_at=created_at, key=AESGCM.generate_key(bit_length=256))


def _serialize(keks: dict[str, _Kek], current: str, file_format: str) -> bytes:
    doc = {
        "format": file_format,
        "current": current,
        "keys": [
            {"id": k.kek_id, "created_at": k.created_at, "key": base64.b64encode(k.key).decode("ascii")}
            for k in keks.values()
        ],
    }
    return json.dumps(doc, indent=2).encode() + b"\n"


def _parse(raw: bytes, path: str, file_format: str) -> tuple[dict[str, _Kek], str]:
    # Errors deliberately drop the cause (`from None`): parser exceptions can carry the document, i.e. key bytes.
    try:
        doc = json.loads(raw)
    except ValueError:
        raise KeyCustodyError("key file is not valid JSON", path=path) from None
    if not isinstance(doc, dict) or doc.get("format") != file_format:
        raise KeyCustodyError("key file has an unknown format", path=path)
    entries = doc.get("keys")
    current = doc.get("current")
    if not isinstance(entries, list) or not isinstance(current, str):
        raise KeyCustodyError("key file is malformed", path=path)
    keks: dict[str, _Kek] = {}
    for entry in entries:
        if not isinstance(entry, dict):
            raise KeyCustodyError("key file is malformed", path=path)
        kek_id, created_at, encoded = entry.get("id"), entry.get("created_at"), entry.get("key")
        if not isinstance(kek_id, str) or not kek_id or not isinstance(created_at, str) or not isinstance(encoded, str):
            raise KeyCustodyError("key file entry is malformed", path=path)
        try:
            key = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise KeyCustodyError("key file entry has an invalid key encoding", path=path, kek_id=kek_id) from None
        if len(key) != KEK_SIZE or kek_id in keks:
            raise KeyCustodyError("key file entry is invalid or duplicated", path=path, kek_id=kek_id)
        keks[kek_id] = _Kek(kek_id=kek_id, created_at=created_at, key=key)
    if current not in keks:
        raise KeyCustodyError("key file's current KEK is missing", path=path, kek_id=current)
    return keks, current


def _write_new_file(path: Path, payload: bytes) -> None:
    # O_EXCL + explicit mode: the file is never visible with wider permissions, whatever the umask.
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    try:
        os.fchmod(fd, 0o600)  # umask can only narrow 0600; make it exact so we can read it back
        view = memoryview(payload)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
