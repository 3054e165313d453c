"""The data dir is private to the service's user: the dir 0700, everything in it without group or
other permissions (docs/operations.md, "Data dir permissions").

It holds the SQLite DB and its WAL (break-glass reasons, the delivery log, which provider
sees which patient), the keys, the deployment record, the blobs and the chain state.
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Callable
from pathlib import Path

from ledger_service.errors import ConfigurationError

# New files 0600 and dirs 0700, whoever creates them: this process (SQLite makes its -wal and
# -shm with the DB's own mode) and its children (anvil's state and history).
PRIVATE_UMASK = 0o077
OPEN_BITS = 0o077
LISTED_FIXES = 10


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


def secure_data_dir(
    data_dir: Path, *, extra_files: tuple[Path, ...] = (), warn: Callable[[str], None] = _warn
) -> list[Path]:
    """Create ``data_dir`` 0700, or take group/other permissions off it and everything under it
    (symlinks are not followed), and set this process's umask to 0077. Returns what was fixed,
    after warning about it. ``extra_files`` (a SQLite DB kept elsewhere) are checked as well."""
    os.umask(PRIVATE_UMASK)
    if not data_dir.exists():
        data_dir.mkdir(mode=0o700, parents=True)
    fixed: list[tuple[Path, int, int]] = []
    _make_private(data_dir, fixed)
    for root, dirs, files in os.walk(data_dir):
        for name in (*dirs, *files):
            _make_private(Path(root) / name, fixed)
    for path in extra_files:
        _make_private(path, fixed)
    for path, old, new in fixed[:LISTED_FIXES]:
        warn(f"{path} was readable by group or others (mode {old:04o}); it is now {new:04o}")
    if len(fixed) > LISTED_FIXES:
        warn(f"... and {len(fixed) - LISTED_FIXES} more files under {data_dir} were made private the same way")
    return [path for path, _, _ in fixed]


def _make_private(path: Path, fixed: list[tuple[Path, int, int]]) -> None:
    try:
        info = path.lstat()
    except FileNotFoundError:  # gone meanwhile, or an extra file not created yet
        return
    if stat.S_ISLNK(info.st_mode):
        return
    mode = stat.S_IMODE(info.st_mode)
    if not mode & OPEN_BITS:
        return
    private = mode & ~OPEN_BITS
    try:
        os.chmod(path, private)
    except OSError as exc:
        raise ConfigurationError(
            f"{path} is readable by group or others (mode {mode:04o}) and cannot be made private "
            f"({exc.strerror}); chown it to the user the service runs as, or chmod go-rwx it"
        ) from exc
    fixed.append((path, mode, private))
