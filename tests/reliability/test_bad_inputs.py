"""Bad inputs through a real ``kedro run``: each fails with a message naming the
problem, exits non-zero, writes no model output and leaves the registry unchanged.

The README's table "Inputs that fail" lists the same cases and messages.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from support import KedroProject, output_of

pytestmark = pytest.mark.slow

DEMO = Path("data/01_raw/breast_cancer_anomalies.csv")
SERIES = Path("data/01_raw/sensor_series.csv")
#: What a failed train run must not leave behind.
MODEL_OUTPUTS = (
    "data/06_models",
    "data/07_model_output",
    "data/08_reporting/registration.json",
)


def _rewrite(project: KedroProject, change: Callable[[pd.DataFrame], pd.DataFrame]) -> None:
    path = project.root / DEMO
    change(pd.read_csv(path)).to_csv(path, index=False)


def _set(column: str, row: int, value: object) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def change(frame: pd.DataFrame) -> pd.DataFrame:
        if isinstance(value, str):
            frame[column] = frame[column].astype(object)
        frame.loc[row, column] = value
        return frame

    return change


def _local_catalog(project: KedroProject, entry: str) -> None:
    (project.root / "conf" / "local" / "catalog.yml").write_text(entry)


def _local_parameters(project: KedroProject, block: str, **changes: object) -> None:
    """conf/local's copy of ``block`` from conf/base, with ``changes``."""
    base = yaml.safe_load((project.root / f"conf/base/parameters_{block}.yml").read_text())
    base[block].update(changes)
    (project.root / f"conf/local/parameters_{block}.yml").write_text(yaml.safe_dump(base))


def _corrupted_parquet(project: KedroProject) -> None:
    (project.root / "data/01_raw/table.parquet").write_bytes(b"PAR1 this is not parquet")
    _local_catalog(
        project,
        "raw_data:\n  type: aeops.io.TabularDataset\n  filepath: data/01_raw/table.parquet\n",
    )


def _semicolons(project: KedroProject) -> None:
    path = project.root / DEMO
    pd.read_csv(path).to_csv(path, index=False, sep=";")


def _latin1(project: KedroProject) -> None:
    path = project.root / DEMO
    frame = pd.read_csv(path)
    frame["site"] = "Montréal"
    frame.to_csv(path, index=False, encoding="latin-1")


def _mixed_image_sizes(project: KedroProject) -> None:
    folder = project.root / "data/01_raw/digits"
    rng = np.random.default_rng(0)
    for index in range(30):
        height = 9 if index == 17 else 8
        (folder / "0").mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 255, size=(height, 8), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / "0" / f"img{index:02d}.png")
    # --env=images replaces conf/local, so the override goes into the env's catalog.
    (project.root / "conf/images/catalog.yml").write_text(
        "raw_data:\n  type: aeops.io.ImageDataset\n  filepath: data/01_raw/digits\n"
    )
    data = project.root / "conf/images/parameters_data.yml"
    data.write_text(data.read_text().replace("pixel_range: [0, 16]", "pixel_range: [0, 255]"))


def _short_series(project: KedroProject) -> None:
    path = project.root / SERIES
    pd.read_csv(path).head(150).to_csv(path, index=False)


