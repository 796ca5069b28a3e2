"""Metric series logged to the active MLflow run in one batch."""

from __future__ import annotations

import math
import time
from typing import Any

import mlflow
from kedro.io import AbstractDataset, DatasetError
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

# MLflow's log_batch accepts at most 1000 metrics per call.
_BATCH = 1000


class MlflowMetricHistoryBatchDataset(AbstractDataset[dict[str, Any], dict[str, Any]]):
    """Logs ``{name: value}`` or ``{name: [v_step0, v_step1, ...]}`` to the active run.

    A scalar is logged at step ``first_step``; a list becomes the metric's history, one
    step per item from ``first_step`` on (an epoch, say: set 1 where epochs count from
    1, so a step is the epoch's number), and the MLflow UI draws it as a curve. Unlike
    kedro-mlflow's metric datasets, the whole dict goes in batched ``log_batch``
    calls rather than one request per point.

    The list under ``timestamps`` (default ``epoch_end_time``, what
    :meth:`aeops.training.FitResult.metric_history` gives) is not a metric but the time
    of each step's points, in seconds since the epoch, so the UI's wall-time axis shows
    when the run got there. Without it, or when any of its entries is NaN (epochs
    resumed from an older checkpoint), every point gets the time of the save, so a
    curve's times never run backwards. Epochs resumed from a checkpoint keep the time
    they first ended.
    """

    def __init__(
        self,
        *,
        prefix: str | None = None,
        first_step: int = 0,
        timestamps: str = "epoch_end_time",
        metadata: dict[str, Any] | None = None,
    ):
        """Create the dataset; ``prefix`` is prepended as ``prefix.name``."""
        self._prefix = prefix
        self._first_step = first_step
        self._timestamps = timestamps
        self.metadata = metadata

    def _describe(self) -> dict[str, Any]:
        return {
            "prefix": self._prefix,
            "first_step": self._first_step,
            "timestamps": self._timestamps,
        }

    def _key(self, name: str) -> str:
        return f"{self._prefix}.{name}" if self._prefix else name

    def save(self, data: dict[str, Any]) -> None:
        """Log every metric of ``data`` to the active run."""
        run = mlflow.active_run()
        if run is None:
            raise DatasetError("no active MLflow run to log metrics to")
        now = int(time.time() * 1000)
        data = dict(data)
        stamps = [float(t) for t in data.pop(self._timestamps, None) or []]
        times = [int(t * 1000) for t in stamps] if all(map(math.isfinite, stamps)) else []
        metrics: list[Metric] = []
        for name, value in data.items():
            values = value if isinstance(value, list | tuple) else [value]
            at = times if len(times) == len(values) else [now] * len(values)
            for step, (item, when) in enumerate(zip(values, at, strict=True), self._first_step):
                try:
                    number = float(item)
                except (TypeError, ValueError) as error:
                    raise DatasetError(
                        f"metric {name!r} is {item!r} at step {step}, not a number"
                    ) from error
                if not math.isfinite(number):
                    raise DatasetError(f"metric {name!r} is {number} at step {step}")
                metrics.append(Metric(self._key(name), number, when, step))
        client = MlflowClient()
        for start in range(0, len(metrics), _BATCH):
            client.log_batch(run.info.run_id, metrics=metrics[start : start + _BATCH])

    def load(self) -> dict[str, Any]:
        """Read back the latest value of every metric of the active run."""
        run = mlflow.active_run()
        if run is None:
            raise DatasetError("no active MLflow run to read metrics from")
        return dict(MlflowClient().get_run(run.info.run_id).data.metrics)
