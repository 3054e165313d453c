"""LocalKeyFile custody: 0600 creation, refusal of loose permissions, wrap/unwrap, rotation, retirement."""

from __future__ import annotations

import base64
import json
import os
import pickle
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from ledger_service.crypto import (
    DataKey,
    KeyCustody,
    RecordBinding,
    WrappedKey,
    decrypt_bytes,
    encrypt_bytes,
    rewrap,
)
from ledger_service.custodian import LocalKeyFile
from ledger_service.errors import DecryptionError, KeyCustodyError


@pytest.fixture
def key_path(tmp_path: Path) -> Path:
    return tmp_path / "keys" / "kek.json"


@pytest.fixture
def custody(key_path: Path) -> LocalKeyFile:
    return LocalKeyFile(key_path)


@pytest.fixture
def restore_umask() -> Iterator[None]:
    old = os.umask(0o022)
    os.umask(old)
    yield
    os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _file_keys(path: Path) -> dict[str, bytes]:
    doc = json.loads(path.read_bytes())
    return {e["id"]: base64.b64decode(e["key"]) for e in doc["keys"]}


def _secrets_in(path: Path) -> list[str]:
    """Every spelling of every KEK in the file that must never appear in messages or reprs."""
    out: list[str] = []
    for raw in _file_keys(path).values():
        out += [raw.hex(), base64.b64encode(raw).decode(), repr(raw)]
    return out


# --------------------------------------------------------------------------- the key file


def test_created_with_0600(custody: LocalKeyFile, key_path: Path) -> None:
    assert key_path.is_file()
    assert _mode(key_path) == 0o600
    assert _mode(key_path.with_name(key_path.name + ".lock")) == 0o600
    assert stat.S_IMODE(os.stat(key_path.parent).st_mode) == 0o700
    assert list(_file_keys(key_path)) == [custody.current_kek_id]
    assert len(_file_keys(key_path)[custody.current_kek_id]) == 32


@pytest.mark.usefixtures("restore_umask")
@pytest.mark.parametrize("umask", [0o000, 0o077])
def test_created_with_0600_whatever_the_umask(tmp_path: Path, umask: int) -> None:
    os.umask(umask)
    path = tmp_path / "kek.json"
    LocalKeyFile(path)
    assert _mode(path) == 0o600


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o666])
def test_refuses_file_readable_by_others(custody: LocalKeyFile, key_path: Path, mode: int) -> None:
    os.chmod(key_path, mode)
    with pytest.raises(KeyCustodyError) as info:
        LocalKeyFile(key_path)
    message = str(info.value)
    assert str(key_path) in message
    assert f"{mode:04o}" in message
    assert info.value.details["mode"] == f"{mode:04o}"
    for secret in _secrets_in(key_path):
        assert secret not in message + repr(info.value.details)


def test_refuses_directory(tmp_path: Path) -> None:
    os.chmod(tmp_path, 0o700)
    (tmp_path / "d").mkdir(mode=0o700)
    with pytest.raises(KeyCustodyError):
        LocalKeyFile(tmp_path / "d")


def _doc(key: str, current: str = "a") -> bytes:
    entry = {"id": "a", "created_at": "x", "key": key}
    return json.dumps({"format": "consent-ledger/kek-file/v1", "current": current, "keys": [entry]}).encode()


@pytest.mark.parametrize(
    "content",
    [
        b"not json",
        b"{}",
        b'{"format": "consent-ledger/kek-file/v1", "current": "a", "keys": []}',
        _doc(key="!!"),  # not base64
        _doc(key="AAAA"),  # wrong length
        _doc(key="A" * 43 + "=", current="b"),  # current KEK missing
    ],
)
def test_refuses_malformed_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "kek.json"
    fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
    os.write(fd, content)
    os.close(fd)
    with pytest.raises(KeyCustodyError) as info:
        LocalKeyFile(path)
    assert info.value.__cause__ is None  # parser errors (which can hold the document) are not chained


