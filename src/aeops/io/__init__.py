"""Kedro datasets of aeops: the catalog's I/O, so nodes never open files."""

from aeops.io._batch_jobs import BatchJobOutputDataset, TableSourceDataset
from aeops.io._images import ImageDataset
from aeops.io._metrics import MlflowMetricHistoryBatchDataset
from aeops.io._tabular import TabularDataset

__all__ = [
    "BatchJobOutputDataset",
    "ImageDataset",
    "MlflowMetricHistoryBatchDataset",
    "TableSourceDataset",
    "TabularDataset",
]
