from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from unittest.mock import Mock, patch

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from aeops.bundle import BundleFormatError
from aeops.data import TabularInputs, fit_scaler
from aeops.models import ModelConfig, build_model
from aeops.scoring import InputSchemaError, Predictor, Threshold
from aeops.scoring.evaluation import row_hashes, score_metrics
from aeops.serving import (
    CHALLENGER,
    CHAMPION,
    BundleSpec,
    ChampionComparison,
    LoadedBundle,
    ModelNotFoundError,
    RegistryConfig,
    _loading,
    load_registered_bundle,
    read_bundle,
    register_bundle,
    write_bundle,
)
from aeops.serving import _registry as registry
from aeops.serving import pending as pending_module
from aeops.serving.pending import (
    UNLOGGED,
    NothingPendingError,
    PendingRegistration,
    PendingRegistrationBusyError,
    log_pending,
)
from aeops.serving.pending import main as pending_main

COLUMNS = ["a", "b", "c", "d"]


def _predictor(seed: int = 0) -> Predictor:
    torch.manual_seed(seed)
    model = build_model(ModelConfig(architecture="mlp", latent_dim=2, hidden_dims=(8,)), (4,))
    model.eval()
    values = np.random.default_rng(seed).normal(size=(50, 4))
    scaler = fit_scaler(values, COLUMNS, "robust")
    threshold = Threshold(0.5, "quantile", {"quantile": 0.9})
    return Predictor(model, TabularInputs(tuple(COLUMNS)), scaler, threshold)


def _rows(n: int = 6) -> pd.DataFrame:
    frame = pd.DataFrame(np.random.default_rng(1).normal(size=(n, 4)), columns=COLUMNS)
    frame.insert(0, "key", np.arange(n, dtype=np.int64) + 100)
    return frame


SPEC = BundleSpec(id_column="key", data={"kind": "tabular"})


def test_bundle_files_rebuild_identical_answers(tmp_path: Path) -> None:
    predictor = _predictor()
    write_bundle(tmp_path, predictor, SPEC)
    again, spec = read_bundle(tmp_path)
    assert spec == SPEC
    first, second = predictor.score_frame(_rows()), again.score_frame(_rows())
    np.testing.assert_array_equal(first.reconstruction_error, second.reconstruction_error)
    np.testing.assert_array_equal(first.embedding, second.embedding)
    assert again.threshold == predictor.threshold
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle.json", "state_dict.pt"]
    # A folder given as text, as a user would type it.
    write_bundle(str(tmp_path / "text"), predictor, SPEC)
    from_text, _ = read_bundle(str(tmp_path / "text"))
    assert from_text.threshold == predictor.threshold


