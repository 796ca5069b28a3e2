"""Batch embedding and scoring: a streaming local engine over Parquet and CSV."""

from aeops.bundle import LoadedBundle, provenance_metadata
from aeops.embedding._checks import BatchValidationError, CompiledSuite
from aeops.embedding._config import BatchJobConfig
from aeops.embedding._engine import BatchJobError, EmbedJob, JobReport
from aeops.embedding._output import SUCCESS_MARKER
from aeops.embedding._source import SourceError, TableSource
from aeops.embedding._summary import ErrorSummary

__all__ = [
    "SUCCESS_MARKER",
    "BatchJobConfig",
    "BatchJobError",
    "BatchValidationError",
    "CompiledSuite",
    "EmbedJob",
    "ErrorSummary",
    "JobReport",
    "LoadedBundle",
    "SourceError",
    "TableSource",
    "provenance_metadata",
]
