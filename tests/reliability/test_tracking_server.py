"""The train pipeline against a real ``mlflow server`` on 127.0.0.1, and concurrency:
a dead server stops the run before any work; two runs at once both land, and exactly
one version is champion."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from support import KedroProject, MlflowServer

pytestmark = pytest.mark.slow

QUICK = "--params=training.epochs=30"
MODEL_NAME = "aeops-demo"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[MlflowServer]:
    running = MlflowServer(tmp_path / "server").start()
    yield running
    running.stop()


def test_an_unreachable_server_stops_the_run_before_any_work(
    project: KedroProject, server: MlflowServer
) -> None:
    server.stop()  # it was real; now nothing answers on its port
    result = project.run(QUICK, env={"MLFLOW_TRACKING_URI": server.uri})
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert f"the MLflow tracking server {server.uri} is unreachable" in output
    # Said as a refusal, not under some 180 lines of traceback.
    assert re.search(
        rf"(?m)^Error: the MLflow tracking server {server.uri} is unreachable", result.stderr
    )
    assert "Traceback (most recent call last)" not in output, output[-3000:]
    assert "Running node" not in output
    assert not (project.root / "data/06_models").exists()
    assert not (project.root / "data/08_reporting").exists()


def _train_twice_at_once(project: KedroProject, env: dict[str, str]) -> None:
    """Two ``kedro run``s of the same project started together (different seeds)."""
    runs = [
        subprocess.Popen(
            project.command(f"{QUICK},training.seed={seed}"),
            cwd=project.root,
            env=project.env(**env),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for seed in (0, 1)
    ]
    for run in runs:
        output, _ = run.communicate(timeout=600)
        if run.returncode != 0 and "Invalid HTTP request received" in output:
            # Seen once in about ten runs: the server's uvicorn answered a well-formed
            # GET /runs/get with 400 while two clients wrote at once. MLflow does not
            # retry a 400, so the run fails; that is the server's fault, not aeops's.
            pytest.xfail("mlflow server answered 400 'Invalid HTTP request received'")
        assert run.returncode == 0, output[-4000:]


def _assert_both_landed_with_one_champion(client: MlflowClient, serialised: bool) -> None:
    experiment = client.get_experiment_by_name("aeops")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    versions = {v.version: v for v in client.search_model_versions(f"name='{MODEL_NAME}'")}
    aliases = client.get_registered_model(MODEL_NAME).aliases
    state = {  # printed when an assertion fails, to tell a race from another fault
        "runs": [(run.info.run_id, run.info.status) for run in runs],
        "versions": {v: (m.run_id, m.tags) for v, m in versions.items()},
        "aliases": aliases,
    }
    assert [run.info.status for run in runs] == ["FINISHED", "FINISHED"], state
    assert sorted(int(v) for v in versions) == [1, 2], state
    assert {versions[v].run_id for v in versions} == {run.info.run_id for run in runs}, state
    assert str(aliases.get("champion")) in {"1", "2"}, state
    if not serialised:  # a server has no lock: a narrow race remains (see the README)
        return
    # One version decided first, against an empty registry; the other was compared
    # with it: the two did not both decide against an empty registry.
    tags = {v: client.get_model_version(MODEL_NAME, v).tags for v in ("1", "2")}
    first = next(v for v, t in tags.items() if t["compared_with_champion"] == "no_champion")
    (second,) = set(tags) - {first}
    assert tags[second]["champion_version_before"] == first, state
    assert tags[second]["compared_with_champion"] == "same_data", state
    alias_of_second = "champion" if str(aliases["champion"]) == second else "challenger"
    assert str(aliases[alias_of_second]) == second


def test_train_against_a_real_server_and_two_runs_at_once(
    project: KedroProject, server: MlflowServer
) -> None:
    _train_twice_at_once(project, {"MLFLOW_TRACKING_URI": server.uri})
    client = server.client()
    _assert_both_landed_with_one_champion(client, serialised=False)
    # The artifacts went through the server, into its artifact store.
    champion = client.get_model_version_by_alias(MODEL_NAME, "champion")
    paths = {a.path for a in client.list_artifacts(champion.run_id, "plots")}
    assert "plots/roc_curve.png" in paths
    assert any((server.folder / "artifacts").rglob("bundle.json"))
    assert not (project.root / "mlflow.db").exists()


def test_two_runs_at_once_against_the_same_sqlite_store(project: KedroProject) -> None:
    _train_twice_at_once(project, {})
    _assert_both_landed_with_one_champion(project.client(), serialised=True)


def test_a_server_that_stops_mid_run_leaves_the_model_to_register_later(
    project: KedroProject, server: MlflowServer
) -> None:
    env = {
        "MLFLOW_TRACKING_URI": server.uri,
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",  # the default retries for minutes
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "5",
    }
    returncode, output = project.run_until(
        QUICK,
        line="Running node: train_autoencoder_node",
        then=lambda process: server.stop(),  # the server goes away while the model trains
        env=env,
    )
    assert returncode != 0
    assert "stopped answering during the run" in output, output[-4000:]
    assert re.search(r"python -m aeops\.serving\.pending\s", output), output[-4000:]
    # The way to register it later is the last thing said, not buried by the errors
    # of ending the run against a gone server.
    assert output.rstrip().endswith("python -m aeops.serving.pending"), output[-2000:]
    (folder,) = (project.root / "data/06_models/unlogged").iterdir()
    assert (folder / "bundle" / "bundle.json").exists()

    server.start()  # the same store, back on the same port
    result = project.call(
        [sys.executable, "-m", "aeops.serving.pending"],  # every kept model
        env={"MLFLOW_TRACKING_URI": server.uri},
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    client = server.client()
    version = client.get_model_version_by_alias(MODEL_NAME, "champion")
    assert version.tags["threshold_method"] == "quantile"
    assert float(version.tags["metric.test_auroc"]) > 0.8
    tags = client.get_run(version.run_id).data.tags
    assert tags["registered_from"].endswith(folder.name)
    assert not folder.exists()
    # The train run its process could not close is closed now.
    train_run = client.get_run(tags["source_run_id"])
    assert train_run.info.status == "FAILED"
    assert folder.name.endswith(train_run.info.run_id[:8])
    # The kept model's id is its run's: a version the run left half-way has it too.
    assert version.tags["pending_registration_id"] == train_run.info.run_id
    assert version.tags["registration_complete"] == "true"