def test_a_bundle_of_another_format_is_refused_with_what_to_do(tmp_path: Path) -> None:
    write_bundle(tmp_path, _predictor(), SPEC)
    manifest = json.loads((tmp_path / "bundle.json").read_text())
    manifest["format_version"] = 0
    (tmp_path / "bundle.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleFormatError, match=r"holds bundle format 0, .* train the model"):
        read_bundle(tmp_path)


def _register(metrics: dict[str, float], seed: int = 0) -> dict[str, object]:
    config = RegistryConfig(model_name="unit-model", compare_metric="test_auroc")
    with mlflow.start_run():
        mlflow.log_metrics(metrics)
        registration = register_bundle(
            _predictor(seed), SPEC, _rows(3), metrics, config, {"t": "1"}
        )
    return registration.to_dict()


@pytest.mark.usefixtures("tracking_uri")
def test_a_registered_bundle_of_another_format_is_named_by_its_model_uri(
    tmp_path: Path,
) -> None:
    _register({"test_auroc": 0.8})
    (manifest_path,) = (tmp_path / "mlruns").rglob("bundle.json")  # the stored artifact
    manifest = json.loads(manifest_path.read_text())
    manifest["format_version"] = 0
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(BundleFormatError) as raised:
        load_registered_bundle("models:/unit-model/1")
    message = str(raised.value)
    assert message.startswith("model URI 'models:/unit-model/1': the bundle holds bundle format 0")
    assert str(tmp_path) not in message


@pytest.mark.usefixtures("tracking_uri")
def test_champion_only_moves_to_a_better_version(caplog: pytest.LogCaptureFixture) -> None:
    first = _register({"test_auroc": 0.80})
    assert (first["version"], first["alias"]) == ("1", CHAMPION)
    worse = _register({"test_auroc": 0.70})
    assert (worse["version"], worse["alias"]) == ("2", CHALLENGER)
    assert worse["champion_metric_before"] == pytest.approx(0.80)
    with caplog.at_level("WARNING", logger="aeops.serving"):
        no_metric = _register({})
    assert no_metric["alias"] == CHALLENGER
    # It was logged as None: a test split of one class said nothing of it.
    assert "test_auroc is undefined on this version's test split (one class" in caplog.text
    better = _register({"test_auroc": 0.90})
    assert (better["version"], better["alias"]) == ("4", CHAMPION)
    assert better["model_uri"] == "models:/unit-model/4"  # the version, not the alias
    client = MlflowClient()
    assert str(client.get_model_version_by_alias("unit-model", CHAMPION).version) == "4"
    # The displaced champion is the runner-up now, not version 3 that lost to it.
    assert str(client.get_model_version_by_alias("unit-model", CHALLENGER).version) == "1"
    tags = client.get_model_version("unit-model", "4").tags
    assert tags["metric.test_auroc"] == "0.9"
    assert tags["t"] == "1"


@pytest.mark.usefixtures("tracking_uri")
def test_logged_pyfunc_predicts_like_the_predictor_with_and_without_ids() -> None:
    registration = _register({"test_auroc": 0.8})
    model = mlflow.pyfunc.load_model(str(registration["model_uri"]))
    rows = _rows()
    expected = _predictor().score_frame(rows)
    answers = model.predict(rows)
    assert list(answers.columns) == ["key", "embedding", "reconstruction_error", "is_anomaly"]
    assert answers["key"].tolist() == rows["key"].tolist()
    np.testing.assert_allclose(answers["reconstruction_error"], expected.reconstruction_error)
    np.testing.assert_allclose(np.stack(answers["embedding"]), expected.embedding)
    np.testing.assert_array_equal(answers["is_anomaly"], expected.is_anomaly)
    assert 0 < expected.is_anomaly.sum() < len(rows)  # both answers occur
    only_errors = model.predict(
        rows.drop(columns=["key"]), params={"output": "reconstruction_error"}
    )
    assert list(only_errors.columns) == ["key", "reconstruction_error"]
    assert only_errors["key"].tolist() == list(range(len(rows)))
    np.testing.assert_allclose(only_errors["reconstruction_error"], expected.reconstruction_error)
    # No rows: no answers, with the columns a consumer reads (MLflow makes them object).
    empty = model.predict(rows.head(0))
    assert list(empty.columns) == list(answers.columns) and empty.empty


@pytest.mark.usefixtures("tracking_uri")
def test_the_served_model_takes_text_ids_and_whole_number_features_as_the_predictor_does() -> None:
    # The example had int64 ids and float features: MLflow's signature check refused
    # text ids and an int64 column for a float feature, which the predictor accepts.
    model = mlflow.pyfunc.load_model(str(_register({"test_auroc": 0.8})["model_uri"]))
    rows = _rows().round()
    rows["a"] = rows["a"].astype(np.int64)
    rows["key"] = [f"row-{i}" for i in range(len(rows))]
    expected = _predictor().score_frame(rows)
    answers = model.predict(rows)
    assert answers["key"].tolist() == rows["key"].tolist()
    np.testing.assert_allclose(answers["reconstruction_error"], expected.reconstruction_error)
    with pytest.raises(InputSchemaError, match="'b'"):
        model.predict(rows.assign(b="x"))


@pytest.mark.usefixtures("tracking_uri")
def test_pyfunc_rejects_rows_without_the_feature_columns() -> None:
    registration = _register({"test_auroc": 0.8})
    model = mlflow.pyfunc.load_model(str(registration["model_uri"]))
    with pytest.raises(MlflowException, match=r"Model is missing inputs \['d'\]"):
        model.predict(_rows().drop(columns=["d"]))


@pytest.mark.parametrize("name", ["it's", 'say "hi"', " "])
def test_a_model_name_that_filters_cannot_quote_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match=r"registry\.model_name=.* must be non-empty and hold no"):
        RegistryConfig(model_name=name)


def test_register_needs_an_active_run(tracking_uri: str) -> None:
    with pytest.raises(RuntimeError, match="active MLflow run"):
        register_bundle(_predictor(), SPEC, _rows(2), {}, RegistryConfig(), {})


def _register_on(
    metrics: dict[str, float],
    digest: str,
    compare: Any,
    seed: int = 0,
    training_rows: np.ndarray | None = None,
) -> dict[str, object]:
    config = RegistryConfig(model_name="unit-model", compare_metric="test_auroc")
    with mlflow.start_run():
        mlflow.log_metrics(metrics)
        registration = register_bundle(
            _predictor(seed),
            SPEC,
            _rows(3),
            metrics,
            config,
            {},
            evaluation_digest=digest,
            compare=compare,
            training_rows=training_rows,
        )
    return registration.to_dict()


def _scoring(champion: float | None, version: float, excluded: int | None = 0) -> Any:
    seen: list[LoadedBundle] = []
    trained_on: list[np.ndarray | None] = []

    def compare(bundle: LoadedBundle, rows: np.ndarray | None) -> ChampionComparison:
        seen.append(bundle)
        trained_on.append(rows)
        return ChampionComparison(
            champion={} if champion is None else {"test_auroc": champion},
            version={"test_auroc": version},
            rows=40,
            excluded=excluded,
        )

    compare.seen = seen  # type: ignore[attr-defined]
    compare.trained_on = trained_on  # type: ignore[attr-defined]
    return compare


def _tags(version: object) -> dict[str, str]:
    return MlflowClient().get_model_version("unit-model", str(version)).tags