def test_reload_from_disk_gives_same_kek(custody: LocalKeyFile, key_path: Path, binding: RecordBinding) -> None:
    key = DataKey.generate()
    wrapped = custody.wrap(key, binding.aad())
    reloaded = LocalKeyFile(key_path)
    assert reloaded.current_kek_id == custody.current_kek_id
    assert reloaded.unwrap(wrapped, binding.aad()).to_bytes() == key.to_bytes()


def test_concurrent_first_use_agrees_on_one_kek(tmp_path: Path) -> None:
    path = tmp_path / "kek.json"
    results: list[str] = []
    errors: list[BaseException] = []

    def open_it() -> None:
        try:
            results.append(LocalKeyFile(path).current_kek_id)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(set(results)) == 1
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_is_a_key_custody(custody: LocalKeyFile) -> None:
    assert isinstance(custody, KeyCustody)


def test_repr_leaks_no_key_bytes(custody: LocalKeyFile, key_path: Path) -> None:
    custody.rotate()
    text = repr(custody) + str(custody)
    assert custody.current_kek_id in text
    for secret in _secrets_in(key_path):
        assert secret not in text
    with pytest.raises(TypeError):
        pickle.dumps(custody)


# --------------------------------------------------------------------------- wrap / unwrap


def test_wrap_unwrap_with_context(custody: LocalKeyFile, binding: RecordBinding) -> None:
    key = DataKey.generate()
    wrapped = custody.wrap(key, binding.aad())
    assert wrapped.kek_id == custody.current_kek_id
    assert key.to_bytes() not in wrapped.ciphertext
    assert custody.unwrap(wrapped, binding.aad()).to_bytes() == key.to_bytes()


def test_wraps_of_same_key_differ(custody: LocalKeyFile, binding: RecordBinding) -> None:
    key = DataKey.generate()
    assert custody.wrap(key, binding.aad()).ciphertext != custody.wrap(key, binding.aad()).ciphertext


def test_unwrap_refuses_wrong_context(custody: LocalKeyFile, binding: RecordBinding) -> None:
    wrapped = custody.wrap(DataKey.generate(), binding.aad())
    other = RecordBinding(binding.record_id, binding.version + 1, binding.patient)
    with pytest.raises(DecryptionError):
        custody.unwrap(wrapped, other.aad())
    with pytest.raises(DecryptionError):
        custody.unwrap(wrapped, b"")


@pytest.mark.parametrize("index", [0, 1, 12, 13, -1])
def test_unwrap_refuses_tampered_ciphertext(custody: LocalKeyFile, binding: RecordBinding, index: int) -> None:
    wrapped = custody.wrap(DataKey.generate(), binding.aad())
    blob = bytearray(wrapped.ciphertext)
    blob[index] ^= 1
    with pytest.raises(DecryptionError):
        custody.unwrap(WrappedKey(wrapped.kek_id, bytes(blob)), binding.aad())
    with pytest.raises(DecryptionError):
        custody.unwrap(WrappedKey(wrapped.kek_id, wrapped.ciphertext[:-1]), binding.aad())


def test_unwrap_refuses_relabelled_kek_id(custody: LocalKeyFile, binding: RecordBinding) -> None:
    wrapped = custody.wrap(DataKey.generate(), binding.aad())
    custody.rotate()
    with pytest.raises(DecryptionError):
        custody.unwrap(WrappedKey(custody.current_kek_id, wrapped.ciphertext), binding.aad())


def test_unwrap_unknown_kek(custody: LocalKeyFile, binding: RecordBinding) -> None:
    wrapped = custody.wrap(DataKey.generate(), binding.aad())
    with pytest.raises(KeyCustodyError):
        custody.unwrap(WrappedKey("local-doesnotexist", wrapped.ciphertext), binding.aad())


# --------------------------------------------------------------------------- rotation


