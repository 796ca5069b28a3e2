"""`kedro run --pipeline=generate` and `--pipeline=impute` against a registered VAE."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from aeops.data import DataConfig, ingest, split_by_kind
from aeops.demo_data import make_missing_values_demo, make_tabular_demo
from support import KedroProject, output_of

pytestmark = pytest.mark.slow

SAMPLES_300 = "--params=generate.num_samples=300,generate.seed=4"
FEATURES = [c for c in make_tabular_demo().columns if c not in ("id", "label")]


@pytest.fixture(scope="module")
def vae_project(tmp_path_factory: pytest.TempPathFactory) -> KedroProject:
    """The demo with a champion VAE at the shipped defaults (only model.kind set)."""
    project = KedroProject(tmp_path_factory.mktemp("vae"))
    result = project.run("--params=model.kind=vae")
    assert result.returncode == 0, output_of(result)
    return project


def _latest_run(project: KedroProject, tag: str) -> object:
    runs = [run for run in project.runs() if tag in run.data.tags]
    assert runs, f"no run tagged {tag}"
    return runs[0]


def test_generate_writes_samples_in_the_training_units_and_logs_them(
    vae_project: KedroProject,
) -> None:
    result = vae_project.run(SAMPLES_300, pipeline="generate")
    assert result.returncode == 0, output_of(result)
    output = vae_project.root / "data" / "07_model_output" / "generated.parquet"
    generated = pd.read_parquet(output)
    assert list(generated.columns) == ["sample", *FEATURES]
    assert len(generated) == 300
    # Inverse-scaled: every column sits within the demo's range of that column, not
    # around the scaled 0 (mean_area is in the hundreds, fractal dimensions ~0.06).
    demo = make_tabular_demo()
    centre = generated[FEATURES].median()
    assert ((centre > demo[FEATURES].min()) & (centre < demo[FEATURES].max())).all()
    assert 300 < centre["mean_area"] < 1200

    run = _latest_run(vae_project, "generated_by_model_uri")
    assert run.data.tags["generated_by_model_uri"] == "models:/aeops-demo@champion"
    assert run.data.tags["generated_by_model_version"] == "1"
    assert run.data.tags["generated_by_model_kind"] == "vae"
    assert run.info.run_name == "generate-aeops-demo-v1"  # was "generate", for any model
    assert run.data.params["generate.num_samples"] == "300"
    artifacts = {a.path for a in vae_project.client().list_artifacts(run.info.run_id, "generation")}
    assert artifacts == {"generation/generated.parquet", "generation/generated_samples.png"}

    # The same seed again gives the same rows.
    again = vae_project.run(SAMPLES_300, pipeline="generate")
    assert again.returncode == 0, output_of(again)
    pd.testing.assert_frame_equal(pd.read_parquet(output), generated)


def _normalised_rmse(guess: pd.DataFrame, truth: pd.DataFrame, hidden: np.ndarray) -> float:
    error = (guess[FEATURES] - truth[FEATURES]) / truth[FEATURES].std()
    return float(np.sqrt(np.mean(error.to_numpy()[hidden] ** 2)))


def test_impute_fills_masked_demo_values_better_than_column_means(
    vae_project: KedroProject,
) -> None:
    truth = make_tabular_demo()
    gappy = make_missing_values_demo()
    hidden = gappy[FEATURES].isna().to_numpy()
    assert 0.08 < hidden.mean() < 0.12  # the committed demo hides about 10%

    result = vae_project.run(pipeline="impute")
    assert result.returncode == 0, output_of(result)
    imputed = pd.read_parquet(vae_project.root / "data" / "07_model_output" / "imputed.parquet")
    assert list(imputed.columns) == list(gappy.columns)
    assert not imputed[FEATURES].isna().any().any()
    # Observed values, ids and labels are untouched.
    observed = gappy[FEATURES].notna().to_numpy()
    np.testing.assert_array_equal(
        imputed[FEATURES].to_numpy()[observed], gappy[FEATURES].to_numpy()[observed]
    )
    pd.testing.assert_series_equal(imputed["id"], gappy["id"])
    pd.testing.assert_series_equal(imputed["label"], gappy["label"])

    # Judged on the rows the VAE never trained on: the test split of its `train` run.
    data = yaml.safe_load((vae_project.root / "conf/base/parameters_data.yml").read_text())
    config = DataConfig(**data["data"])
    unseen = split_by_kind(ingest(truth, config), config)[2]["id"]
    held_out = hidden & gappy["id"].isin(unseen).to_numpy()[:, None]
    assert held_out.sum() > 100
    vae_error = _normalised_rmse(imputed, truth, held_out)
    mean_error = _normalised_rmse(gappy.fillna(gappy[FEATURES].mean()), truth, held_out)
    print(f"imputation RMSE (column SDs): vae={vae_error:.4f} column_mean={mean_error:.4f}")
    assert vae_error < 0.95 * mean_error, (vae_error, mean_error)

    run = _latest_run(vae_project, "imputed_by_model_uri")
    metrics = run.data.metrics
    assert metrics["impute_missing_values"] == hidden.sum()
    assert metrics["impute_rows_with_missing"] == hidden.any(axis=1).sum()
    assert metrics["impute_last_change"] < 1e-3
    # The run's own held-out check agrees: the model beats column means on this data.
    assert metrics["impute_holdout_rmse"] < metrics["impute_holdout_rmse_column_mean"]
    assert run.data.tags["imputed_by_model_kind"] == "vae"


def test_impute_refuses_bad_values_and_writes_nothing(vae_project: KedroProject) -> None:
    bad = make_missing_values_demo()
    bad["mean_texture"] = bad["mean_texture"].astype(object)
    bad.loc[4, "mean_texture"] = "n/a?"
    path = vae_project.root / "data" / "01_raw" / "bad_missing.csv"
    bad.to_csv(path, index=False)
    output = vae_project.root / "data" / "07_model_output" / "imputed_bad.parquet"
    (vae_project.root / "conf" / "local" / "catalog.yml").write_text(
        "impute_input:\n  type: aeops.io.TabularDataset\n  filepath: data/01_raw/bad_missing.csv\n"
        f"imputed_data:\n  type: aeops.io.TabularDataset\n  filepath: {output}\n"
    )
    try:
        result = vae_project.run(pipeline="impute")
    finally:
        (vae_project.root / "conf" / "local" / "catalog.yml").unlink()
    assert result.returncode != 0
    text = output_of(result)
    assert "bad_missing.csv" in text and "mean_texture" in text and "n/a?" in text
    assert not output.exists()