@pytest.mark.usefixtures("tracking_uri")
def test_the_champion_is_compared_on_the_new_versions_evaluation_data() -> None:
    compare = _scoring(champion=0.90, version=0.85)
    _register_on({"test_auroc": 0.80}, "data-A", compare)
    assert compare.seen == []  # no champion to compare yet
    newer = _register_on({"test_auroc": 0.85}, "data-B", compare)
    # On data B the champion scores 0.90, so 0.85 does not beat it, though 0.85 > 0.80.
    assert newer["alias"] == CHALLENGER
    (bundle,) = compare.seen  # the champion's own bundle, as registered
    assert bundle.predictor.threshold is not None and bundle.provenance["model_version"] == "1"
    tags = _tags(newer["version"])
    assert tags["compared_with_champion"] == "reevaluated"
    assert tags["champion_test_auroc"] == "0.9"
    assert tags["version_test_auroc"] == "0.85"
    assert (tags["comparison_rows"], tags["comparison_rows_excluded"]) == ("40", "0")
    assert tags["evaluation_digest"] == "data-B"
    same = _register_on({"test_auroc": 0.81}, "data-A", compare)
    assert same["alias"] == CHAMPION  # same data as the champion: its logged 0.80 counts
    assert len(compare.seen) == 1


@pytest.mark.usefixtures("tracking_uri")
def test_the_decision_uses_the_new_versions_score_on_the_same_rows() -> None:
    _register_on({"test_auroc": 0.80}, "data-A", _scoring(0.0, 0.0))
    # Logged 0.95 on its whole test split, but the champion had trained on some of
    # those rows; on the other 40 the new version scores 0.70 and the champion 0.75.
    newer = _register_on({"test_auroc": 0.95}, "data-B", _scoring(0.75, 0.70, excluded=20))
    assert newer["alias"] == CHALLENGER
    assert (newer["metric_value"], newer["compared_metric_value"]) == (0.95, 0.70)
    tags = _tags(newer["version"])
    assert (tags["champion_test_auroc"], tags["version_test_auroc"]) == ("0.75", "0.7")
    assert tags["comparison_rows_excluded"] == "20"
    assert tags["metric.test_auroc"] == "0.95"  # what it logged is still recorded
    unknown = _register_on({"test_auroc": 0.5}, "data-C", _scoring(0.75, 0.80, excluded=None))
    assert unknown["alias"] == CHAMPION
    assert _tags(unknown["version"])["comparison_rows_excluded"] == "unknown"


@pytest.mark.usefixtures("tracking_uri")
def test_a_versions_training_rows_are_logged_beside_it_and_handed_to_the_comparison() -> None:
    _register_on({"test_auroc": 0.80}, "data-A", None, training_rows=np.array([9, 3, 3, 7]))
    compare = _scoring(champion=0.70, version=0.75)
    second = _register_on({"test_auroc": 0.75}, "data-B", compare)  # records none
    third = _register_on({"test_auroc": 0.70}, "data-C", compare)
    (first_rows, second_rows) = compare.trained_on
    np.testing.assert_array_equal(first_rows, np.array([3, 7, 9], dtype=np.uint64))
    assert second_rows is None  # a version whose run recorded no rows
    assert (second["alias"], third["alias"]) == (CHAMPION, CHAMPION)
    # The rows are a run artifact, not part of the served model.
    version_1 = MlflowClient().get_model_version("unit-model", "1")
    artifacts = {a.path for a in MlflowClient().list_artifacts(version_1.run_id, "registry")}
    assert artifacts == {"registry/training_rows.npy"}
    in_model = MlflowClient().list_artifacts(version_1.run_id, "model/artifacts/bundle")
    assert {Path(a.path).name for a in in_model} == {"bundle.json", "state_dict.pt"}


@pytest.mark.usefixtures("tracking_uri")
def test_a_metric_undefined_on_the_compared_rows_keeps_the_champion() -> None:
    _register_on({"test_auroc": 0.60}, "data-A", None)
    # Only normal rows were left once the champion's training rows were taken out.
    newer = _register_on({"test_auroc": 0.99}, "data-B", _scoring(None, 0.9, excluded=30))
    assert newer["alias"] == CHALLENGER
    assert _tags(newer["version"])["compared_with_champion"] == "undefined_on_compared_rows"


@pytest.mark.usefixtures("tracking_uri")
def test_a_champion_trained_on_every_test_row_is_kept() -> None:
    _register_on({"test_auroc": 0.60}, "data-A", None)
    newer = _register_on({"test_auroc": 0.99}, "data-B", lambda bundle, rows: None)
    assert newer["alias"] == CHALLENGER
    assert _tags(newer["version"])["compared_with_champion"] == "no_unseen_rows"
    champion = MlflowClient().get_model_version_by_alias("unit-model", CHAMPION)
    assert str(champion.version) == "1"


