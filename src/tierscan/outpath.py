"""Output paths: checked before any work, written atomically, never replacing what is not ours.

Every file tierscan writes goes through ``atomic_write``: a temporary file in the target's
directory is filled, flushed to disk and renamed over the target. Rules, the same for every
subcommand (docs/cli.md, "Output paths"):

- a symlink is written *through*: the file it points to is replaced, the link stays;
- only a regular file (or nothing) is ever replaced: a directory, a device node, a FIFO or a
  socket at the path is refused (as root a rename would otherwise replace ``/dev/full``);
- missing parent directories are created, for a file (``--json runs/x.json``) as for a
  directory (``--plot plots/``);
- ``check_output_file`` / ``check_output_dir`` / ``check_output_files`` find all of that out
  before a run starts (and probe that the place is really writable: as root ``os.access`` says
  yes to ``/proc``), so a bad path costs nothing and creates nothing;
- ``atomic_batch()`` groups writes so that a set of files (``report --plot``'s PNGs) appears
  all together or not at all.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat

from tierscan.errors import ConfigError

__all__ = ["atomic_batch", "atomic_write", "check_output_dir", "check_output_file",
           "check_output_files", "ensure_dir", "real_output_path"]


def _fail(what: str, path: str, why: str):
    raise ConfigError(f"cannot write {what}: {why}", where=path or "''")


def real_output_path(path, what: str = "output file") -> str:
    """The path a write to ``path`` lands on (symlinks resolved), refused unless it is absent or
    a regular file."""
    path = os.fspath(path)
    if path == "":
        _fail(what, path, "empty path")
    real = os.path.realpath(path)
    try:
        st = os.stat(real)
    except (FileNotFoundError, NotADirectoryError):   # a parent is checked separately
        if os.path.islink(real):                 # realpath gives up on a loop
            _fail(what, path, "a symbolic link loop")
        return real
    except OSError as e:
        _fail(what, path, e.strerror or str(e))
    if stat.S_ISDIR(st.st_mode):
        _fail(what, path, "it is a directory")
    if not stat.S_ISREG(st.st_mode):
        _fail(what, path, f"it is {_kind(st.st_mode)}, not a regular file "
                          "(tierscan replaces only regular files)")
    return real


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def _nearest_existing(directory: str) -> str:
    probe = directory
    while not os.path.lexists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    return probe


def _probe_writable(directory: str, what: str, path: str) -> None:
    """Create and remove an empty file in ``directory``: the only check that also holds for root
    (``os.access`` is always true for root, but /proc, a read-only mount or a full inode table
    still refuse)."""
    for _ in range(10):
        tmp = os.path.join(directory, f".tierscan-probe.{secrets.token_hex(4)}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            continue
        except OSError as e:
            _fail(what, path, f"{directory}: {e.strerror or e}")
        os.close(fd)
        os.unlink(tmp)
        return
    _fail(what, path, f"cannot create a file in {directory}")


def _check_directory(directory: str, what: str, path: str) -> None:
    """``directory`` is, or can be created as, a writable directory."""
    existing = _nearest_existing(directory)
    if not os.path.isdir(existing):
        why = "is not a directory" if existing == directory else \
            f"cannot be created ({existing} is not a directory)"
        _fail(what, path, f"{directory} {why}")
    _probe_writable(existing, what, path)


def check_output_file(path, what: str = "output file") -> str:
    """Check, before any work, that ``path`` can be written: absent or a regular file (through
    symlinks), in a directory that exists or can be created and is writable. Creates nothing;
    a one-line ConfigError (exit 2) naming ``path`` otherwise. Returns ``path``."""
    real = real_output_path(path, what)
    _check_directory(os.path.dirname(real), what, os.fspath(path))
    return os.fspath(path)


def check_output_dir(path, what: str = "output directory") -> str:
    """Check, creating nothing, that ``path`` is a writable directory or can be created as one."""
    path = os.fspath(path)
    if path == "":
        _fail(what, path, "empty path")
    real = os.path.realpath(path)
    if os.path.lexists(real) and not os.path.isdir(real):
        _fail(what, path, "it exists and is not a directory")
    _check_directory(real, what, path)
    return path


def check_output_files(directory, names, what: str = "output directory") -> list[str]:
    """``check_output_dir(directory)`` and ``check_output_file`` for each of ``names`` in it
    (a directory or device already sitting at one of them is refused before any work)."""
    check_output_dir(directory, what)
    paths = [os.path.join(os.fspath(directory), n) for n in names]
    for p in paths:
        real_output_path(p, f"{what} file")
    return paths


def ensure_dir(path, what: str = "output directory") -> str:
    """Create the directory ``path`` (and parents) if needed; a ConfigError if that fails."""
    path = os.fspath(path)
    try:
        os.makedirs(path, exist_ok=True)
    except FileExistsError:
        raise ConfigError(f"cannot use as {what}: it exists and is not a directory",
                          where=path) from None
    except OSError as e:
        raise ConfigError(f"cannot create {what}: {e.strerror or e}", where=path) from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError(f"cannot write to {what}: permission denied", where=path)
    return path


# -- atomic writing --------------------------------------------------------------------------

# The open atomic_batch, if any: [(temporary file, final path)] waiting to be renamed.
_batch: list | None = None


@contextlib.contextmanager
def atomic_batch():
    """Within the block, ``atomic_write`` fills temporary files but renames none; at the end all
    are renamed into place together, or, if the block raises, all are removed. A set of files
    is then complete or untouched (a failure while the renames run, after every file was fully
    written and flushed, is the only window)."""
    global _batch
    if _batch is not None:            # nested: the outer batch decides
        yield
        return
    _batch = pending = []
    try:
        yield
    except BaseException:
        _batch = None
        for tmp, _ in pending:
            _unlink_quietly(tmp)
        raise
    _batch = None
    for i, (tmp, real) in enumerate(pending):
        try:
            os.replace(tmp, real)
        except OSError as e:
            for t, _ in pending[i:]:
                _unlink_quietly(t)
            raise ConfigError(f"cannot write file: {e.strerror or e}", where=real) from None
    for directory in {os.path.dirname(real) for _, real in pending}:
        _fsync_dir(directory)


def atomic_write(path, write, *, binary: bool = False, what: str = "file") -> str:
    """Write a file atomically: ``write(f)`` fills a temporary file next to the target, which is
    flushed to disk and renamed over it. The target is ``path`` with symlinks resolved; only a
    regular file is ever replaced (its permission bits are kept); missing parent directories are
    created. On any failure the temporary file is removed and the previous file left untouched;
    an OSError becomes a one-line ConfigError naming ``path``. Returns ``path``."""
    path = os.fspath(path)
    real = real_output_path(path, what)
    directory = os.path.dirname(real)
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"cannot write {what}: {e.strerror or e}", where=path) from None
    fd, tmp = _create_temp(real, directory, what, path)
    try:
        with contextlib.suppress(FileNotFoundError):
            os.fchmod(fd, stat.S_IMODE(os.stat(real).st_mode))   # keep an old file's mode
        kwargs = {} if binary else {"encoding": "utf-8", "newline": "\n"}
        with os.fdopen(fd, "wb" if binary else "w", **kwargs) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if _batch is not None:
            _batch.append((tmp, real))
            return path
        os.replace(tmp, real)
    except BaseException as e:
        _unlink_quietly(tmp)
        if isinstance(e, OSError):
            raise ConfigError(f"cannot write {what}: {e.strerror or e}", where=path) from None
        raise
    _fsync_dir(directory)
    return path


def _unlink_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def _create_temp(real: str, directory: str, what: str, path: str) -> tuple[int, str]:
    base = os.path.basename(real)
    for _ in range(100):
        tmp = os.path.join(directory, f".{base}.{secrets.token_hex(4)}.tmp")
        try:
            # 0o666 & ~umask, as for any file the user creates (mkstemp would force 0o600).
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp
        except FileExistsError:
            continue
        except OSError as e:
            raise ConfigError(f"cannot write {what}: {e.strerror or e}", where=path) from None
    raise ConfigError("cannot create a temporary file next to it", where=path)


def _fsync_dir(directory: str) -> None:
    """Make the rename durable (best effort: not every platform can open a directory)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
