"""What counts as a refusal: an error aeops raises on purpose, with a complete message."""

from __future__ import annotations

import logging


def is_refusal(error: BaseException) -> bool:
    """Whether ``error`` is one of aeops's own exception types (a deliberate refusal
    with a complete message), or raised from one (Kedro's catalog re-raises a
    dataset's error as its own, with the dataset's name before the message)."""
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, Exception) and type(cause).__module__.split(".")[0] == "aeops":
            return True
        cause = cause.__cause__
    return False


class NoTracebackForRefusals(logging.Filter):
    """Drops the traceback from a log record about a refusal (Optuna logs a failed
    trial's with it); the message, which names the error, stays."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None and is_refusal(record.exc_info[1]):
            record.exc_info = None
            record.exc_text = None
        return True
