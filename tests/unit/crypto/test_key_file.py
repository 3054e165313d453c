"""X25519 key files (a provider's encryption keys, a custodian's long-term key): 0600 creation whatever the umask,
refusal of loose permissions and malformed files, reload, concurrent first use, no key bytes in reprs, rotation
that keeps the keys older sealed shares need, retirement that destroys them."""

from __future__ import annotations

import base64
import json
import os
import pickle
import secrets
import stat
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from ledger_service.crypto.key_file import X25519KeyFile
from ledger_service.crypto.key_shares import ShareSlot, public_key_bytes, seal_share
from ledger_service.custodian.long_term_key import CustodianKeyFile
from ledger_service.errors import DecryptionError, KeyCustodyError

SLOT = ShareSlot(chain_id=31337, ledger="0x" + "11" * 20, record_id=bytes(range(32)), version=3, index=2)


@pytest.fixture(params=[X25519KeyFile, CustodianKeyFile], ids=["x25519", "custodian"])
def key_class(request: pytest.FixtureRequest) -> type[X25519KeyFile]:
    cls: type[X25519KeyFile] = request.param
    return cls


@pytest.fixture
def key_path(tmp_path: Path) -> Path:
    return tmp_path / "keys" / "key.json"


@pytest.fixture
def keys(key_class: type[X25519KeyFile], key_path: Path) -> X25519KeyFile:
    return key_class(key_path)


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
    """Every spelling of every private key in the file that must never appear in messages or reprs."""
    out: list[str] = []
    for raw in _file_keys(path).values():
        out += [raw.hex(), "0x" + raw.hex(), base64.b64encode(raw).decode(), repr(raw)]
    return out


def _share() -> bytes:
    return secrets.token_bytes(32) + bytes([SLOT.index])


def public_key_bytes_of(private: bytes) -> bytes:
    return public_key_bytes(X25519PrivateKey.from_private_bytes(private))


def _write(path: Path, content: bytes) -> None:
    fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
    try:
        os.write(fd, content)
    finally:
        os.close(fd)


def _no_temp_files(directory: Path) -> bool:
    return [p.name for p in directory.iterdir() if p.name.endswith(".tmp")] == []


# --------------------------------------------------------------------------- the key file


def test_created_with_0600(keys: X25519KeyFile, key_class: type[X25519KeyFile], key_path: Path) -> None:
    assert key_path.is_file()
    assert _mode(key_path) == 0o600
    assert _mode(key_path.with_name(key_path.name + ".lock")) == 0o600
    assert stat.S_IMODE(os.stat(key_path.parent).st_mode) == 0o700
    assert json.loads(key_path.read_bytes())["format"] == key_class.file_format
    stored = _file_keys(key_path)
    assert list(stored) == [keys.current_kek_id]
    assert len(stored[keys.current_kek_id]) == 32
    assert keys.public_keys() == (keys.public_key,)


def test_custodian_key_file_has_its_own_format() -> None:
    assert CustodianKeyFile.file_format != X25519KeyFile.file_format


@pytest.mark.usefixtures("restore_umask")
@pytest.mark.parametrize("umask", [0o000, 0o077])
def test_created_with_0600_whatever_the_umask(key_class: type[X25519KeyFile], tmp_path: Path, umask: int) -> None:
    os.umask(umask)
    path = tmp_path / "key.json"
    key_class(path)
    assert _mode(path) == 0o600


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o666])
def test_refuses_file_readable_by_others(
    keys: X25519KeyFile, key_class: type[X25519KeyFile], key_path: Path, mode: int
) -> None:
    os.chmod(key_path, mode)
    with pytest.raises(KeyCustodyError) as info:
        key_class(key_path)
    message = str(info.value)
    assert str(key_path) in message
    assert f"{mode:04o}" in message
    assert info.value.details["mode"] == f"{mode:04o}"
    for secret in _secrets_in(key_path):
        assert secret not in message + repr(info.value.details)


def test_refuses_directory(key_class: type[X25519KeyFile], tmp_path: Path) -> None:
    os.chmod(tmp_path, 0o700)
    (tmp_path / "d").mkdir(mode=0o700)
    with pytest.raises(KeyCustodyError, match="not a regular file"):
        key_class(tmp_path / "d")


_VALID_KEY = base64.b64encode(bytes(range(1, 33))).decode()


