"""``MlflowRunArtifactDataset``: a run logs exactly what its own save wrote.

Two ``kedro run``s of one project share the catalog's paths. The case that broke
kedro-mlflow's wrapper is replayed deterministically here: while one run is between
saving and logging, another run saves to the same path.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import mlflow
import pytest
from kedro.io import AbstractDataset, DatasetError
from kedro_datasets.text import TextDataset
from mlflow.tracking import MlflowClient

from aeops.io import MlflowRunArtifactDataset


class InterruptedTextDataset(TextDataset):
    """A text file whose save runs ``between`` after writing, as a rival process would."""

    between: ClassVar[list[Callable[[], None]]] = []

    def save(self, data: str) -> None:
        super().save(data)
        while self.between:
            self.between.pop()()


class TextFolderDataset(AbstractDataset[dict[str, str], dict[str, str]]):
    """A folder of text files, written one file at a time like MatplotlibDataset."""

    def __init__(self, filepath: str) -> None:
        self._folder = Path(filepath)

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._folder)}

    def save(self, data: dict[str, str]) -> None:
        self._folder.mkdir(parents=True, exist_ok=True)
        for name, text in data.items():
            (self._folder / name).write_text(text)

    def load(self) -> dict[str, str]:
        return {p.name: p.read_text() for p in self._folder.iterdir()}


def _logged_text(run_id: str, path: str) -> str:
    local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=path)
    return Path(local).read_text()


def _text_dataset(path: Path, kind: type = TextDataset) -> MlflowRunArtifactDataset:
    return MlflowRunArtifactDataset(
        dataset={"type": kind, "filepath": str(path)}, artifact_path="reports"
    )


@pytest.mark.usefixtures("tracking_uri")
def test_each_run_logs_its_own_save_when_another_run_writes_the_same_path(
    tmp_path: Path,
) -> None:
    target = tmp_path / "report.txt"

    def rival_run() -> None:
        with mlflow.start_run(nested=True) as rival:
            _text_dataset(target).save("written by run B")
        rivals.append(rival.info.run_id)

    rivals: list[str] = []
    with mlflow.start_run() as first:
        InterruptedTextDataset.between.append(rival_run)
        _text_dataset(target, InterruptedTextDataset).save("written by run A")

    (rival_id,) = rivals
    # kedro-mlflow's wrapper logs the shared path after the rival rewrote it: run A
    # would hold B's text.
    assert _logged_text(first.info.run_id, "reports/report.txt") == "written by run A"
    assert _logged_text(rival_id, "reports/report.txt") == "written by run B"
    assert target.read_text() == "written by run A"  # the last one to finish
    assert sorted(p.name for p in tmp_path.iterdir() if "report" in p.name) == ["report.txt"]


def _figure() -> Any:
    figure, axes = plt.subplots()
    axes.plot([0, 1], [1, 0])
    return figure


@pytest.mark.usefixtures("tracking_uri")
def test_a_folder_of_figures_is_logged_and_replaces_the_last_one_whole(tmp_path: Path) -> None:
    folder = tmp_path / "plots"
    dataset = MlflowRunArtifactDataset(
        dataset={"type": "matplotlib.MatplotlibDataset", "filepath": str(folder)}
    )
    with mlflow.start_run():
        dataset.save({"old.png": _figure(), "roc.png": _figure()})
    with mlflow.start_run() as second:
        dataset.save({"roc.png": _figure(), "pr.png": _figure()})

    logged = {a.path for a in MlflowClient().list_artifacts(second.info.run_id, "plots")}
    assert logged == {"plots/roc.png", "plots/pr.png"}
    assert sorted(p.name for p in folder.iterdir()) == ["pr.png", "roc.png"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".plots")]  # no staging


@pytest.mark.usefixtures("tracking_uri")
def test_a_failed_save_keeps_the_last_file_and_logs_nothing(tmp_path: Path) -> None:
    target = tmp_path / "report.txt"
    target.write_text("the last good report")

    def fail() -> None:
        raise RuntimeError("disk full")

    with mlflow.start_run() as run:
        InterruptedTextDataset.between.append(fail)
        with pytest.raises(DatasetError, match="disk full"):
            _text_dataset(target, InterruptedTextDataset).save("half a report")

    assert target.read_text() == "the last good report"
    assert MlflowClient().list_artifacts(run.info.run_id) == []
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".report.txt")]


@pytest.mark.usefixtures("tracking_uri")
def test_with_logging_switched_off_it_only_writes_the_file(tmp_path: Path) -> None:
    dataset = _text_dataset(tmp_path / "report.txt")
    dataset._logging_activated = False  # what kedro-mlflow's hook does for untracked runs
    dataset.save("local only")  # no active run, and none is started
    assert mlflow.active_run() is None
    assert dataset.load() == "local only"


def test_a_dataset_without_a_local_filepath_is_refused() -> None:
    with pytest.raises(DatasetError, match=r"local 'filepath'; got 's3://bucket/r\.txt'"):
        MlflowRunArtifactDataset(
            dataset={"type": "text.TextDataset", "filepath": "s3://bucket/r.txt"}
        )


def test_folders_saved_at_once_from_many_writers_leave_one_whole_folder(tmp_path: Path) -> None:
    folder = tmp_path / "reports"

    def writer(name: str) -> None:
        dataset = MlflowRunArtifactDataset(
            dataset={"type": TextFolderDataset, "filepath": str(folder)}
        )
        dataset._logging_activated = False
        for round_ in range(15):
            dataset.save({f"part-{i}": f"{name}:{round_}" for i in range(3)})

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(writer, "abcd"))

    texts = TextFolderDataset(str(folder)).load()
    assert sorted(texts) == ["part-0", "part-1", "part-2"]
    assert len(set(texts.values())) == 1  # all three from one save, not a mix
    assert [p.name for p in tmp_path.iterdir()] == ["reports"]  # no staging left over


def test_a_folder_swap_that_fails_puts_the_last_save_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "reports"
    dataset = MlflowRunArtifactDataset(dataset={"type": TextFolderDataset, "filepath": str(folder)})
    dataset._logging_activated = False
    dataset.save({"a.txt": "the last good save"})

    rename = Path.rename

    def staged_rename_fails(self: Path, target: Any) -> Path:
        if self.parent.name.startswith(".reports."):  # the new save, out of its staging
            raise PermissionError(errno.EACCES, "Permission denied", str(target))
        return rename(self, target)

    monkeypatch.setattr(Path, "rename", staged_rename_fails)
    with pytest.raises(DatasetError, match="Permission denied"):
        dataset.save({"b.txt": "never lands"})
    monkeypatch.undo()

    assert TextFolderDataset(str(folder)).load() == {"a.txt": "the last good save"}
    assert [p.name for p in tmp_path.iterdir()] == ["reports"]


def test_a_versioned_dataset_inside_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="versioned dataset inside it would lose"):
        MlflowRunArtifactDataset(
            dataset={
                "type": "text.TextDataset",
                "filepath": str(tmp_path / "r.txt"),
                "versioned": True,
            }
        )
