"""Kedro datasets of aeops: the catalog's I/O, so nodes never open files."""

from aeops.io._images import ImageDataset
from aeops.io._metrics import MlflowMetricHistoryBatchDataset
from aeops.io._tabular import TabularDataset

__all__ = ["ImageDataset", "MlflowMetricHistoryBatchDataset", "TabularDataset"]