@pytest.mark.usefixtures("tracking_uri")
def test_a_champion_that_cannot_score_the_new_data_is_displaced() -> None:
    def cannot(champion: LoadedBundle, rows: np.ndarray | None) -> ChampionComparison:
        raise InputSchemaError("input is missing feature column(s) ['d']")

    _register_on({"test_auroc": 0.95}, "old-schema", cannot)
    newer = _register_on({"test_auroc": 0.70}, "new-schema", cannot)
    assert newer["alias"] == CHAMPION
    assert _tags(newer["version"])["compared_with_champion"] == "incomparable"
    # It was not beaten, and may not even load: it is nobody's runner-up.
    aliases = MlflowClient().get_registered_model("unit-model").aliases
    assert CHALLENGER not in aliases


@pytest.mark.usefixtures("tracking_uri")
def test_an_alias_two_runs_create_at_once_is_set_again(monkeypatch: pytest.MonkeyPatch) -> None:
    set_alias = MlflowClient.set_registered_model_alias
    calls: list[str] = []

    def the_other_run_inserted_it_first(self: MlflowClient, *args: Any) -> None:
        calls.append(args[1])
        if len(calls) == 1:  # what a server answers the second of two inserts
            raise MlflowException(
                "BAD_REQUEST: (sqlite3.IntegrityError) UNIQUE constraint failed: "
                "registered_model_aliases.name, registered_model_aliases.alias"
            )
        set_alias(self, *args)

    monkeypatch.setattr(MlflowClient, "set_registered_model_alias", the_other_run_inserted_it_first)
    registration = _register({"test_auroc": 0.8})
    assert registration["alias"] == CHAMPION
    assert calls == [CHAMPION, CHAMPION]
    assert str(MlflowClient().get_model_version_by_alias("unit-model", CHAMPION).version) == "1"


