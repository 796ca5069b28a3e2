"""The project's Kedro hooks, called as Kedro calls them."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
from kedro.io import DataCatalog, DatasetError, MemoryDataset
from kedro.pipeline import Pipeline, node
from mlflow.tracking import MlflowClient

from aeops._errors import NoTracebackForRefusals, is_refusal
from aeops.data import InputSchemaError
from aeops.hooks import (
    BriefRefusals,
    CheckParametersFirst,
    CloseInterruptedRun,
    DescribeRun,
    _git_tags,
    _OneLinePerClosedRun,
    brief_refusals,
)
from aeops.io import DataFileError
from aeops.pipelines import sweep, train
from aeops.pipelines._params import ParameterError


@pytest.mark.usefixtures("tracking_uri")
def test_a_run_reopened_at_every_node_is_ended_killed_not_finished() -> None:
    hook = CloseInterruptedRun()
    run = mlflow.start_run()
    for _ in range(12):  # kedro-mlflow reopens its run at every node
        mlflow.start_run(run_id=run.info.run_id, nested=True)
    hook.before_pipeline_run({}, pipeline=None, catalog=None)
    try:
        hook._end_run_as_killed()  # what Ctrl-C's way out calls
    finally:
        hook.after_pipeline_run({}, pipeline=None, catalog=None)
    while mlflow.active_run() is not None:  # what MLflow's own exit handler does
        mlflow.end_run()
    assert MlflowClient().get_run(run.info.run_id).info.status == "KILLED"


@pytest.mark.parametrize(
    ("pipeline", "blocks", "message"),
    [
        ("sweep", {}, r"sweep\.objective=validation_auroc needs labels .* data\.label_column"),
        ("train", {"threshold": {"method": "f1"}}, r"threshold\.method='f1' needs labels"),
        # The default compare metric: every later version would have stayed challenger.
        ("train", {}, r"registry\.compare_metric=test_auroc needs labels on the test split"),
        ("train", {"registry": {"compare_metric": "test_f1"}}, r"compare_metric=test_f1 needs"),
    ],
)
def test_blocks_that_need_labels_are_refused_before_the_run_when_there_are_none(
    pipeline: str, blocks: dict[str, dict[str, object]], message: str
) -> None:
    nodes = {"sweep": sweep, "train": train}[pipeline].create_pipeline()
    catalog = DataCatalog()
    for name in nodes.inputs():
        if name.startswith("params:"):
            catalog[name] = blocks.get(name.removeprefix("params:"), {})
    catalog["params:data"] = {"label_column": None}
    with pytest.raises(ParameterError, match=message):
        CheckParametersFirst().before_pipeline_run({}, nodes, catalog)
    catalog["params:data"] = {"label_column": "label"}
    CheckParametersFirst().before_pipeline_run({}, nodes, catalog)  # with labels: fine


def test_versions_of_unlabelled_data_compare_by_their_error_lower_being_better() -> None:
    nodes = train.create_pipeline()
    catalog = DataCatalog()
    for name in nodes.inputs():
        if name.startswith("params:"):
            catalog[name] = {}
    catalog["params:data"] = {"label_column": None}
    catalog["params:registry"] = {"compare_metric": "test_error_mean", "greater_is_better": True}
    with pytest.raises(ParameterError, match=r"test_error_mean is better when lower"):
        CheckParametersFirst().before_pipeline_run({}, nodes, catalog)
    for metric, greater in (("test_error_mean", False), ("test_alert_rate", False)):
        catalog["params:registry"] = {"compare_metric": metric, "greater_is_better": greater}
        CheckParametersFirst().before_pipeline_run({}, nodes, catalog)


def test_a_sweep_comparing_scores_in_different_units_is_refused_before_the_run() -> None:
    nodes = sweep.create_pipeline()
    catalog = DataCatalog()
    for name in nodes.inputs():
        if name.startswith("params:"):
            catalog[name] = {}
    catalog["params:data"] = {"label_column": "label"}
    catalog["params:model"] = {"anomaly_score": "elbo"}
    catalog["params:sweep"] = {
        "objective": "validation_error",
        "space": {"model.kind": ["vanilla", "vae"]},
    }
    with pytest.raises(ParameterError, match=r"different units across .*'model\.kind'"):
        CheckParametersFirst().before_pipeline_run({}, nodes, catalog)
    catalog["params:model"] = {"anomaly_score": "reconstruction"}  # every trial: its error
    CheckParametersFirst().before_pipeline_run({}, nodes, catalog)


@pytest.mark.usefixtures("tracking_uri")
@pytest.mark.parametrize(
    ("launcher", "command"),
    [
        ("/venv/lib/kedro/__main__.py", "kedro run --params=a=1"),
        ("/project/src/aeops/__main__.py", "python -m aeops run --params=a=1"),
    ],
)
def test_a_run_started_by_python_m_is_tagged_with_its_command(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, launcher: str, command: str
) -> None:
    monkeypatch.setattr(sys, "argv", [launcher, "run", "--params=a=1"])
    hook = DescribeRun()
    hook._project_path = tmp_path  # not in git: no commit tags
    with mlflow.start_run(run_name="evaluate") as run:
        run_params = {
            "pipeline_names": ["evaluate"],
            "runner": "<kedro.runner.sequential_runner.SequentialRunner object at 0x7f3a9c>",
        }
        hook.before_pipeline_run(run_params, Pipeline([]), DataCatalog())
    tags = MlflowClient().get_run(run.info.run_id).data.tags
    assert tags["kedro_command"] == command
    assert "mlflow.source.git.commit" not in tags
    assert tags["runner"] == "SequentialRunner"  # not the object's repr


def test_a_project_untracked_in_an_outer_repository_gets_no_commit(tmp_path: Path) -> None:
    # It was tagged with the outer repository's commit, and "clean".
    git = ["git", "-c", "user.name=a", "-c", "user.email=a@example.com"]
    subprocess.run([*git, "init", "-q"], cwd=tmp_path, check=True)
    (tmp_path / "README").write_text("outer")
    subprocess.run([*git, "add", "README"], cwd=tmp_path, check=True)
    subprocess.run([*git, "commit", "-qm", "outer"], cwd=tmp_path, check=True)
    project = tmp_path / "project"
    (project / "src").mkdir(parents=True)
    (project / "pyproject.toml").write_text("")
    assert _git_tags(project) == {}
    subprocess.run([*git, "add", "project/pyproject.toml"], cwd=tmp_path, check=True)
    subprocess.run([*git, "commit", "-qm", "project"], cwd=tmp_path, check=True)
    assert _git_tags(project)["git_dirty"] == "false"
    (project / "src" / "new.py").write_text("")  # new code, not yet added
    assert _git_tags(project)["git_dirty"] == "true"


def _raised(error: BaseException) -> BaseException:
    try:
        raise error
    except BaseException as caught:
        return caught


def test_aeops_errors_are_refusals_and_other_errors_are_not() -> None:
    assert is_refusal(ParameterError("training.lr must be > 0"))
    assert is_refusal(InputSchemaError("no column 'x'"))
    # Kedro's catalog re-raises a dataset's error as its own.
    try:
        try:
            raise DataFileError("data.csv is empty")
        except DatasetError as error:
            raise DatasetError(f"raw_data: {error}") from error
    except DatasetError as wrapped:
        assert is_refusal(wrapped)
    assert not is_refusal(ValueError("too many values to unpack"))
    assert not is_refusal(DatasetError("raw_data: a library's own failure"))
    assert not is_refusal(KeyboardInterrupt())


def test_a_refusal_prints_its_message_and_anything_else_goes_to_the_previous_hook(
    capsys: pytest.CaptureFixture[str],
) -> None:
    handed_on: list[BaseException] = []
    hook = brief_refusals(lambda kind, error, traceback: handed_on.append(error))
    refusal = _raised(ParameterError("invalid parameters in 'training'"))
    hook(type(refusal), refusal, refusal.__traceback__)
    bug = _raised(KeyError("kind"))
    hook(type(bug), bug, bug.__traceback__)
    assert handed_on == [bug]
    printed = capsys.readouterr()
    assert printed.out == ""
    assert printed.err.splitlines() == [
        "Error: invalid parameters in 'training'",
        "(AEOPS_TRACEBACK=1 shows where it was raised.)",
    ]


def test_kedro_mlflows_repeated_closing_lines_are_said_once_per_run() -> None:
    keep = _OneLinePerClosedRun()

    def record(message: str) -> logging.LogRecord:
        return logging.LogRecord("kedro_mlflow", logging.INFO, __file__, 1, message, None, None)

    closing = "The run 'abc' was closed because of an error in the pipeline."
    assert keep.filter(record(closing))
    assert not keep.filter(record(closing))
    assert keep.filter(record(closing.replace("abc", "def")))
    assert keep.filter(record("Mlflow run 'train' has started"))
    assert keep.filter(record("Mlflow run 'train' has started"))


@pytest.mark.parametrize(
    ("value", "brief"),
    [(None, True), ("0", True), ("false", True), ("No", True), ("1", False), ("yes", False)],
)
def test_aeops_traceback_turns_the_brief_errors_off(
    monkeypatch: pytest.MonkeyPatch, value: str | None, brief: bool
) -> None:
    def previous(kind: type[BaseException], error: BaseException, traceback: object) -> None:
        pass

    monkeypatch.setattr(sys, "excepthook", previous)
    if value is None:
        monkeypatch.delenv("AEOPS_TRACEBACK", raising=False)
    else:
        monkeypatch.setenv("AEOPS_TRACEBACK", value)
    BriefRefusals().after_context_created(context=None)
    assert getattr(sys.excepthook, "aeops_brief", False) is brief
    BriefRefusals().after_context_created(context=None)  # a second session: no second wrap
    assert (sys.excepthook is previous) is not brief


@pytest.mark.usefixtures("tracking_uri")
@pytest.mark.parametrize("named_in_config", [False, True])
def test_a_batch_jobs_run_is_named_after_the_model_it_ran(named_in_config: bool) -> None:
    hook = DescribeRun()
    hook._named_in_config = named_in_config  # tracking.run.name: score in mlflow.yml
    with mlflow.start_run(run_name="score") as run:
        hook.before_pipeline_run(
            {"pipeline_names": ["score"]}, pipeline=Pipeline([]), catalog=DataCatalog()
        )
        mlflow.set_tags({"model_name": "aeops-demo", "model_version": "3"})  # the job's
        hook.after_pipeline_run({}, pipeline=None, catalog=None)
    name = MlflowClient().get_run(run.info.run_id).info.run_name
    assert name == ("score" if named_in_config else "score-aeops-demo-v3")


@pytest.mark.usefixtures("tracking_uri")
def test_a_failed_run_is_named_after_the_model_it_loaded() -> None:
    hook = DescribeRun()
    with mlflow.start_run(run_name="evaluate") as loaded, pytest.raises(RuntimeError):
        hook.before_pipeline_run(
            {"pipeline_names": ["evaluate"]}, pipeline=Pipeline([]), catalog=DataCatalog()
        )
        mlflow.set_tags({"evaluated_model_name": "aeops-demo", "evaluated_model_version": "2"})
        failure = RuntimeError("the labels are -1 and 1")
        hook.on_pipeline_error(failure, {}, pipeline=None, catalog=None)
        raise failure
    with mlflow.start_run(run_name="evaluate") as not_loaded:  # failed before loading
        hook.before_pipeline_run(
            {"pipeline_names": ["evaluate"]}, pipeline=Pipeline([]), catalog=DataCatalog()
        )
        hook.on_pipeline_error(RuntimeError("no such model"), {}, pipeline=None, catalog=None)
    names = [MlflowClient().get_run(r.info.run_id).info.run_name for r in (loaded, not_loaded)]
    assert names == ["evaluate-aeops-demo-v2", "evaluate"]


@pytest.mark.usefixtures("tracking_uri")
def test_a_plain_kedro_run_is_named_as_train_is() -> None:
    # kedro-mlflow names the run of `kedro run` without --pipeline after __default__.
    catalog = DataCatalog(datasets={"params:model": MemoryDataset({"kind": "vae"})})
    pipeline = Pipeline([node(lambda model: None, "params:model", None)])
    with mlflow.start_run(run_name="__default__") as run:
        DescribeRun().before_pipeline_run({"pipeline_name": None}, pipeline, catalog)
    assert MlflowClient().get_run(run.info.run_id).info.run_name == "train-vae"


def test_a_log_record_about_a_refusal_keeps_its_message_and_drops_its_traceback() -> None:
    def record(error: BaseException) -> logging.LogRecord:
        caught = _raised(error)
        exc_info = (type(caught), caught, caught.__traceback__)
        return logging.LogRecord(
            "optuna", logging.WARNING, __file__, 1, "Trial 0 failed", None, exc_info
        )

    refused = record(ParameterError("model.latent_dim=200 must be smaller"))
    assert NoTracebackForRefusals().filter(refused) and refused.exc_info is None
    bug = record(KeyError("kind"))
    assert NoTracebackForRefusals().filter(bug) and bug.exc_info is not None