#: case: (how to break the project, extra `kedro run` arguments, patterns the output has)
CASES: dict[str, tuple[Callable[[KedroProject], None] | None, list[str], list[str]]] = {
    "empty file": (
        lambda p: (p.root / DEMO).write_text(""),
        [],
        [r"breast_cancer_anomalies\.csv is empty \(0 bytes\)"],
    ),
    "header only": (
        lambda p: _rewrite(p, lambda f: f.head(0)),
        [],
        [r"breast_cancer_anomalies\.csv has a header \(32 columns\) but no rows"],
    ),
    "missing configured column": (
        lambda p: _rewrite(p, lambda f: f.drop(columns=["label"])),
        [],
        [r"failed validation", r"expect_column_to_exist \(column 'label'\)"],
    ),
    "string in a numeric column": (
        lambda p: _rewrite(p, _set("mean_radius", 5, "abc")),
        [],
        [r"failed validation", r"column 'mean_radius'", r"abc"],
    ),
    "NaN": (
        lambda p: _rewrite(p, _set("mean_texture", 7, np.nan)),
        [],
        [r"failed validation", r"column 'mean_texture'\): expected no null.*sample ids \[7\]"],
    ),
    "inf": (
        lambda p: _rewrite(p, _set("worst_area", 11, np.inf)),
        [],
        [r"failed validation", r"column 'worst_area'\): expected finite.*sample ids \[11\]"],
    ),
    "1e308": (
        lambda p: _rewrite(p, _set("mean_area", 9, 1e308)),
        [],
        [
            r"failed validation",
            r"column 'mean_area'\): expected finite values \(within \+-3\.40282e\+38",
            r"observed 1 value that is infinite or outside float32",
            r"sample ids \[9\]",
        ],
    ),
    "duplicate ids": (
        lambda p: _rewrite(p, _set("id", 3, 2)),
        [],
        [
            r"failed validation",
            r"expect_column_values_to_be_unique \(column 'id'\)",
            r"sample values \[2",
        ],
    ),
    "single row": (
        lambda p: _rewrite(p, lambda f: f.head(1)),
        [],
        [r"failed validation", r"at least 20 rows.*observed 1"],
    ),
    "every feature constant": (
        lambda p: _rewrite(
            p, lambda f: f.assign(**{c: 1.0 for c in f.columns if c not in ("id", "label")})
        ),
        [],
        [r"all \d+ training rows \(every feature is constant\) are the same: there is nothing"],
    ),
    "two columns of one name": (
        lambda p: _rewrite(p, lambda f: f.rename(columns={"mean_perimeter": "mean_texture"})),
        [],
        [r"breast_cancer_anomalies\.csv has more than one column named 'mean_texture'"],
    ),
    "corrupted Parquet": (
        _corrupted_parquet,
        [],
        [r"table\.parquet is not a readable Parquet file"],
    ),
    "semicolon-delimited CSV": (
        _semicolons,
        [],
        [r"looks ';'-delimited; set load_args: \{sep: ';'\}"],
    ),
    "latin-1 CSV": (
        _latin1,
        [],
        [r"could not be parsed as CSV.*'utf-8' codec can't decode", r"encoding"],
    ),
    "images of mixed sizes": (
        _mixed_image_sizes,
        ["--env=images"],
        [r"failed validation", r"image_height", r"0/img17\.png"],
    ),
    "series shorter than a window": (
        _short_series,
        ["--env=timeseries"],
        [r"shorter than one window \(data\.window\.length=32\)"],
    ),
    "unknown model kind": (
        None,
        ["--params=model.kind=vea"],
        [r"model\.kind='vea' is not registered; choose one of: denoising, sparse, vae, vanilla"],
    ),
    "zero batch size": (
        None,
        ["--params=training.batch_size=0"],
        [r"training\.batch_size: Input should be greater than or equal to 1 \(given: 0\)"],
    ),
    "a precision this machine cannot give": (
        None,
        ["--params=training.device=cpu,training.precision=fp16"],
        [r"training\.precision='fp16' needs a CUDA device .* but training runs on cpu"],
    ),
    "negative learning rate": (
        None,
        ["--params=training.lr=-0.1"],
        [r"training\.lr: Input should be greater than 0 \(given: -0\.1\)"],
    ),
    "misspelled parameter block": (
        None,
        ["--params=trainig.epochs=5"],
        [r"--params names 'trainig' \(did you mean 'training'\?\), which no parameter file"],
    ),
    "a model name the registry refuses": (
        None,
        ["--params=registry.model_name=team/model"],
        [
            r"registry\.model_name='team/model' must be non-empty and hold no quotes, "
            r"'/', ':' or '@'"
        ],
    ),
    "a model name a model URI cannot hold": (  # it registered, then no pipeline loaded it
        None,
        ["--params=registry.model_name=team@demo"],
        [
            r"registry\.model_name='team@demo' must be non-empty and hold no quotes, "
            r"'/', ':' or '@'"
        ],
    ),
    "misspelled compare metric": (
        None,
        ["--params=registry.compare_metric=test_aurc"],
        [r"'test_aurc' is not a test metric; did you mean 'test_auroc'\? choose one of"],
    ),
    "a gap without a unit": (
        None,
        ["--env=timeseries", "--params=data.max_gap=5"],
        [r"data\.max_gap: .*not a positive duration with a unit"],
    ),
    "a threshold that needs labels, with none": (
        None,
        ["--params=data.label_column=null,threshold.method=f1"],
        [r"threshold\.method='f1' needs labels on the validation split, and data\.label_colu"],
    ),
    "a compare metric that needs labels, with none": (
        None,
        ["--params=data.label_column=null"],
        [r"registry\.compare_metric=test_auroc needs labels on the test split, and data\.lab"],
    ),
    "bounds for a column that is not a feature": (
        lambda p: _local_parameters(p, "data", bounds={"mean_raduis": [0, 50]}),
        [],
        [r"data\.bounds names 'mean_raduis', .* \(did you mean 'mean_radius'\?\)"],
    ),
    "a binary cross-entropy on robust-scaled rows": (
        None,
        ["--params=model.reconstruction_loss=bce"],
        [r"model\.reconstruction_loss=bce needs inputs in \[0, 1\]"],
    ),
    "latent_dim larger than the input": (
        None,
        ["--params=model.latent_dim=64"],
        [r"model\.latent_dim=64 must be smaller than the 30 input values"],
    ),
}

