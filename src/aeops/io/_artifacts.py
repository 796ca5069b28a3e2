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
import logging
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

import mlflow
from kedro.io import AbstractDataset, DatasetError
from kedro.io.core import parse_dataset_definition

logger = logging.getLogger(__name__)


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
    ``filepath`` meanwhile, and ``filepath`` holds one whole save: a save that fails
    while writing leaves the previous one there and logs nothing. Loading reads
    ``filepath``. (A folder is absent for the instant between the two renames of its
    swap; a process killed there leaves the last save in a hidden ``.<name>.old-*``.)
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
        if self._dataset_args.get("version") is not None:  # `versioned: true`, parsed
            raise DatasetError(
                "MlflowRunArtifactDataset replaces its 'filepath' whole on each save; "
                "a versioned dataset inside it would lose its versions (MLflow keeps "
                "every run's copy)"
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
    so the last save is renamed aside, the new one renamed in, and the old one deleted.
    If the second rename fails, the last save is put back. When another process's
    folder lands in between, the swap is tried again.
    """
    if not staged.is_dir():
        staged.replace(target)
        return
    for _ in range(100):
        aside: Path | None = None
        # Nothing may be there, or another process may have moved it aside first.
        with contextlib.suppress(FileNotFoundError):
            aside = target.rename(target.with_name(f".{target.name}.old-{uuid.uuid4().hex}"))
        try:
            staged.rename(target)
        except BaseException as error:
            if aside is not None:
                _put_back(aside, target)
            if isinstance(error, OSError) and error.errno in (errno.ENOTEMPTY, errno.EEXIST):
                continue  # another process's folder landed first: swap again
            raise
        if aside is not None:
            shutil.rmtree(aside, ignore_errors=True)
        return
    raise DatasetError(f"could not move the new {target} into place: it kept being replaced")


def _put_back(aside: Path, target: Path) -> None:
    """Return the last save to ``target``, unless another save has taken its place;
    if neither works, the last save stays in ``aside`` and the log says so."""
    try:
        aside.rename(target)
    except OSError as error:
        if error.errno in (errno.ENOTEMPTY, errno.EEXIST):
            shutil.rmtree(aside, ignore_errors=True)
        else:
            logger.warning(
                "Could not put %s back (%s); the last save is in %s", target, error, aside
            )