@pytest.mark.usefixtures("tracking_uri")
def test_a_champion_set_between_our_look_and_our_write_is_compared_with(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Two first trains at once on a server: each saw no champion, and the second to
    # write took the alias from the first without a comparison, leaving it no alias.
    _register({"test_auroc": 0.90}, seed=0)  # the other run's version 1, champion
    champion = registry._champion
    looks: list[str] = []

    def not_there_yet(client: MlflowClient, name: str) -> Any:
        looks.append(name)
        return None if len(looks) <= 2 else champion(client, name)  # both our looks

    monkeypatch.setattr(registry, "_champion", not_there_yet)
    worse = _register({"test_auroc": 0.80}, seed=1)
    assert worse["alias"] == CHALLENGER
    client = MlflowClient()
    assert str(client.get_model_version_by_alias("unit-model", CHAMPION).version) == "1"
    assert str(client.get_model_version_by_alias("unit-model", CHALLENGER).version) == "2"
    assert _tags(2)["compared_with_champion"] != "no_champion"


@pytest.mark.usefixtures("tracking_uri")
def test_a_champion_alias_given_back_to_us_is_kept_not_compared_with_ourselves(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Another run wrote champion just after us, saw ours, and gave it back: our next
    # round read ourselves as the champion, tied, and made ourselves challenger too.
    champion = registry._champion
    looks: list[str] = []

    def another_run_held_it_a_moment(client: MlflowClient, name: str) -> Any:
        looks.append(name)
        if len(looks) == 3:  # our look after writing: the other run's version
            return SimpleNamespace(version="99")
        return champion(client, name)

    monkeypatch.setattr(registry, "_champion", another_run_held_it_a_moment)
    first = _register({"test_auroc": 0.80}, seed=0)
    assert first["alias"] == CHAMPION
    client = MlflowClient()
    assert dict(client.get_registered_model("unit-model").aliases) == {CHAMPION: 1}
    assert _tags(1)["compared_with_champion"] == "no_champion"


@pytest.mark.usefixtures("tracking_uri")
def test_a_champion_whose_artifacts_are_gone_stops_registration_saying_what_to_do() -> None:
    _register_on({"test_auroc": 0.80}, "data-A", _scoring(champion=0.8, version=0.9))
    (bundle_folder,) = Path("mlruns").glob("**/artifacts/bundle")
    shutil.rmtree(bundle_folder.parent.parent)  # the model's files, as `mlflow gc` leaves it
    with pytest.raises(ModelNotFoundError, match=r"champion models:/unit-model/1 cannot be load"):
        _register_on({"test_auroc": 0.90}, "data-B", _scoring(champion=0.8, version=0.9))
    versions = MlflowClient().search_model_versions("name = 'unit-model'")
    assert [str(v.version) for v in versions] == ["1"]  # the new version was rolled back


@pytest.mark.usefixtures("tracking_uri")
def test_a_loaded_alias_is_the_version_its_provenance_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _register({"test_auroc": 0.80}, seed=0)
    _register({"test_auroc": 0.90}, seed=1)  # version 2 becomes the champion
    resolve = _loading._provenance

    def resolve_then_move_the_alias(model_uri: str) -> dict[str, str]:
        provenance = resolve(model_uri)
        # Another process moves the alias between resolving it and downloading.
        MlflowClient().set_registered_model_alias("unit-model", CHAMPION, "1")
        return provenance

    monkeypatch.setattr(_loading, "_provenance", resolve_then_move_the_alias)
    bundle = load_registered_bundle("models:/unit-model@champion")
    assert bundle.provenance["model_version"] == "2"
    answers = bundle.predictor.score_frame(_rows())
    expected = _predictor(seed=1).score_frame(_rows())
    np.testing.assert_array_equal(answers.reconstruction_error, expected.reconstruction_error)


@pytest.mark.usefixtures("tracking_uri")
def test_loading_a_bundle_leaves_no_download_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every batch or evaluate job left MLflow's copy of the model in the temp folder.
    first = _register({"test_auroc": 0.80})
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    for uri in ("models:/unit-model@champion", f"runs:/{first['run_id']}/model"):
        bundle = load_registered_bundle(uri)
        assert bundle.provenance["model_version"] == "1"
        bundle.predictor.score_frame(_rows())  # nothing it needs went with the folder
        assert list(scratch.iterdir()) == [], uri


@pytest.mark.usefixtures("tracking_uri")
def test_a_run_or_logged_model_uri_names_the_version_its_run_registered() -> None:
    # An evaluate run of runs:/<id>/model carried no evaluated version or run.
    _register({"test_auroc": 0.80}, seed=0)
    second = _register({"test_auroc": 0.90}, seed=1)
    version = MlflowClient().get_model_version("unit-model", "2")
    for uri in (f"runs:/{second['run_id']}/model", version.source):
        provenance = load_registered_bundle(uri).provenance
        assert provenance["model_uri"] == uri
        assert provenance["run_id"] == second["run_id"]
        assert (provenance["model_name"], provenance["model_version"]) == ("unit-model", "2")

    def search_fails(*args: object, **kwargs: object) -> None:
        raise MlflowException("the registry is read-only for this user")

    with pytest.MonkeyPatch.context() as patch:  # the version only names the model
        patch.setattr(MlflowClient, "search_model_versions", search_fails)
        provenance = load_registered_bundle(f"runs:/{second['run_id']}/model").provenance
    assert provenance["run_id"] == second["run_id"] and "model_version" not in provenance
    with mlflow.start_run() as unregistered:
        mlflow.pyfunc.log_model(name="model", python_model=_Echo())
    provenance = _loading._provenance(f"runs:/{unregistered.info.run_id}/model")
    assert provenance == {
        "model_uri": f"runs:/{unregistered.info.run_id}/model",
        "run_id": unregistered.info.run_id,
    }


@pytest.mark.usefixtures("tracking_uri")
def test_latest_names_the_highest_version_and_loads_it() -> None:
    # models:/<name>/latest loaded, but the run was told nothing of which version.
    _register({"test_auroc": 0.90}, seed=0)
    second = _register({"test_auroc": 0.80}, seed=1)  # version 2, not the champion
    bundle = load_registered_bundle("models:/unit-model/latest")
    assert bundle.provenance["model_version"] == "2"
    assert bundle.provenance["run_id"] == second["run_id"]
    answers = bundle.predictor.score_frame(_rows())
    expected = _predictor(seed=1).score_frame(_rows())
    np.testing.assert_array_equal(answers.reconstruction_error, expected.reconstruction_error)
    # A version a killed registration left half-made (no registration_complete tag)
    # is passed over: `python -m aeops.serving.pending` deletes it later.
    client = MlflowClient()
    client.delete_model_version_tag("unit-model", "2", "registration_complete")
    assert load_registered_bundle("models:/unit-model/latest").provenance["model_version"] == "1"
    client.delete_model_version_tag("unit-model", "1", "registration_complete")
    # None has the tag (versions from before it): the highest, as MLflow reads latest.
    assert load_registered_bundle("models:/unit-model/latest").provenance["model_version"] == "2"
    client.create_registered_model("empty-model")
    with pytest.raises(ModelNotFoundError, match=r"'empty-model' has no versions"):
        load_registered_bundle("models:/empty-model/latest")


class _Echo(mlflow.pyfunc.PythonModel):
    def predict(self, context: Any, model_input: Any) -> Any:
        return model_input


class _StoreFailureError(RuntimeError):
    """Stands for the registry failing in the middle of the alias decision."""


def _fail(*args: object, **kwargs: object) -> None:
    raise _StoreFailureError


@pytest.mark.usefixtures("tracking_uri")
def test_a_failed_alias_decision_leaves_the_registry_as_it_was(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = MlflowClient()
    monkeypatch.setattr(MlflowClient, "set_registered_model_alias", _fail)
    with pytest.raises(_StoreFailureError):
        _register({"test_auroc": 0.80})
    assert client.search_registered_models() == []  # the model it created went too

    monkeypatch.undo()
    _register({"test_auroc": 0.80})
    monkeypatch.setattr(MlflowClient, "set_model_version_tag", _fail)
    with pytest.raises(_StoreFailureError):
        _register({"test_auroc": 0.90})
    versions = client.search_model_versions("name = 'unit-model'")
    assert [str(v.version) for v in versions] == ["1"]
    assert str(client.get_model_version_by_alias("unit-model", CHAMPION).version) == "1"


@pytest.mark.usefixtures("tracking_uri")
@pytest.mark.parametrize("metric", [0.90, 0.70])  # takes champion / challenger, then fails
def test_a_failure_after_the_alias_moved_gives_the_alias_back(
    monkeypatch: pytest.MonkeyPatch, metric: float
) -> None:
    client = MlflowClient()
    _register({"test_auroc": 0.80}, seed=0)  # version 1, champion
    _register({"test_auroc": 0.60}, seed=1)  # version 2, challenger
    set_alias = MlflowClient.set_registered_model_alias

    def applied_then_lost(self: MlflowClient, name: str, alias: str, version: object) -> None:
        set_alias(self, name, alias, version)  # the store applies it; the answer is lost
        if str(version) == "3":
            raise _StoreFailureError

    monkeypatch.setattr(MlflowClient, "set_registered_model_alias", applied_then_lost)
    with pytest.raises(_StoreFailureError):
        _register({"test_auroc": metric}, seed=2)
    versions = client.search_model_versions("name = 'unit-model'")
    assert sorted(str(v.version) for v in versions) == ["1", "2"]
    assert str(client.get_model_version_by_alias("unit-model", CHAMPION).version) == "1"
    assert str(client.get_model_version_by_alias("unit-model", CHALLENGER).version) == "2"


@pytest.mark.usefixtures("tracking_uri")
def test_a_failure_after_a_promotion_gives_both_aliases_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = MlflowClient()
    _register({"test_auroc": 0.80}, seed=0)  # version 1, champion
    _register({"test_auroc": 0.60}, seed=1)  # version 2, challenger
    set_tag = MlflowClient.set_model_version_tag

    def last_tag_fails(self: MlflowClient, name: str, version: str, key: str, value: str) -> None:
        if key == registry.REGISTRATION_COMPLETE:  # after both aliases moved
            assert str(client.get_model_version_by_alias(name, CHALLENGER).version) == "1"
            raise _StoreFailureError
        set_tag(self, name, version, key, value)

    monkeypatch.setattr(MlflowClient, "set_model_version_tag", last_tag_fails)
    with pytest.raises(_StoreFailureError):
        _register({"test_auroc": 0.90}, seed=2)
    assert str(client.get_model_version_by_alias("unit-model", CHAMPION).version) == "1"
    assert str(client.get_model_version_by_alias("unit-model", CHALLENGER).version) == "2"


@pytest.mark.usefixtures("tracking_uri")
def test_a_failed_version_goes_even_when_its_alias_cannot_be_given_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = MlflowClient()
    _register({"test_auroc": 0.80}, seed=0)  # version 1, champion
    set_alias = MlflowClient.set_registered_model_alias

    def restore_fails(self: MlflowClient, name: str, alias: str, version: object) -> None:
        if str(version) == "1":  # giving champion back fails (say, version 1 was deleted)
            raise MlflowException("version 1 cannot be found")
        set_alias(self, name, alias, version)
        raise _StoreFailureError  # the new version's own write, then the failure

    monkeypatch.setattr(MlflowClient, "set_registered_model_alias", restore_fails)
    with pytest.raises(_StoreFailureError):
        _register({"test_auroc": 0.90}, seed=1)
    versions = client.search_model_versions("name = 'unit-model'")
    assert [str(v.version) for v in versions] == ["1"]  # version 2 and its alias are gone


@pytest.mark.usefixtures("tracking_uri")
def test_a_champion_without_a_number_is_displaced_and_a_nan_never_wins() -> None:
    first = _register_on({"test_auroc": float("nan")}, "data-A", None)
    assert first["alias"] == CHAMPION  # the first version of a name
    second = _register_on({"test_auroc": 0.70}, "data-A", None)
    assert second["alias"] == CHAMPION
    third = _register_on({"test_auroc": float("nan")}, "data-A", None)
    assert third["alias"] == CHALLENGER


def test_a_kept_registration_keeps_its_training_rows(tmp_path: Path) -> None:
    config = RegistryConfig(model_name="unit-model")
    for rows in (np.array([5, 1, 9], dtype=np.uint64), None):
        pending = PendingRegistration(
            _predictor(), SPEC, _rows(3), {}, config, {}, training_rows=rows
        )
        folder = pending.save(tmp_path / ("with" if rows is not None else "without"))
        again = PendingRegistration.load(folder)
        if rows is None:
            assert again.training_rows is None
        else:
            np.testing.assert_array_equal(again.training_rows, rows)


@pytest.mark.usefixtures("tracking_uri")
def test_a_kept_registration_rescores_the_champion_on_its_evaluation_rows(
    tmp_path: Path,
) -> None:
    evaluation = _rows(40).assign(label=np.arange(40) % 4 == 0)
    # The champion logged 0.99 on other data and trained on the first 10 of these rows.
    _register_on(
        {"test_auroc": 0.99},
        "data-A",
        None,
        training_rows=row_hashes(_predictor(0), evaluation.head(10)),
    )
    config = RegistryConfig(model_name="unit-model", compare_metric="test_auroc")
    pending = PendingRegistration(
        _predictor(1),
        SPEC,
        _rows(3),
        {"test_auroc": 0.5},
        config,
        {},
        evaluation_digest="data-B",
        training_rows=np.empty(0, np.uint64),
        evaluation_frame=evaluation,
        label_column="label",
    )
    folder = pending.save(tmp_path / "kept")
    registration = log_pending(folder, experiment="unit")
    with mlflow.start_run() as after:  # the caller's experiment is left as it was
        assert after.info.experiment_id == "0"

    tags = _tags(registration.version)
    assert tags["compared_with_champion"] == "reevaluated"  # not its logged 0.99
    assert (tags["comparison_rows"], tags["comparison_rows_excluded"]) == ("30", "10")
    unseen = np.arange(40) >= 10
    expected = score_metrics(_predictor(0), evaluation, "label", "test", unseen)["test_auroc"]
    assert float(tags["champion_test_auroc"]) == pytest.approx(expected, abs=1e-6)  # 6 places
    mine = score_metrics(_predictor(1), evaluation, "label", "test", unseen)["test_auroc"]
    assert registration.compared_metric_value == pytest.approx(mine)
    assert registration.alias == (CHAMPION if mine > expected else CHALLENGER)


def test_a_kept_registration_keeps_its_evaluation_rows_images_included(tmp_path: Path) -> None:
    images = [np.full((1, 2, 3), i, np.float32) for i in range(3)]
    # Arrays, nested lists and a missing image in one column.
    cells = [images[0], images[1].tolist(), None]
    frame = pd.DataFrame({"key": [7, 8, 9], "image": cells, "label": [0, 1, 0]})
    pending = PendingRegistration(
        _predictor(), SPEC, _rows(3), {}, RegistryConfig(), {}, evaluation_frame=frame
    )
    again = PendingRegistration.load(pending.save(tmp_path / "kept")).evaluation_frame
    assert again is not None
    assert list(again.columns) == ["key", "image", "label"]
    np.testing.assert_array_equal(again["key"], [7, 8, 9])
    for got, want in zip(again["image"][:2], images[:2], strict=True):
        np.testing.assert_array_equal(got, want)  # the (C, H, W) shape, not a flat list
    assert again["image"][2] is None


def test_a_test_split_that_cannot_be_kept_does_not_lose_the_model(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    frame = pd.DataFrame({"key": [1, 2], "odd": [{"a": 1}, "text"]})  # Parquet refuses it
    pending = PendingRegistration(
        _predictor(), SPEC, _rows(3), {}, RegistryConfig(), {}, evaluation_frame=frame
    )
    again = PendingRegistration.load(pending.save(tmp_path / "kept"))
    assert again.evaluation_frame is None  # compared on logged metrics, as before
    assert (tmp_path / "kept" / "bundle" / "bundle.json").exists()
    assert "test split could not be kept" in caplog.text


def test_a_kept_registration_is_readable_like_any_other_folder(tmp_path: Path) -> None:
    pending = PendingRegistration(_predictor(), SPEC, _rows(3), {}, RegistryConfig(), {})
    previous = os.umask(0o022)  # the common default: others may read
    try:
        folder = pending.save(tmp_path / "kept")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o755  # mkdtemp gives 0o700
    assert [p.name for p in tmp_path.iterdir()] == ["kept"]  # no staging left


def _kept(folder: Path, source_run_id: str | None = None) -> Path:
    config = RegistryConfig(model_name="unit-model")
    pending = PendingRegistration(_predictor(), SPEC, _rows(3), {}, config, {})
    pending.source_run_id = source_run_id
    return pending.save(folder)


@pytest.mark.usefixtures("tracking_uri")
def test_a_kept_model_is_registered_once_even_when_its_folder_outlived_a_crash(
    tmp_path: Path,
) -> None:
    client = MlflowClient()
    source = client.create_run(client.create_experiment("train")).info.run_id  # RUNNING
    folder = _kept(tmp_path / "unlogged" / "kept", source)
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    first = log_pending(folder, experiment="unit")
    assert first is not None and str(first.version) == "1"
    copy.rename(folder)  # as if the command had died before removing the folder
    client.update_run(source, "RUNNING")  # and before closing the train run
    assert log_pending(folder, experiment="unit") is None
    assert not folder.exists()
    assert [p.name for p in folder.parent.iterdir()] == [".pending.lock"]  # all removed
    assert client.get_run(source).info.status == "FAILED"
    versions = client.search_model_versions("name = 'unit-model'")
    assert [str(v.version) for v in versions] == ["1"]
    with pytest.raises(NothingPendingError, match="holds no pending registration"):
        log_pending(folder, experiment="unit")


@pytest.mark.usefixtures("tracking_uri")
def test_a_version_left_half_registered_by_a_crash_is_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _kept(tmp_path / "kept")
    with monkeypatch.context() as crash:  # killed after its alias, before its last tag
        real = registry._decide_alias

        def decide_then_die(*args: Any, **kwargs: Any) -> Any:
            real(*args, **kwargs)
            raise SystemExit(137)

        crash.setattr(registry, "_decide_alias", decide_then_die)
        crash.setattr(registry, "_unregister", Mock())  # a kill runs no clean-up
        with pytest.raises(SystemExit):
            log_pending(folder, experiment="unit")
    client = MlflowClient()
    (half,) = client.search_model_versions("name = 'unit-model'")
    assert "registration_complete" not in half.tags
    # Young, it may be another machine's registration in progress: left alone.
    with pytest.raises(PendingRegistrationBusyError, match="another command may be"):
        log_pending(folder, experiment="unit")
    monkeypatch.setattr(pending_module, "_IN_PROGRESS", 0.0)
    registration = log_pending(folder, experiment="unit")
    assert registration is not None and registration.alias == CHAMPION
    (version,) = client.search_model_versions("name = 'unit-model'")
    assert str(version.version) == str(registration.version) != str(half.version)
    assert version.tags["registration_complete"] == "true"


@pytest.mark.usefixtures("tracking_uri")
def test_sigterm_while_a_version_is_being_registered_leaves_no_version() -> None:
    # The interrupted-run hook ends the process by the signal; during registration
    # SIGTERM unwinds instead, so the half-made version is deleted first.
    before = signal.getsignal(signal.SIGTERM)
    real = registry._decide_alias

    def decide_then_terminated(*args: Any, **kwargs: Any) -> Any:
        os.kill(os.getpid(), signal.SIGTERM)
        return real(*args, **kwargs)

    with (
        patch.object(registry, "_decide_alias", decide_then_terminated),
        pytest.raises(SystemExit) as stopped,
    ):
        _register({"test_auroc": 0.8})
    assert stopped.value.code == 143
    assert not MlflowClient().search_model_versions("name = 'unit-model'")
    assert signal.getsignal(signal.SIGTERM) == before


@pytest.mark.usefixtures("tracking_uri")
def test_ctrl_c_after_mlflow_created_the_version_leaves_no_version() -> None:
    # MLflow creates the version, then waits for it to be ready: a signal there used
    # to leave a version that no alias or tag finished.
    real = mlflow.register_model

    def created_then_interrupted(*args: Any, **kwargs: Any) -> Any:
        real(*args, **kwargs)
        raise KeyboardInterrupt

    _register({"test_auroc": 0.7})  # a champion from before, which stays
    with (
        patch.object(mlflow, "register_model", created_then_interrupted),
        pytest.raises(KeyboardInterrupt),
    ):
        _register({"test_auroc": 0.9})
    versions = MlflowClient().search_model_versions("name = 'unit-model'")
    assert [str(v.version) for v in versions] == ["1"]
    assert MlflowClient().get_registered_model("unit-model").aliases == {"champion": 1}


@pytest.mark.usefixtures("tracking_uri")
def test_ctrl_c_between_the_new_model_and_its_first_version_leaves_no_model() -> None:
    def model_made_then_interrupted(model_uri: str, name: str, **kwargs: Any) -> Any:
        MlflowClient().create_registered_model(name)
        raise KeyboardInterrupt

    with (
        patch.object(mlflow, "register_model", model_made_then_interrupted),
        pytest.raises(KeyboardInterrupt),
    ):
        _register({"test_auroc": 0.9})
    assert MlflowClient().search_registered_models() == []


@pytest.mark.usefixtures("tracking_uri")
def test_the_pending_command_registers_every_kept_model_past_a_broken_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    broken = _kept(tmp_path / UNLOGGED / "20260101T000000Z-unit-model-aaaa")
    shutil.rmtree(broken / "bundle")  # a removal cut short, before this change
    fine = _kept(tmp_path / UNLOGGED / "20260102T000000Z-unit-model-bbbb")
    with pytest.raises(SystemExit, match=f"not registered: {broken.relative_to(tmp_path)} "):
        pending_main([])
    assert not fine.exists()
    (version,) = MlflowClient().search_model_versions("name = 'unit-model'")
    run = MlflowClient().get_run(version.run_id)
    assert run.data.tags["registered_from"].endswith(fine.name)
    assert broken.exists()


def test_the_pending_command_with_nothing_kept_succeeds_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)
    with caplog.at_level(logging.INFO):
        pending_main([])  # no SystemExit: a repeat, or cron with nothing kept, is no failure
    assert f"no pending registrations under {UNLOGGED}" in caplog.text


def test_the_pending_command_names_a_folder_with_nothing_to_register(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        pending_main([str(tmp_path / "nope")])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert "python -m aeops.serving.pending" in error
    assert f"{tmp_path / 'nope'} holds no pending registration" in error


def test_a_served_model_imports_only_what_its_requirements_list() -> None:
    # What `mlflow models serve` and spark_udf import to load a bundle, in a fresh
    # interpreter: nothing outside the model's requirements (no plots, no kedro).
    code = (
        "import sys, aeops.serving._model_code; "
        "print(sorted(m for m in ('matplotlib', 'kedro', 'great_expectations') "
        "if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
