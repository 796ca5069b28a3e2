from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from aeops.data import (
    DataConfig,
    DataIngestionError,
    FittedScaler,
    SplitConfig,
    fit_scaler,
    ingest,
    resolve_feature_columns,
    split_frame,
)


def test_ingest_keeps_the_id_column_first_and_does_not_touch_the_input() -> None:
    raw = pd.DataFrame({"a": [1.0, 2.0], "id": [7, 9]})
    before = raw.copy()
    frame = ingest(raw, DataConfig())
    assert list(frame.columns) == ["id", "a"]
    assert frame["id"].tolist() == [7, 9]
    pd.testing.assert_frame_equal(raw, before)


def test_ingest_creates_an_id_when_absent() -> None:
    frame = ingest(pd.DataFrame({"a": [1.0, 2.0, 3.0]}), DataConfig(id_column="row"))
    assert frame["row"].tolist() == [0, 1, 2]


def test_features_default_to_numeric_columns_except_id_and_label() -> None:
    frame = pd.DataFrame({"id": [1], "x": [1.0], "n": [2], "name": ["a"], "flag": [True], "y": [0]})
    assert resolve_feature_columns(frame, DataConfig(label_column="y")) == ["x", "n"]


def test_a_stray_string_does_not_drop_a_numeric_column() -> None:
    frame = pd.DataFrame({"id": [1, 2, 3], "x": ["1.5", "abc", "2"], "name": ["a", "b", "c"]})
    assert resolve_feature_columns(frame, DataConfig()) == ["x"]


def test_configured_features_win() -> None:
    frame = pd.DataFrame({"id": [1], "x": [1.0], "z": [2.0]})
    assert resolve_feature_columns(frame, DataConfig(feature_columns=("z",))) == ["z"]


def test_no_numeric_features_is_a_clear_error() -> None:
    with pytest.raises(DataIngestionError, match=r"set data\.feature_columns"):
        resolve_feature_columns(pd.DataFrame({"id": [1], "s": ["x"]}), DataConfig())


def test_label_cannot_be_a_feature() -> None:
    with pytest.raises(ValueError, match="ids and labels are never model inputs"):
        DataConfig(label_column="y", feature_columns=("x", "y"))


def test_split_is_disjoint_complete_seeded_and_stratified(tabular_frame: pd.DataFrame) -> None:
    config = SplitConfig(validation=0.2, test=0.3, seed=4)
    train, validation, test = split_frame(tabular_frame, config, "label")
    ids = [set(part["id"]) for part in (train, validation, test)]
    assert set.union(*ids) == set(tabular_frame["id"])
    assert sum(map(len, ids)) == len(tabular_frame)
    assert (len(validation), len(test)) == (40, 60)
    rate = tabular_frame["label"].mean()
    for part in (train, validation, test):
        assert part["label"].mean() == pytest.approx(rate, abs=0.03)
    again = split_frame(tabular_frame, config, "label")
    pd.testing.assert_frame_equal(again[2], test)
    other = split_frame(tabular_frame, SplitConfig(seed=5), "label")
    assert set(other[2]["id"]) != set(test["id"])


@pytest.mark.parametrize(("n_anomalies", "reason"), [(3, "Cannot stratify"), (2, "fewer than 3")])
def test_a_class_too_small_to_stratify_splits_at_random_and_says_so(
    n_anomalies: int, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    labels = np.zeros(100, dtype=int)
    labels[:n_anomalies] = 1
    frame = pd.DataFrame({"x": np.arange(100.0), "label": labels})
    config = SplitConfig(test=0.6, validation=0.1)  # leaves about one anomaly to split again
    with caplog.at_level("WARNING", logger="aeops.data._split"):
        parts = split_frame(frame, config, "label")
    assert sorted(np.concatenate([p["x"].to_numpy() for p in parts])) == list(frame["x"])
    assert [len(p) for p in parts] == [30, 10, 60]
    assert reason in caplog.text and "'label'" in caplog.text


def test_split_of_too_few_rows_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="cannot be split"):
        split_frame(pd.DataFrame({"x": [1.0, 2.0]}), SplitConfig(), None)


@pytest.mark.parametrize("method", ["standard", "minmax", "robust", "none"])
def test_scalers_keep_constant_columns_finite(method: str) -> None:
    values = np.column_stack([np.arange(10.0), np.full(10, 5.0), np.r_[np.zeros(9), 1.0]])
    scaler = fit_scaler(values, ["a", "b", "c"], method)
    scaled = scaler.transform(values)
    assert np.isfinite(scaled).all()
    assert scaled.dtype == np.float32


def test_standard_scaler_is_fit_on_the_given_rows_only() -> None:
    train = np.array([[0.0], [2.0]])
    scaler = fit_scaler(train, ["a"], "standard")
    assert scaler.transform(np.array([[1.0], [3.0]]))[:, 0].tolist() == [0.0, 2.0]


def test_minmax_maps_train_range_to_unit_interval() -> None:
    values = np.array([[2.0], [4.0], [6.0]])
    scaled = fit_scaler(values, ["a"], "minmax").transform(values)
    assert scaled[:, 0].tolist() == [0.0, 0.5, 1.0]


def test_scaler_round_trips_through_json_form() -> None:
    scaler = fit_scaler(np.random.default_rng(0).normal(size=(20, 3)), ["a", "b", "c"], "robust")
    again = FittedScaler.from_dict(scaler.to_dict())
    values = np.ones((2, 3))
    assert np.array_equal(scaler.transform(values), again.transform(values))


def test_unknown_scaling_method_names_the_choices() -> None:
    with pytest.raises(ValueError, match="choose one of: standard, minmax, robust, none"):
        fit_scaler(np.ones((3, 1)), ["a"], "zscore")
