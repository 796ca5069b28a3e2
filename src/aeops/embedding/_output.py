"""Where a job's answers land: Parquet written atomically, and what a killed job left.

A part is written by a thread to a temporary file beside its target, named after this
machine and process, and renamed into place only when complete. A later run removes
the temporary files of writers that are no longer running.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import queue
import re
import shutil
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

logger = logging.getLogger(__name__)

SUCCESS_MARKER = "_SUCCESS"

#: how answers are written. Embeddings, errors and ids are (nearly) all distinct
#: values, so dictionary encoding only costs: without it the writer is about twice as
#: fast and the file about 15% smaller (snappy compression stays on).
PARQUET_WRITE_OPTIONS: dict[str, Any] = {"use_dictionary": False}

#: The column of a set-aside row that says why it failed the model's suite.
FAILED_COLUMN = "aeops_failed"

# This machine, in a temporary file's name: a pid says whether a writer still runs
# only on the machine (and in the container) that wrote it.
WRITER = re.sub(r"[^A-Za-z0-9]", "_", socket.gethostname()) or "host"
# A temporary file left alone this long (seconds) has no live writer: one writes a
# batch every few seconds.
_STALE_AFTER = 600.0
# Added to a writer's temporary name, the folder output it is replacing, for the
# moment of the rename.
_REPLACED = "-replaced"
_DONE = object()


def _temp_pattern(name: str, writer: str) -> str:
    """The regular expression of a temporary file's name (the pid is group 1); the
    arguments are regular expressions too."""
    return rf"\.{name}\.tmp-{writer}-(\d{{1,7}})"


class AtomicParquetWriter:
    """Writes batches from a queue in a thread to ``.<target>.tmp-*``, renamed on commit.

    With ``replaces_folder`` the target is a finished folder output, moved aside only
    once the file is complete, for the moment of the rename, and put back if the rename
    fails.
    """

    def __init__(self, target: Path, schema: pa.Schema, replaces_folder: bool = False) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_left_over_temps(target)
        self.target = target
        self.temp = target.with_name(f".{target.name}.tmp-{WRITER}-{os.getpid()}")
        self.replaces_folder = replaces_folder
        self.schema = schema
        self._writer = pq.ParquetWriter(self.temp, schema, **PARQUET_WRITE_OPTIONS)
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=2)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._drain, daemon=True, name="aeops-writer")
        self._thread.start()

    def _drain(self) -> None:
        while (batch := self._queue.get()) is not _DONE:
            if self._error is None:
                try:
                    self._writer.write_batch(batch)
                except BaseException as error:
                    self._error = error

    def write(self, batch: pa.RecordBatch) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(batch)

    def commit(self) -> None:
        self._queue.put(_DONE)
        self._thread.join()
        self._writer.close()
        if self._error is not None:
            self.abort()
            raise self._error
        if not self.replaces_folder:
            self.temp.replace(self.target)
            return
        aside = self.temp.with_name(f"{self.temp.name}{_REPLACED}")
        remove_tree(aside)  # a killed run's of this pid: its folder was replaced
        self.target.rename(aside)
        try:
            self.temp.replace(self.target)
        except BaseException:
            aside.rename(self.target)
            raise
        logger.warning("Replaced the folder output at %s with one file", self.target)
        try:
            remove_tree(aside)
        except OSError as error:
            logger.warning("Could not remove the replaced folder output %s: %s", aside, error)

    def abort(self) -> None:
        if self._thread.is_alive():
            self._queue.put(_DONE)
            self._thread.join()
        try:
            self._writer.close()
        finally:
            self.temp.unlink(missing_ok=True)


def remove_left_over_temps(target: Path) -> None:
    """Remove the temporary files of ``target`` that a job killed mid-write (SIGKILL,
    SIGTERM) left behind, and a folder output it was replacing: written on this
    machine, by a process no longer running, and untouched for ten minutes. Anything
    else is left alone."""
    pattern = re.compile(
        _temp_pattern(re.escape(target.name), WRITER) + f"({re.escape(_REPLACED)})?"
    )
    for temp in target.parent.glob(f".{glob.escape(target.name)}.tmp-*"):
        match = pattern.fullmatch(temp.name)
        if match is None or int(match[1]) == os.getpid() or _running(int(match[1])):
            continue
        with contextlib.suppress(OSError):  # gone already, or not ours to remove
            if time.time() - temp.lstat().st_mtime > _STALE_AFTER:
                remove_tree(temp)


def remove_tree(path: Path) -> None:
    """Remove a file, a link (not what it points to) or a folder, if there."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def written_by_aeops(path: Path, set_aside: bool) -> bool:
    """Whether a file in a finished folder output is an aeops job's: a part (checked
    for its metadata before), a set-aside rows file (with ``aeops_failed``), or the
    temporary file of a part a killed rerun was writing."""
    if not path.is_file() or path.is_symlink():
        return False
    if re.fullmatch(_temp_pattern(r".+\.parquet", "[A-Za-z0-9_]+"), path.name):
        return True
    if path.suffix != ".parquet":
        return False
    if not set_aside:
        return True
    try:
        return FAILED_COLUMN in pq.read_schema(path).names
    except (pa.ArrowInvalid, OSError):
        return False


def listing(folder: Path) -> list[Path]:
    """The entries of ``folder``; none when it is absent or not a folder."""
    return list(folder.iterdir()) if folder.is_dir() and not folder.is_symlink() else []


def remove_if_empty(folder: Path) -> None:
    with contextlib.suppress(OSError):  # absent, or not empty
        folder.rmdir()