# Parameters the pre-run check refuses: no MLflow run is opened, not even a FAILED one.
REFUSED_BEFORE_ANY_RUN = {
    "a compare metric that needs labels, with none",
    "a precision this machine cannot give",
    "zero batch size",
    "negative learning rate",
}


def _final_error(result: subprocess.CompletedProcess[str]) -> str:
    """What the run printed from its last line that starts ``Error: `` on (aeops's
    refusals end a run so, in place of Python's traceback)."""
    starts = [m.end() for m in re.finditer(r"(?m)^Error: ", result.stderr)]
    assert starts, result.stderr[-3000:]
    return result.stderr[starts[-1] :]


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_fails_clearly_writes_nothing_and_registers_nothing(
    project: KedroProject, case: str
) -> None:
    breaks, args, patterns = CASES[case]
    if breaks is not None:
        breaks(project)
    result = project.run(*args)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output_of(result)
    for pattern in patterns:
        assert re.search(pattern, output), (pattern, output[-3000:])
    # The message ends the output, without Python's traceback above it.
    assert "Traceback (most recent call last)" not in output, output[-3000:]
    assert re.search(patterns[-1], _final_error(result)), result.stderr[-3000:]
    # The keep-the-model hook reads nothing when the store is local and reachable.
    assert "Loading data from trained_model" not in output
    for path in MODEL_OUTPUTS:
        assert not (project.root / path).exists(), path
    assert project.client().search_registered_models() == []
    runs = project.runs()
    assert [run.info.status for run in runs] in ([], ["FAILED"])
    if case in REFUSED_BEFORE_ANY_RUN:
        assert runs == []
    if "failed validation" in patterns:  # the report is logged on failure too
        artifacts = project.client().list_artifacts(runs[0].info.run_id, "validation")
        assert "validation/validation_report.json" in {a.path for a in artifacts}


def test_aeops_traceback_shows_where_a_refusal_was_raised(project: KedroProject) -> None:
    result = project.run("--params=training.lr=-0.1", env={"AEOPS_TRACEBACK": "1"})
    assert result.returncode != 0, output_of(result)
    output = result.stdout + result.stderr
    assert "Traceback (most recent call last)" in output
    assert "ParameterError: invalid parameters in 'training'" in output
    assert "AEOPS_TRACEBACK" not in output


