"""What a run records about its inputs, including runs that start at the same moment."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from aeops.serving._runs import log_dataset_input, nested_run

WRITERS = 6

# One process: open a run, say it is ready, wait for the go file, log the same dataset.
WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import mlflow, pandas as pd
    from aeops.serving._runs import log_dataset_input

    folder, uri, experiment, index = Path(sys.argv[1]), *sys.argv[2:5]
    mlflow.set_tracking_uri(uri)
    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [4.0, 5.0, 6.0]})
    with mlflow.start_run(experiment_id=experiment, run_name=f"writer-{index}"):
        (folder / f"ready-{index}").touch()
        while not (folder / "go").exists():
            time.sleep(0.001)
        log_dataset_input(frame, "raw_data", "training")
    """
)


def test_log_dataset_input_records_source_schema_and_digest(tracking_uri: str) -> None:
    frame = pd.DataFrame({"a": [1.0, 2.0], "label": [0, 1]})
    frame.attrs["source"] = "data/01_raw/table.csv"
    with mlflow.start_run() as run:
        digest = log_dataset_input(frame, "raw_data", "training", label_column="label")
    stored = MlflowClient().get_run(run.info.run_id)
    (dataset_input,) = stored.inputs.dataset_inputs
    assert dataset_input.dataset.digest == digest
    assert "table.csv" in dataset_input.dataset.source
    assert dataset_input.tags[0].value == "training"
    assert stored.data.tags["training_data_digest"] == digest


def test_a_datasets_schema_is_read_from_its_first_rows(
    tracking_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # MLflow's own inference read every cell in Python: 25 s for 1M rows x 50 columns.
    import mlflow.data.pandas_dataset

    from aeops.serving import _runs

    read: list[int] = []

    def counting(frame: pd.DataFrame) -> object:
        read.append(len(frame))
        return infer(frame)

    infer = _runs._infer_schema
    monkeypatch.setattr(_runs, "_infer_schema", counting)
    monkeypatch.setattr(mlflow.data.pandas_dataset, "_infer_schema", counting)
    frame = pd.DataFrame({"a": np.arange(5000.0), "label": np.zeros(5000, dtype=int)})
    frame.loc[3000, "a"] = np.nan  # past the rows read: "a" is optional all the same
    with mlflow.start_run() as run:
        log_dataset_input(frame, "raw_data", "training", label_column="label")
    assert read and max(read) <= 100
    (dataset_input,) = MlflowClient().get_run(run.info.run_id).inputs.dataset_inputs
    schema = json.loads(dataset_input.dataset.schema)["mlflow_colspec"]
    assert [(c["name"], c["type"], c["required"]) for c in schema] == [
        ("a", "double", False),
        ("label", "long", True),
    ]


def test_log_dataset_input_needs_an_active_run(tracking_uri: str) -> None:
    with pytest.raises(RuntimeError, match="active MLflow run"):
        log_dataset_input(pd.DataFrame({"a": [1.0]}), "raw_data", "training")


def test_runs_logging_the_same_dataset_at_once_all_succeed(
    tracking_uri: str, tmp_path: Path
) -> None:
    """MLflow looks the dataset up, then inserts it: two runs at once can both miss it,
    and the second insert fails on the unique key. Every writer must still land."""
    # Created once here, so only the dataset races (and no active experiment leaks).
    experiment = MlflowClient().create_experiment("race")
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(tmp_path), tracking_uri, experiment, str(index)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for index in range(WRITERS)
    ]
    deadline = time.monotonic() + 120
    while len(list(tmp_path.glob("ready-*"))) < WRITERS:
        failed = [w for w in writers if w.poll() not in (None, 0)]
        assert not failed, failed[0].communicate()[0]
        assert time.monotonic() < deadline, "writers did not start"
        time.sleep(0.01)
    (tmp_path / "go").touch()
    outputs = [writer.communicate(timeout=120)[0] for writer in writers]
    for writer, output in zip(writers, outputs, strict=True):
        assert writer.returncode == 0, output[-3000:]

    runs = MlflowClient().search_runs([experiment])
    assert len(runs) == WRITERS
    digests = {run.inputs.dataset_inputs[0].dataset.digest for run in runs}
    assert len(digests) == 1


@pytest.mark.parametrize(
    ("error", "status"),
    [(None, "FINISHED"), (RuntimeError("boom"), "FAILED"), (KeyboardInterrupt(), "KILLED")],
)
def test_a_nested_run_ends_as_its_block_did(
    tracking_uri: str, error: BaseException | None, status: str
) -> None:
    # Ctrl-C during a sweep trial left the trial FAILED beside a KILLED sweep.
    with mlflow.start_run() as parent:
        try:
            with nested_run("trial-0", {"model.kind": "vae"}) as log:
                log({"validation_auroc": 0.9})
                child = mlflow.active_run()
                if error is not None:
                    raise error
        except (RuntimeError, KeyboardInterrupt):
            pass
        assert mlflow.active_run().info.run_id == parent.info.run_id  # type: ignore[union-attr]
    assert child is not None
    finished = MlflowClient().get_run(child.info.run_id)
    assert finished.info.status == status
    assert finished.data.params == {"model.kind": "vae"}
