"""Cross-process locks around MLflow stores that have no locking of their own."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path


def sqlite_path(uri: str, project_path: Path | None = None) -> Path | None:
    """The database file of a ``sqlite:///`` URI (relative paths from ``project_path``
    or the working directory), or None for other stores."""
    if not uri.startswith("sqlite:///"):
        return None
    database = Path(uri.removeprefix("sqlite:///"))
    return database if database.is_absolute() else (project_path or Path.cwd()) / database


@contextlib.contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """An advisory lock on ``path`` across processes (POSIX ``flock``; a no-op elsewhere)."""
    try:
        import fcntl
    except ImportError:  # Windows: no flock; concurrent runs there are not serialised
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def store_lock(uri: str) -> Iterator[None]:
    """Serialise a read-decide-write section on a SQLite store (``<db>.lock``).

    Other stores (an ``mlflow server``) cannot be locked from here; callers re-check
    what they wrote instead.
    """
    database = sqlite_path(uri)
    if database is None:
        yield
        return
    with exclusive_lock(database.with_name(database.name + ".lock")):
        yield