def test_a_refused_sweep_trial_ends_the_sweep_without_a_traceback(
    project: KedroProject,
) -> None:
    (project.root / "conf" / "local").mkdir(parents=True, exist_ok=True)
    # The base model's code is wider than the input; the space cannot narrow that.
    (project.root / "conf" / "local" / "parameters_sweep.yml").write_text(
        "sweep:\n  n_trials: 2\n  space:\n    training.lr: [0.01]\n"
    )
    result = project.run("--params=model.latent_dim=40", pipeline="sweep")
    output = result.stdout + result.stderr
    assert result.returncode != 0, output_of(result)
    assert "Trial 0 failed with parameters" in output  # Optuna's warning, without frames
    assert "Traceback (most recent call last)" not in output, output[-3000:]
    assert re.search(r"model\.latent_dim=\d+ must be smaller than the 30", _final_error(result))


def test_a_misspelled_pipeline_is_named_with_the_closest(project: KedroProject) -> None:
    result = project.run(pipeline="trian")
    output = result.stdout + result.stderr
    assert result.returncode != 0, output_of(result)
    assert "Failed to find the pipeline named 'trian'" in output
    assert re.search(r"Did you mean one of these\s+instead\?\s+train", output), output[-2000:]
    assert "An error occurred while importing" not in output


# Batch jobs against a registered model -------------------------------------------------


@pytest.fixture(scope="module")
def odd_but_valid(tmp_path_factory: pytest.TempPathFactory) -> KedroProject:
    """A model trained on inputs that are unusual but valid: a constant column, and
    fewer training rows than one batch."""
    project = KedroProject(tmp_path_factory.mktemp("odd"))
    _rewrite(project, lambda f: f.assign(mean_smoothness=0.1))
    result = project.run("--params=training.batch_size=1024,training.epochs=20")
    assert result.returncode == 0, output_of(result)
    return project


def _registry_state(project: KedroProject) -> list[tuple[str, str, dict[str, str]]]:
    client = project.client()
    return [
        (model.name, str(version.version), dict(version.tags))
        for model in client.search_registered_models()
        for version in client.search_model_versions(f"name='{model.name}'")
    ]


def test_a_constant_column_and_fewer_rows_than_a_batch_train_normally(
    odd_but_valid: KedroProject,
) -> None:
    (run,) = odd_but_valid.runs()
    assert run.info.status == "FINISHED"
    assert np.isfinite(run.data.metrics["test_auroc"])
    assert int(run.data.metrics["epochs_trained"]) >= 1


SCORE_CASES = {
    "missing feature column": (
        lambda f: f.drop(columns=["worst_area"]),
        [r"worst_area", r"missing"],
    ),
    "string in a feature": (
        _set("mean_radius", 4, "oops"),
        [r"mean_radius", r"expected a numeric dtype", r"oops"],
    ),
    "1e308 in a feature": (
        _set("mean_area", 6, 1e308),
        [r"column 'mean_area'\): expected finite values", r"sample rows \[6\]", r"1e\+308"],
    ),
    # Two clean batches of 100 rows go out before the bad one: none may be left behind.
    "1e308 in the third batch": (
        _set("mean_area", 250, 1e308),
        [r"rows 200-299", r"sample rows \[250\]"],
    ),
}


