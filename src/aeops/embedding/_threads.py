"""The engine's threads: a stage run ahead in the background, and the model's CPU share."""

from __future__ import annotations

import contextlib
import os
import queue
import threading
from collections.abc import Iterator
from typing import Any

import torch

_DONE = object()


def background(items: Iterator[Any], depth: int = 2) -> Iterator[Any]:
    """Iterate ``items`` in a thread, ``depth`` ahead; exceptions surface to the caller.

    When the caller stops early (an error in the model or the writer), the thread is
    told to stop and the queue drained, so it never blocks on a full queue holding the
    input file open.
    """
    channel: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                if stop.is_set():
                    break
                channel.put(item)
        except BaseException as error:  # handed to the consumer, re-raised there
            channel.put(error)
            return
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()
        channel.put(_DONE)

    thread = threading.Thread(target=produce, daemon=True, name="aeops-reader")
    thread.start()
    try:
        while True:
            item = channel.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            with contextlib.suppress(queue.Empty):
                channel.get(timeout=0.05)


_THREADS_LOCK = threading.Lock()
_THREADS_STATE = {"jobs": 0, "previous": 0}


def usable_cpus() -> int:
    """CPUs this process may run on (affinity and cpusets), not the host's count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - platforms without affinity
        return os.cpu_count() or 1


@contextlib.contextmanager
def cpu_share_for_the_model(model: torch.nn.Module) -> Iterator[None]:
    """On the CPU, leave the reader and writer threads their share of the cores.

    Torch's intra-op pool otherwise takes every core and spins for work while the
    reader decodes and the writer encodes Parquet: on two cores that halved the job's
    rows/s. While jobs run, the model gets half the usable CPUs (at least one, never
    more than the setting it had), and the setting comes back when the last job in
    the process ends, also on error. A model on a GPU is left alone.
    """
    if next(model.parameters()).device.type != "cpu":
        yield
        return
    with _THREADS_LOCK:
        if _THREADS_STATE["jobs"] == 0:
            _THREADS_STATE["previous"] = torch.get_num_threads()
            share = max(1, usable_cpus() // 2)
            torch.set_num_threads(min(_THREADS_STATE["previous"], share))
        _THREADS_STATE["jobs"] += 1
    try:
        yield
    finally:
        with _THREADS_LOCK:
            _THREADS_STATE["jobs"] -= 1
            if _THREADS_STATE["jobs"] == 0:
                torch.set_num_threads(_THREADS_STATE["previous"])
