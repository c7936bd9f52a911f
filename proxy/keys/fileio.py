"""Small files: read whole with a size cap, replaced atomically; OS errors named as messages."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path

from ..errors import ConfigError

FOLDER_MODE = 0o700


def _size(limit: int) -> str:
    return f"{limit // 1024 // 1024} MiB" if limit % (1024 * 1024) == 0 else f"{limit // 1024} KiB"


def read_limited(
    path: Path,
    what: str,
    limit: int,
    *,
    missing: str | None,
    directory: str,
    too_big: str,
    error: type[ConfigError] = ConfigError,
    regular: bool = False,
) -> tuple[bytes, os.stat_result]:
    """The bytes of ``path`` (at most ``limit``) and its status, both from the one open file.

    ``what`` names the file in messages ('credentials file PATH', '--developer-key-file PATH');
    ``missing``, ``directory`` and ``too_big`` are the fix for each case, after '; '. With
    ``missing`` None, FileNotFoundError is raised as it is: the caller expects that case.
    ``regular``: refuse anything but a regular file (a FIFO would wait for a writer forever).
    """
    try:
        # O_NONBLOCK: opening a FIFO does not wait for a writer (the check below refuses it);
        # it changes nothing for a regular file.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
        with os.fdopen(fd, "rb") as file:
            status = os.fstat(fd)
            if stat.S_ISDIR(status.st_mode):
                raise IsADirectoryError
            if regular and not stat.S_ISREG(status.st_mode):
                raise error(f"{what} is not a regular file (a pipe or a device?); {directory}")
            data = file.read(limit + 1)
    except FileNotFoundError:
        if missing is None:
            raise
        raise error(f"{what} does not exist; {missing}") from None
    except IsADirectoryError:
        raise error(f"{what} is a directory; {directory}") from None
    except OSError as exc:
        raise error(f"cannot read {what}: {exc.strerror}; check its permissions") from None
    if len(data) > limit:
        raise error(f"{what} is larger than {_size(limit)}; {too_big}")
    return data, status


def _dangling_link(path: Path) -> Path | None:
    """The first of ``path`` and its folders that is a symbolic link to nothing, if any."""
    for candidate in (path, *path.parents):
        with contextlib.suppress(OSError):  # one that cannot be looked at: mkdir will say why
            if candidate.is_symlink() and not candidate.exists():
                return candidate
    return None


def _folder(path: Path) -> Path:
    """The real path to write (through any symbolic links), its folder created (mode 0700) when
    missing; never through a link that leads nowhere, whose target's folders would be made."""
    link = _dangling_link(Path(os.path.abspath(path)))
    if link is not None:
        raise ConfigError(
            f"cannot write {path}: {link} is a symbolic link to {os.path.realpath(link)}, which "
            "does not exist; nothing was written: create that, or remove the link, then run again"
        )
    target = Path(os.path.realpath(path))  # through a symbolic link: the link stays
    try:
        # Each folder created is private, not only the last (mkdir's parents= uses the umask).
        for folder in reversed([p for p in target.parents if not p.exists()]):
            folder.mkdir(mode=FOLDER_MODE, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"cannot write {path}: {exc.strerror} in the folder {target.parent}; check that it "
            "exists or can be created and that you may create files in it"
        ) from None
    return target


def _current(target: Path, size: int) -> bytes | None:
    try:
        with target.open("rb") as file:
            return file.read(size + 1)
    except FileNotFoundError:
        return None


def replace_file(
    path: Path,
    data: bytes,
    *,
    before: bytes | None,
    status: os.stat_result | None,
    check: Callable[[Path], None],
) -> Path:
    """Write ``data`` to a new private file next to ``path``, ``check`` it, then rename it over
    ``path``, so that a reader (or a crash) sees the old file or the new one, never half of one.

    ``before`` is what the file held when read (None: it did not exist) and ``status`` its
    status then; the rename happens only if the file still holds exactly ``before``. Returns
    the real path written (``path`` itself unless it leads through a symbolic link).
    """
    target = _folder(path)
    try:
        # mkstemp creates the file with mode 0600 (O_CREAT | O_EXCL): private from the first byte.
        fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise ConfigError(
            f"cannot write {path}: {exc.strerror} in the folder {target.parent}; check that you "
            "may create files in it"
        ) from None
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        check(tmp)
        if status is not None and os.name == "posix":
            # An existing file keeps its mode and, when allowed, its owner: a file prepared
            # with sudo for a service user stays that user's.
            os.chmod(tmp, stat.S_IMODE(status.st_mode))
            with contextlib.suppress(OSError):
                os.chown(tmp, status.st_uid, status.st_gid)
        if _current(target, len(before or b"")) != before:
            raise ConfigError(f"{path} changed while being updated; it was not: run again")
        os.replace(tmp, target)
    except OSError as exc:
        raise ConfigError(
            f"cannot write {path}: {exc.strerror}; it was not changed: free some space or "
            "check the folder's permissions, then run again"
        ) from None
    finally:
        tmp.unlink(missing_ok=True)
    if os.name == "posix":  # make the rename itself durable; some file systems cannot
        with contextlib.suppress(OSError):
            folder_fd = os.open(target.parent, os.O_RDONLY)
            try:
                os.fsync(folder_fd)
            finally:
                os.close(folder_fd)
    return target
