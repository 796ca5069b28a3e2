"""Kedro datasets of aeops: the catalog's I/O, so nodes never open files."""

from aeops.io._artifacts import MlflowRunArtifactDataset
from aeops.io._batch_jobs import BatchJobOutputDataset, TableSourceDataset
from aeops.io._errors import DataFileError
from aeops.io._images import ImageDataset
from aeops.io._metrics import MlflowMetricHistoryBatchDataset
from aeops.io._tabular import TabularDataset

# Catalog entries name these as aeops.io.<Class>; say so wherever a class shows its
# module (kedro-viz, reprs), rather than the private module that defines it.
for _dataset in (
    BatchJobOutputDataset,
    ImageDataset,
    MlflowMetricHistoryBatchDataset,
    MlflowRunArtifactDataset,
    TableSourceDataset,
    TabularDataset,
):
    _dataset.__module__ = __name__

__all__ = [
    "BatchJobOutputDataset",
    "DataFileError",
    "ImageDataset",
    "MlflowMetricHistoryBatchDataset",
    "MlflowRunArtifactDataset",
    "TableSourceDataset",
    "TabularDataset",
]
