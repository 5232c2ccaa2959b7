"""Parsed rosters, kept by their bytes: a large roster read once is not parsed again.

Parsing a 10,000-freelancer roster with every value's position takes about 2 CPU-seconds (libyaml, then a
Python object per node; bench/STACKS.md), and one change reads it several times: ``plan`` reads the base
and the head, then ``preview`` and ``up`` read them again, each in a new process. Reading a parse back from
here takes about a tenth of that.

- **Key**: the SHA-256 of the file's bytes and of the parser (``source.py``, ``limits.py``, PyYAML's version,
  the Python version). An edit to the roster or to the parser is a miss.
- **What**: only documents that parsed without an error, so every diagnostic still comes from the parser.
  Files under :data:`MIN_BYTES` are never stored: they parse faster than an entry is written.
- **Where**: ``$SANDBOX_INFRA_ROSTER_CACHE``, by default ``rosters/`` in the toolchain's cache
  (``$SANDBOX_INFRA_CACHE``, else ``$XDG_CACHE_HOME/sandbox-infra``), a directory of mode 0700 holding the
  :data:`ENTRIES` most recently used. ``SANDBOX_INFRA_ROSTER_CACHE=off`` turns it off.
- **Safety**: entries are :mod:`marshal` data, plain values with no code run on loading, written to a
  temporary name and renamed into place, and read only from a directory of the user's that no one else can
  write. A corrupt, foreign or unreadable entry is a miss, and a directory that cannot be written means no
  cache: it never fails a command.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import marshal
import multiprocessing
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import yaml

ENV = "SANDBOX_INFRA_ROSTER_CACHE"
"""The cache directory, or ``off``."""
ENTRIES = 8
"""Entries kept (at 10,000 freelancers an entry is about 6 MB)."""
MIN_BYTES = 128 * 1024
"""Smaller files are not cached (about 500 freelancers; parsing one takes under 0.1 s)."""

Parsed = tuple[object, dict[tuple[str | int, ...], tuple[int, int]], dict[tuple[str | int, ...], tuple[int, int]]]
"""The data, and the positions of its values and of its mapping keys (:class:`sandbox_infra.source.Positions`)."""


def directory() -> Path | None:
    """Where entries are kept; None when the cache is off."""
    configured = os.environ.get(ENV, "")
    if configured == "off":
        return None
    if configured:
        return Path(configured)
    toolchain = os.environ.get("SANDBOX_INFRA_CACHE") or Path(
        os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache", "sandbox-infra"
    )
    return Path(toolchain, "rosters")


@functools.cache
def _parser_digest() -> str:
    here = Path(__file__).parent
    digest = hashlib.sha256(f"{yaml.__version__} {yaml.__with_libyaml__} {sys.version}".encode())
    for name in ("source.py", "limits.py"):
        digest.update((here / name).read_bytes())
    return digest.hexdigest()


def entry(raw: bytes) -> Path | None:
    """The entry a file with these bytes is kept under; None when it is not cached (cache off, file small).
    Computed once per read: it hashes the whole file."""
    where = directory()
    if where is None or len(raw) < MIN_BYTES:
        return None
    return where / f"{hashlib.sha256(_parser_digest().encode() + raw).hexdigest()}.marshal"


def get(at: Path | None) -> Parsed | None:
    """The parse kept at ``at`` (an :func:`entry`), if there is one."""
    if at is None or not _private(at.parent):
        return None
    try:
        parsed = marshal.loads(at.read_bytes())
    except (OSError, EOFError, ValueError, TypeError):
        return None
    with contextlib.suppress(OSError):
        os.utime(at)  # most recently used: pruned last
    if not (isinstance(parsed, tuple) and len(parsed) == 3 and all(isinstance(p, dict) for p in parsed[1:])):
        return None
    return parsed


def _private(where: Path) -> bool:
    """Only a directory of this user's that no one else can write is read from."""
    try:
        status = where.stat()
    except OSError:
        return False
    return status.st_uid == os.getuid() and not status.st_mode & 0o022


def put(at: Path | None, parsed: Parsed) -> None:
    """Keep ``parsed`` at ``at`` (an :func:`entry`; nothing happens when it is None or cannot be written)."""
    if at is None:
        return
    try:
        payload = marshal.dumps(parsed)  # type: ignore[arg-type]  # YAML values; anything else raises ValueError
    except ValueError:  # a value marshal cannot hold (a YAML timestamp): parse it every time
        return
    try:
        at.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=at.parent, prefix=".tmp-")
    except OSError:
        return
    try:
        with os.fdopen(fd, "wb") as stream:
            stream.write(payload)
        os.replace(temporary, at)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        return
    _prune(at.parent)


def _prune(where: Path) -> None:
    """Remove all but the :data:`ENTRIES` most recently used entries."""
    entries = []
    for path in where.glob("*.marshal"):
        with contextlib.suppress(OSError):
            entries.append((path.stat().st_mtime, path))
    for _, path in sorted(entries, reverse=True)[ENTRIES:]:
        with contextlib.suppress(OSError):
            path.unlink()


@contextlib.contextmanager
def prefetch(path: Path, load: Callable[[Path], object]) -> Iterator[None]:
    """Parse ``path`` into the cache in a child process while the caller does something else (``plan`` of a
    change reads the base meanwhile), and wait for it on leaving, so the caller's own read of ``path`` is a
    hit: the two largest parses of a change then take the time of one on a machine with two cores. ``load``
    is :func:`sandbox_infra.source.load_yaml`. Nothing happens when the cache is off, the file is small or
    unreadable, or there is one core. The child's errors are not reported: the caller's own read finds them."""
    try:
        large = path.stat().st_size >= MIN_BYTES
    except OSError:
        large = False
    if directory() is None or not large or (os.cpu_count() or 1) < 2:
        yield
        return
    child = multiprocessing.get_context("fork").Process(target=_load_quietly, args=(load, path), daemon=True)
    child.start()
    try:
        yield
    finally:
        child.join()


def _load_quietly(load: Callable[[Path], object], path: Path) -> None:
    with contextlib.suppress(Exception):
        load(path)