def _doc(file_format: str, key: str, current: str = "a") -> bytes:
    entry = {"id": "a", "created_at": "x", "key": key}
    return json.dumps({"format": file_format, "current": current, "keys": [entry]}).encode()


@pytest.mark.parametrize(
    "content",
    [
        lambda f: b"not json",
        lambda f: b"{}",
        lambda f: json.dumps({"format": f, "current": "a", "keys": []}).encode(),
        lambda f: json.dumps({"format": f, "current": "a", "keys": ["a"]}).encode(),  # entry not an object
        lambda f: _doc(f, key="!!"),  # not base64
        lambda f: _doc(f, key="AAAA"),  # wrong length
        lambda f: _doc(f, key=_VALID_KEY, current="b"),  # current key missing
        lambda f: json.dumps(
            {"format": f, "current": "a", "keys": [{"id": "a", "created_at": "x", "key": _VALID_KEY}] * 2}
        ).encode(),  # duplicated id
    ],
    ids=["not-json", "empty", "no-keys", "entry-not-object", "not-base64", "wrong-length", "no-current", "dup"],
)
def test_refuses_malformed_file(
    key_class: type[X25519KeyFile], tmp_path: Path, content: Callable[[str], bytes]
) -> None:
    path = tmp_path / "key.json"
    raw = content(key_class.file_format)
    _write(path, raw)
    with pytest.raises(KeyCustodyError) as info:
        key_class(path)
    # parser errors (which can hold the document) are neither chained nor shown as the context
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__ or info.value.__context__ is None
    assert _VALID_KEY not in str(info.value) + repr(info.value.details)
    assert path.read_bytes() == raw  # a bad file is refused, never replaced by a fresh key


@pytest.mark.parametrize(
    ("writer", "reader"),
    [(X25519KeyFile, CustodianKeyFile), (CustodianKeyFile, X25519KeyFile)],
    ids=["custodian-refuses-x25519", "x25519-refuses-custodian"],
)
def test_refuses_the_other_kind_of_key_file(
    tmp_path: Path, writer: type[X25519KeyFile], reader: type[X25519KeyFile]
) -> None:
    """A provider's encryption key file is not a custodian's long-term key, nor the other way round."""
    path = tmp_path / "key.json"
    writer(path)
    before = path.read_bytes()
    with pytest.raises(KeyCustodyError, match="unknown format") as info:
        reader(path)
    for secret in _secrets_in(path):
        assert secret not in str(info.value) + repr(info.value.details)
    assert path.read_bytes() == before


def test_reload_from_disk_gives_same_key(keys: X25519KeyFile, key_class: type[X25519KeyFile], key_path: Path) -> None:
    share = _share()
    sealed = seal_share(share, SLOT, keys.public_key)
    reloaded = key_class(key_path)
    assert reloaded.current_kek_id == keys.current_kek_id
    assert reloaded.public_key == keys.public_key
    assert reloaded.open_share(sealed, SLOT) == share


def test_concurrent_first_use_agrees_on_one_key(key_class: type[X25519KeyFile], tmp_path: Path) -> None:
    path = tmp_path / "key.json"
    results: list[tuple[str, bytes]] = []
    errors: list[BaseException] = []

    def open_it() -> None:
        try:
            opened = key_class(path)
            results.append((opened.current_kek_id, opened.public_key))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(results) == 8
    assert len(set(results)) == 1
    assert len(_file_keys(path)) == 1
    assert _no_temp_files(tmp_path)


def test_repr_leaks_no_key_bytes(keys: X25519KeyFile, key_path: Path) -> None:
    keys.rotate()
    text = repr(keys) + str(keys)
    assert keys.current_kek_id in text
    for secret in _secrets_in(key_path):
        assert secret not in text


def test_cannot_be_pickled(keys: X25519KeyFile) -> None:
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(keys)


# --------------------------------------------------------------------------- rotation and retirement


