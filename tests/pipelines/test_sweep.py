"""`kedro run --pipeline=sweep`: trials as nested runs, the best one registered."""

from __future__ import annotations

import mlflow
import pandas as pd
import pytest

from aeops.serving import load_registered_bundle
from support import KedroProject, output_of

pytestmark = pytest.mark.slow


def test_sweep_logs_each_trial_as_a_nested_run_and_registers_the_best(
    project: KedroProject, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = project.run("--params=sweep.n_trials=4,training.epochs=25", pipeline="sweep")
    assert result.returncode == 0, output_of(result)

    runs = project.runs()
    (parent,) = [run for run in runs if "mlflow.parentRunId" not in run.data.tags]
    trials = [run for run in runs if run.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(trials) == 4
    assert {run.info.status for run in [parent, *trials]} == {"FINISHED"}
    assert sorted(run.data.tags["sweep_trial"] for run in trials) == ["0", "1", "2", "3"]
    for run in trials:
        assert {"model.kind", "model.latent_dim", "training.lr"} <= set(run.data.params)
        assert 0.0 <= run.data.metrics["validation_auroc"] <= 1.0

    # The parent holds the best trial's parameters and value, and went on like `train`.
    best = max(trials, key=lambda run: run.data.metrics["validation_auroc"])
    for key in ("model.kind", "model.latent_dim", "training.lr"):
        assert parent.data.params[f"sweep.best.{key}"] == best.data.params[key]
    # Its whole configuration, not only the swept keys: the parent's model.* are the base.
    for key in ("model.hidden_dims", "model.sparsity.weight", "training.epochs"):
        assert parent.data.params[f"sweep.best.{key}"] == best.data.params[key]
    # As it trained: in its own checkpoint folder, without a progress bar.
    trial = best.data.tags["sweep_trial"]
    assert parent.data.params["sweep.best.training.checkpoint_dir"].endswith(f"/trial-{trial}")
    assert parent.data.params["sweep.best.training.progress"] == "False"
    metrics = parent.data.metrics
    assert metrics["sweep_best_validation_auroc"] == best.data.metrics["validation_auroc"]
    assert metrics["sweep_trials_finished"] == 4
    assert metrics["epochs_trained"] == best.data.metrics["epochs_trained"]
    assert 0.5 < metrics["test_auroc"] <= 1.0

    client = project.client()
    version = client.get_model_version("aeops-demo", "1")
    assert version.run_id == parent.info.run_id
    assert version.tags["model_kind"] == best.data.params["model.kind"]
    # The registered model is the best trial's, not another trial's.
    assert (
        len({(r.data.params["model.kind"], r.data.params["model.latent_dim"]) for r in trials}) > 1
    )
    monkeypatch.chdir(project.root)  # where the run's relative artifact root points
    uri = f"sqlite:///{project.root / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)  # and the registry: an earlier test may have set another
    mlflow.set_registry_uri(uri)
    try:
        registered = load_registered_bundle("models:/aeops-demo/1").predictor.model.config
    finally:
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)
    assert registered.kind == best.data.params["model.kind"]
    assert str(registered.latent_dim) == best.data.params["model.latent_dim"]
    assert client.get_registered_model("aeops-demo").aliases == {"champion": 1}

    table = pd.read_csv(project.root / "data" / "08_reporting" / "sweep_trials.csv")
    assert sorted(table["trial"]) == [0, 1, 2, 3]
    assert table["validation_auroc"].max() == pytest.approx(metrics["sweep_best_validation_auroc"])


def test_a_trial_that_repeats_earlier_values_reuses_their_results(
    project: KedroProject,
) -> None:
    # One configuration, three trials: the repeats used to train the same model again.
    (project.root / "conf" / "local" / "parameters.yml").write_text(
        "training:\n  epochs: 10\nsweep:\n  n_trials: 3\n  space:\n    model.kind: [denoising]\n"
    )
    result = project.run(pipeline="sweep")
    assert result.returncode == 0, output_of(result)
    trials = [run for run in project.runs() if "sweep_trial" in run.data.tags]
    assert len(trials) == 3
    trained = {
        run.data.tags["sweep_trial"]: run
        for run in trials
        if "sweep_repeat_of" not in run.data.tags
    }
    assert list(trained) == ["0"]
    for run in trials:
        if "sweep_repeat_of" in run.data.tags:
            earlier = trained[run.data.tags["sweep_repeat_of"]]
            assert run.data.params["model.kind"] == earlier.data.params["model.kind"]
            assert run.data.metrics == earlier.data.metrics


def test_sweep_refuses_a_key_outside_model_and_training(project: KedroProject) -> None:
    (project.root / "conf" / "local" / "parameters.yml").write_text(
        "sweep:\n  n_trials: 2\n  space:\n    threshold.quantile: [0.9, 0.99]\n"
    )
    result = project.run(pipeline="sweep")
    assert result.returncode != 0
    assert "'threshold.quantile' is not a sweepable key" in output_of(result)
    assert not any("sweep_trial" in run.data.tags for run in project.runs()), "no trial may start"
    assert project.client().search_registered_models() == []


def _failed_sweep(project: KedroProject, parameters: str) -> str:
    """Run the sweep with ``parameters`` in conf/local; its output, once it failed."""
    (project.root / "conf" / "local" / "parameters.yml").write_text(parameters)
    result = project.run(pipeline="sweep")
    assert result.returncode != 0
    return output_of(result)


def test_a_space_value_the_model_refuses_is_named_as_the_spaces(project: KedroProject) -> None:
    text = _failed_sweep(
        project, "sweep:\n  n_trials: 2\n  space:\n    model.latent_dim: {low: 0, high: 4}\n"
    )
    assert (
        "sweep.space['model.latent_dim'] can give 0, which model.latent_dim refuses: "
        "Input should be greater than 0" in text
    ), text[-2000:]
    assert project.runs() == []  # refused before an MLflow run was opened


def test_a_trial_whose_values_break_a_rule_between_fields_names_them(
    project: KedroProject,
) -> None:
    # The blocks are valid, and so is each value on its own field; with min_lr,
    # the sampled lr=0.001 is not.
    text = _failed_sweep(
        project,
        "training:\n  lr: 0.01\n  lr_schedule: {kind: cosine, min_lr: 0.005}\n"
        "sweep:\n  n_trials: 1\n  space:\n    training.lr: [0.001]\n",
    )
    assert (
        "trial 0: the values sweep.space gave it, {'training.lr': 0.001}, make an invalid "
        "configuration:" in text
    ), text[-2000:]
    assert "min_lr=0.005 is above training.lr=0.001" in text
    assert project.client().search_registered_models() == []


def test_a_space_key_the_sweep_sets_itself_is_refused(project: KedroProject) -> None:
    text = _failed_sweep(
        project, "sweep:\n  n_trials: 2\n  space:\n    training.resume: [true, false]\n"
    )
    assert "sweep.space['training.resume']: the sweep sets training.resume" in text, text[-2000:]
    assert project.runs() == []  # it left a FAILED run named sweep-vanilla


def test_latent_dims_wider_than_the_input_are_left_out_of_the_space(
    project: KedroProject,
) -> None:
    # The demo table has 30 features: a code of 30 or more could copy a row.
    (project.root / "conf" / "local" / "parameters.yml").write_text(
        "sweep:\n  n_trials: 3\n  space:\n    model.latent_dim: {low: 24, high: 64}\n"
    )
    result = project.run("--params=training.epochs=2", pipeline="sweep")
    assert result.returncode == 0, output_of(result)
    assert "its range 24 to 64 narrowed to 24 to 29" in result.stdout + result.stderr
    trials = [run for run in project.runs() if "sweep_trial" in run.data.tags]
    assert len(trials) == 3
    assert all(24 <= int(run.data.params["model.latent_dim"]) <= 29 for run in trials)


def test_a_base_setting_that_does_not_fit_the_input_stops_its_trial_by_name(
    project: KedroProject,
) -> None:
    text = _failed_sweep(
        project,
        "model:\n  latent_dim: 40\nsweep:\n  n_trials: 2\n  space:\n    training.lr: [0.01]\n",
    )
    assert "trial 0: the values sweep.space gave it, {'training.lr': 0.01}" in text, text[-2000:]
    assert "model.latent_dim=40 must be smaller than the 30 input values" in text
    assert project.client().search_registered_models() == []
