"""The catalog datasets' own error."""

from __future__ import annotations

from kedro.io import DatasetError


class DataFileError(DatasetError):
    """A data file that cannot be read, or written, as its catalog entry says: the
    message names the file and what is wrong."""
