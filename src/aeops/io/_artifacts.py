"""Files logged to the active MLflow run from a private copy, then moved into place.

kedro-mlflow's ``MlflowArtifactDataset`` saves into the catalog's path and then logs
that path. Two ``kedro run``s of one project share the path, so between one run's save
and its upload the other can rewrite it: a run then logs the other's figures, or a
folder caught half rewritten. Here each save goes to a staging folder of its own, that
copy is what the run logs, and only then does it replace the local path, in one rename.
"""

from __future__ import annotations

import contextlib
import errno
import tempfile
import uuid
from pathlib import Path
from typing import Any

import mlflow
from kedro.io import AbstractDataset, DatasetError
from kedro.io.core import parse_dataset_definition


class MlflowRunArtifactDataset(AbstractDataset[Any, Any]):
    """Wraps a file or folder dataset; each save is logged to the active run.

    The catalog entry reads like kedro-mlflow's::

        evaluation_plots:
          type: aeops.io.MlflowRunArtifactDataset
          artifact_path: plots          # where it goes in the run; the root if left out
          dataset:
            type: matplotlib.MatplotlibDataset
            filepath: data/08_reporting/plots

    The run gets exactly what this save wrote, whatever another process does to
    ``filepath`` meanwhile, and ``filepath`` always holds one whole save: a failed
    save leaves the previous one there and logs nothing. Loading reads ``filepath``.
    """

    def __init__(
        self,
        *,
        dataset: dict[str, Any],
        artifact_path: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        """Create the dataset.

        Args:
            dataset: the wrapped dataset's catalog entry; it must have a ``filepath``.
            artifact_path: the folder of the run's artifacts it is logged under.
            metadata: kedro's free-form metadata, kept as is.

        Raises:
            DatasetError: if the wrapped entry has no local ``filepath``.
        """
        self._dataset_class, self._dataset_args = parse_dataset_definition(config=dataset)
        filepath = self._dataset_args.get("filepath")
        if not isinstance(filepath, str) or "://" in filepath:
            raise DatasetError(
                f"MlflowRunArtifactDataset wraps a dataset with a local 'filepath'; "
                f"got {filepath!r}"
            )
        self._filepath = Path(filepath)
        self._artifact_path = artifact_path
        self.metadata = metadata
        # kedro-mlflow's hook switches this off for pipelines it does not track; it
        # finds the datasets to switch by a class name starting with "Mlflow".
        self._logging_activated = True

    def _describe(self) -> dict[str, Any]:
        return {
            "dataset": self._dataset_class.__name__,
            "filepath": str(self._filepath),
            "artifact_path": self._artifact_path,
        }

    def _wrapped(self, filepath: Path) -> AbstractDataset[Any, Any]:
        return self._dataset_class(**{**self._dataset_args, "filepath": str(filepath)})

    def save(self, data: Any) -> None:
        """Save into a staging folder, log that copy, then move it to ``filepath``."""
        target = self._filepath
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{target.name}.") as stage:
            staged = Path(stage) / target.name
            self._wrapped(staged).save(data)
            if self._logging_activated:
                if mlflow.active_run() is None:
                    raise DatasetError(f"no active MLflow run to log {target} to")
                mlflow.log_artifact(str(staged), self._artifact_path)
            _move_into_place(staged, target)

    def load(self) -> Any:
        """Read what the last save left at ``filepath``."""
        return self._wrapped(self._filepath).load()

    def _exists(self) -> bool:
        return self._filepath.exists()


def _move_into_place(staged: Path, target: Path) -> None:
    """Rename ``staged`` to ``target``; a folder there is swapped out first.

    A file is replaced in one rename. A folder cannot be renamed over a non-empty one,
    so whatever is at ``target`` is renamed aside into ``staged``'s parent (deleted
    with it), and the swap is tried again if another process's folder lands between.
    """
    if not staged.is_dir():
        staged.replace(target)
        return
    for _ in range(100):
        with contextlib.suppress(FileNotFoundError):  # absent, or moved aside by another
            target.rename(staged.parent / f"replaced-{uuid.uuid4().hex}")
        try:
            staged.rename(target)
            return
        except OSError as error:
            if error.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
    raise DatasetError(f"could not move the new {target} into place: it kept being replaced")