def test_rotate_keeps_old_keks_for_unwrap(custody: LocalKeyFile, key_path: Path, binding: RecordBinding) -> None:
    old_id = custody.current_kek_id
    key = DataKey.generate()
    wrapped = custody.wrap(key, binding.aad())
    new_id = custody.rotate()
    assert new_id != old_id
    assert custody.current_kek_id == new_id
    assert custody.kek_ids() == (old_id, new_id)
    assert custody.wrap(DataKey.generate(), binding.aad()).kek_id == new_id
    assert custody.unwrap(wrapped, binding.aad()).to_bytes() == key.to_bytes()
    assert _mode(key_path) == 0o600
    assert set(_file_keys(key_path)) == {old_id, new_id}
    assert [p.name for p in key_path.parent.iterdir() if p.name.endswith(".tmp")] == []
    assert LocalKeyFile(key_path).current_kek_id == new_id


def test_rewrap_moves_to_new_kek_and_blob_is_untouched(custody: LocalKeyFile, binding: RecordBinding) -> None:
    plaintext = b"imaging study " * 10_000
    key = DataKey.generate()
    wrapped = custody.wrap(key, binding.aad())
    blob = encrypt_bytes(key, binding, plaintext)
    blob_before = bytes(blob)

    new_id = custody.rotate()
    moved = rewrap(custody, wrapped, binding.aad())

    assert moved.kek_id == new_id != wrapped.kek_id
    assert moved.ciphertext != wrapped.ciphertext
    assert blob == blob_before
    assert decrypt_bytes(custody.unwrap(moved, binding.aad()), binding, blob) == plaintext
    assert rewrap(custody, moved, binding.aad()) is moved  # idempotent: rerunning a rotation job is a no-op


def test_rewrap_with_wrong_context_fails(custody: LocalKeyFile, binding: RecordBinding) -> None:
    wrapped = custody.wrap(DataKey.generate(), binding.aad())
    custody.rotate()
    with pytest.raises(DecryptionError):
        rewrap(custody, wrapped, b"another record")


def test_retire_then_unwrap_fails(custody: LocalKeyFile, key_path: Path, binding: RecordBinding) -> None:
    old_id = custody.current_kek_id
    wrapped = custody.wrap(DataKey.generate(), binding.aad())
    custody.rotate()
    moved = rewrap(custody, wrapped, binding.aad())
    custody.retire(old_id)
    assert old_id not in custody.kek_ids()
    assert old_id not in _file_keys(key_path)
    with pytest.raises(KeyCustodyError):
        custody.unwrap(wrapped, binding.aad())
    with pytest.raises(KeyCustodyError):
        LocalKeyFile(key_path).unwrap(wrapped, binding.aad())
    assert custody.unwrap(moved, binding.aad())  # the rewrapped copy is unaffected


def test_cannot_retire_current_or_unknown(custody: LocalKeyFile) -> None:
    with pytest.raises(KeyCustodyError):
        custody.retire(custody.current_kek_id)
    with pytest.raises(KeyCustodyError):
        custody.retire("local-unknown")


def test_other_instance_sees_rotation(custody: LocalKeyFile, key_path: Path, binding: RecordBinding) -> None:
    """A second process that loaded before the rotation reloads when it meets an unknown kek id."""
    stale = LocalKeyFile(key_path)
    custody.rotate()
    key = DataKey.generate()
    wrapped = custody.wrap(key, binding.aad())
    assert stale.unwrap(wrapped, binding.aad()).to_bytes() == key.to_bytes()
    # and a rotation from the stale instance keeps the KEK it never saw
    stale.rotate()
    assert set(LocalKeyFile(key_path).kek_ids()) >= {wrapped.kek_id}


def test_thread_safety_under_rotation(custody: LocalKeyFile, binding: RecordBinding) -> None:
    errors: list[BaseException] = []
    stop = threading.Event()

    def worker() -> None:
        try:
            while not stop.is_set():
                key = DataKey.generate()
                wrapped = custody.wrap(key, binding.aad())
                assert custody.unwrap(wrapped, binding.aad()).to_bytes() == key.to_bytes()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for _ in range(10):
        custody.rotate()
    stop.set()
    for t in threads:
        t.join()
    assert not errors
    assert len(custody.kek_ids()) == 11