@pytest.mark.parametrize("pipeline", ["score", "embed"])
@pytest.mark.parametrize("case", list(SCORE_CASES))
def test_input_unlike_the_models_schema_stops_the_batch_job(
    odd_but_valid: KedroProject, case: str, pipeline: str
) -> None:
    change, patterns = SCORE_CASES[case]
    bad = odd_but_valid.root / "data/01_raw/bad.csv"
    change(pd.read_csv(odd_but_valid.root / DEMO)).to_csv(bad, index=False)
    output = odd_but_valid.root / "data/07_model_output" / f"{pipeline}_of_bad.parquet"
    output_entry = {"score": "scores", "embed": "embeddings"}[pipeline]
    _local_catalog(
        odd_but_valid,
        f"{pipeline}_input:\n  type: aeops.io.TableSourceDataset\n  filepath: {bad}\n"
        f"{output_entry}:\n  type: aeops.io.BatchJobOutputDataset\n  filepath: {output}\n",
    )
    before = _registry_state(odd_but_valid)
    result = odd_but_valid.run(f"--params={pipeline}.batch_rows=100", pipeline=pipeline)
    text = result.stdout + result.stderr
    assert result.returncode != 0, output_of(result)
    for pattern in patterns:
        assert re.search(pattern, text), (pattern, text[-3000:])
    assert "Traceback (most recent call last)" not in text, text[-3000:]
    final = _final_error(result)
    assert re.search(patterns[-1], final), result.stderr[-3000:]
    # The catalog entry's name, then the job's message: no "Failed while saving ..."
    assert final.startswith(f"{output_entry}: "), final
    assert "Failed while" not in text, text[-3000:]
    assert not list((odd_but_valid.root / "data/07_model_output").glob("*.parquet.*"))
    assert not output.exists()
    assert _registry_state(odd_but_valid) == before


def test_a_refusal_on_a_spark_executor_ends_with_its_message_alone(
    odd_but_valid: KedroProject,
) -> None:
    pytest.importorskip("pyspark")
    bad = odd_but_valid.root / "data/01_raw/bad.parquet"
    _set("mean_area", 250, np.nan)(pd.read_csv(odd_but_valid.root / DEMO)).to_parquet(bad)
    output = odd_but_valid.root / "data/07_model_output/spark_scores"
    _local_catalog(
        odd_but_valid,
        f"score_input:\n  type: aeops.io.TableSourceDataset\n  filepath: {bad}\n"
        f"scores:\n  type: aeops.io.BatchJobOutputDataset\n  filepath: {output}\n",
    )
    result = odd_but_valid.run(
        "--params=score.engine=spark",
        pipeline="score",
        env=odd_but_valid.env(AEOPS_SPARK_MASTER="local[1]"),  # aeops's own session
    )
    assert result.returncode == 1, output_of(result)
    final = _final_error(result)  # on a line of its own: no stage bar left before it
    assert re.match(r"scores: \S*bad.parquet: Spark partition 0, its rows 0-\d+, failed", final)
    assert "column 'mean_area'" in final and "sample rows [250]" in final, final
    # Said once, without Spark's task-failure log and its JVM frames.
    assert result.stderr.count("failed the model's validation suite") == 1, result.stderr
    assert "\tat org.apache.spark" not in result.stderr, result.stderr[-3000:]
    assert "Traceback (most recent call last)" not in result.stderr
    assert not output.exists()
    # A local session listens on loopback only. Without SPARK_LOCAL_IP, Spark takes
    # another interface where the host name resolves to 127.0.0.1 (as on the CI
    # machines), and says so.
    assert "resolves to a loopback address" not in result.stderr, result.stderr[:2000]


def test_extra_columns_are_ignored_at_scoring(odd_but_valid: KedroProject) -> None:
    raw = pd.read_csv(odd_but_valid.root / DEMO)
    extra = raw.assign(comment="checked by hand", unused_number=1.5)
    extra.to_csv(odd_but_valid.root / "data/01_raw/extra.csv", index=False)
    _local_catalog(
        odd_but_valid,
        "score_input:\n  type: aeops.io.TableSourceDataset\n  filepath: data/01_raw/extra.csv\n"
        "scores:\n  type: aeops.io.BatchJobOutputDataset\n"
        "  filepath: data/07_model_output/scores_extra.parquet\n",
    )
    result = odd_but_valid.run(pipeline="score")
    assert result.returncode == 0, output_of(result)
    scored = pd.read_parquet(odd_but_valid.root / "data/07_model_output/scores_extra.parquet")
    evaluated = pd.read_parquet(odd_but_valid.root / "data/07_model_output/test_scores.parquet")
    shared = scored.set_index("id").loc[evaluated["id"]]
    np.testing.assert_allclose(
        shared["reconstruction_error"], evaluated["reconstruction_error"], rtol=1e-6
    )