def test_rotate_keeps_old_keys_for_open(keys: X25519KeyFile, key_class: type[X25519KeyFile], key_path: Path) -> None:
    old_id, old_public = keys.current_kek_id, keys.public_key
    share = _share()
    sealed_to_old = seal_share(share, SLOT, old_public)

    new_id = keys.rotate()

    assert new_id != old_id
    assert keys.current_kek_id == new_id
    assert keys.public_key != old_public
    assert keys.kek_ids() == (old_id, new_id)
    assert keys.public_keys() == (old_public, keys.public_key)
    assert keys.open_share(sealed_to_old, SLOT, old_public) == share
    # the current key is the new one: the old share does not open as sealed to it, a new one does
    with pytest.raises(DecryptionError):
        keys.open_share(sealed_to_old, SLOT)
    new_share = _share()
    assert keys.open_share(seal_share(new_share, SLOT, keys.public_key), SLOT) == new_share
    assert _mode(key_path) == 0o600
    assert set(_file_keys(key_path)) == {old_id, new_id}
    assert _no_temp_files(key_path.parent)
    reloaded = key_class(key_path)
    assert reloaded.current_kek_id == new_id
    assert reloaded.open_share(sealed_to_old, SLOT, old_public) == share


def test_retire_then_open_fails(keys: X25519KeyFile, key_class: type[X25519KeyFile], key_path: Path) -> None:
    old_id, old_public = keys.current_kek_id, keys.public_key
    sealed_to_old = seal_share(_share(), SLOT, old_public)
    keys.rotate()
    share = _share()
    sealed_to_new = seal_share(share, SLOT, keys.public_key)

    keys.retire(old_id)

    assert old_id not in keys.kek_ids()
    assert old_public not in keys.public_keys()
    assert old_id not in _file_keys(key_path)
    for stored in _file_keys(key_path).values():
        assert public_key_bytes_of(stored) != old_public
    with pytest.raises(KeyCustodyError, match="not a key of this file") as info:
        keys.open_share(sealed_to_old, SLOT, old_public)
    assert old_public.hex() in str(info.value)
    with pytest.raises(KeyCustodyError, match="not a key of this file"):
        key_class(key_path).open_share(sealed_to_old, SLOT, old_public)
    assert keys.open_share(sealed_to_new, SLOT) == share  # the current key is unaffected
    assert _mode(key_path) == 0o600
    assert _no_temp_files(key_path.parent)


def test_cannot_retire_current_or_unknown(keys: X25519KeyFile, key_path: Path) -> None:
    before = key_path.read_bytes()
    with pytest.raises(KeyCustodyError, match="current"):
        keys.retire(keys.current_kek_id)
    with pytest.raises(KeyCustodyError, match="unknown"):
        keys.retire("x25519-unknown")
    assert key_path.read_bytes() == before
    assert keys.public_keys() == (keys.public_key,)


def test_other_instance_sees_rotation(keys: X25519KeyFile, key_class: type[X25519KeyFile], key_path: Path) -> None:
    """A second process that loaded before the rotation reloads when a share is sealed to a key it never saw."""
    stale = key_class(key_path)
    keys.rotate()
    share = _share()
    sealed = seal_share(share, SLOT, keys.public_key)
    assert stale.open_share(sealed, SLOT, keys.public_key) == share
    # and a rotation from the stale instance keeps the key it never saw
    stale.rotate()
    assert set(key_class(key_path).kek_ids()) >= {keys.current_kek_id}
    assert keys.open_share(sealed, SLOT, public_key_bytes_of(_file_keys(key_path)[keys.current_kek_id])) == share


def test_concurrent_rotations_from_other_instances_lose_no_key(
    keys: X25519KeyFile, key_class: type[X25519KeyFile], key_path: Path
) -> None:
    """Instances of several processes (here: one per thread, each with its own file handle) rotating at once never
    overwrite each other's new keys: a rotation reads the file again under the cross-process lock."""
    first = keys.current_kek_id
    created: list[str] = []
    errors: list[BaseException] = []

    def rotate_some(instance: X25519KeyFile) -> None:
        try:
            for _ in range(5):
                created.append(instance.rotate())
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=rotate_some, args=(key_class(key_path),)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(set(created)) == 20
    assert set(_file_keys(key_path)) == {first, *created}
    assert _no_temp_files(key_path.parent)


def test_thread_safety_under_rotation(keys: X25519KeyFile) -> None:
    errors: list[BaseException] = []
    stop = threading.Event()

    def worker() -> None:
        try:
            while not stop.is_set():
                share = _share()
                recipient = keys.public_key
                assert keys.open_share(seal_share(share, SLOT, recipient), SLOT, recipient) == share
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for _ in range(10):
        keys.rotate()
    stop.set()
    for t in threads:
        t.join()
    assert not errors
    assert len(keys.kek_ids()) == 11
    assert len(set(keys.public_keys())) == 11
