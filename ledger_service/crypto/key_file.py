"""Files of secret keys readable only by their owner (mode 0600), one key current: the development key store of
the roles' long-term keys (docs/operations.md, "Keys"). A KMS/HSM adapter replaces a file in production.

:class:`SecretKeyFile` holds 32-byte secrets and their rotation; :class:`X25519KeyFile` is one of X25519 private
keys (a custodian's long-term key, a provider's encryption key), which opens the key shares sealed to it and never
hands the private key out.
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
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from ledger_service.crypto.key_shares import ShareSlot, open_share, public_key_bytes
from ledger_service.crypto.sealing import open_sealed
from ledger_service.errors import KeyCustodyError

__all__ = ["SecretKey", "SecretKeyFile", "X25519KeyFile"]

SECRET_SIZE: Final = 32


@dataclass(frozen=True)
class SecretKey:
    kek_id: str
    created_at: str
    key: bytes

    def __repr__(self) -> str:
        return f"SecretKey(kek_id={self.kek_id!r}, created_at={self.created_at!r})"


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
        self._keks: dict[str, SecretKey] = {}
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

    def _loaded(self, keks: dict[str, SecretKey]) -> None:
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

    def _write_atomic(self, keks: dict[str, SecretKey], current: str) -> None:
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


def _new_kek(existing: dict[str, SecretKey], prefix: str) -> SecretKey:
    while True:
        kek_id = prefix + secrets.token_hex(8)
        if kek_id not in existing:
            break
    created_at = datetime.now(UTC).isoformat(timespec="seconds")
    return SecretKey(kek_id=kek_id, created_at=created_at, key=secrets.token_bytes(SECRET_SIZE))


def _serialize(keks: dict[str, SecretKey], current: str, file_format: str) -> bytes:
    doc = {
        "format": file_format,
        "current": current,
        "keys": [
            {"id": k.kek_id, "created_at": k.created_at, "key": base64.b64encode(k.key).decode("ascii")}
            for k in keks.values()
        ],
    }
    return json.dumps(doc, indent=2).encode() + b"\n"


def _parse(raw: bytes, path: str, file_format: str) -> tuple[dict[str, SecretKey], str]:
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
    keks: dict[str, SecretKey] = {}
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
        if len(key) != SECRET_SIZE or kek_id in keks:
            raise KeyCustodyError("key file entry is invalid or duplicated", path=path, kek_id=kek_id)
        keks[kek_id] = SecretKey(kek_id=kek_id, created_at=created_at, key=key)
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


class X25519KeyFile(SecretKeyFile):
    """X25519 private keys in a :class:`SecretKeyFile`; the current one's public key is the published one."""

    file_format = "consent-ledger/x25519-key-file/v1"
    id_prefix = "x25519-"

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._private: dict[bytes, X25519PrivateKey] = {}
        super().__init__(path)

    def _loaded(self, keks: dict[str, SecretKey]) -> None:
        self._private = {}
        for kek in keks.values():
            private = X25519PrivateKey.from_private_bytes(kek.key)
            self._private[public_key_bytes(private)] = private

    @property
    def public_key(self) -> bytes:
        """The current 32-byte X25519 public key."""
        with self._lock:
            return public_key_bytes(X25519PrivateKey.from_private_bytes(self._keks[self._current].key))

    def public_keys(self) -> tuple[bytes, ...]:
        """Every public key a share may still be sealed to, oldest first."""
        with self._lock:
            return tuple(self._private)

    def _private_key(self, recipient: bytes) -> X25519PrivateKey:
        with self._lock:
            private = self._private.get(recipient)
        if private is None:
            self._reload()  # another process may have rotated
            with self._lock:
                private = self._private.get(recipient)
        if private is None:
            raise KeyCustodyError(f"0x{recipient.hex()} is not a key of this file (retired, or another's)")
        return private

    def open_share(self, sealed: bytes, slot: ShareSlot, recipient: bytes | None = None) -> bytes:
        """Open a share sealed to ``recipient`` (default: the current key), one of this file's public keys."""
        recipient = self.public_key if recipient is None else recipient
        return open_share(sealed, slot, self._private_key(recipient))

    def open_sealed(self, sealed: bytes, info: Callable[[bytes], bytes], recipient: bytes | None = None) -> bytes:
        """Open bytes HPKE-sealed (crypto/sealing.py) to ``recipient`` (default: the current key) under
        ``info(recipient)``."""
        recipient = self.public_key if recipient is None else recipient
        return open_sealed(sealed, self._private_key(recipient), info(recipient))
