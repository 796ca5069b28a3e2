from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from aeops.data import (
    DataConfig,
    DataIngestionError,
    FittedScaler,
    SplitConfig,
    fit_input_scaler,
    fit_scaler,
    ingest,
    make_input_spec,
    resolve_feature_columns,
    split_frame,
)
from aeops.io import TabularDataset
from aeops.pipelines._params import ParameterError, parse_params


def test_ingest_keeps_the_id_column_first_and_does_not_touch_the_input() -> None:
    raw = pd.DataFrame({"a": [1.0, 2.0], "id": [7, 9]})
    before = raw.copy()
    frame = ingest(raw, DataConfig())
    assert list(frame.columns) == ["id", "a"]
    assert frame["id"].tolist() == [7, 9]
    pd.testing.assert_frame_equal(raw, before)


def test_decimal_columns_are_read_as_numbers_and_a_decimal_id_as_it_is(tmp_path: Path) -> None:
    # A DECIMAL column (a database export) was taken as a feature, then refused as
    # "dtype object", with its valid values as the samples.
    table = pa.table(
        {
            "id": pa.array([1, 2, 3], pa.decimal128(20, 0)),
            "x": pa.array([Decimal("0.774194"), None, Decimal("-2.5")], pa.decimal128(12, 6)),
            "y": [1.0, 2.0, 3.0],
        }
    )
    pq.write_table(table, tmp_path / "t.parquet")
    raw = TabularDataset(filepath=str(tmp_path / "t.parquet")).load()
    frame = ingest(raw, DataConfig())
    assert frame["x"].dtype == np.float64
    np.testing.assert_array_equal(frame["x"], [0.774194, np.nan, -2.5])
    assert frame["id"].tolist() == [Decimal(1), Decimal(2), Decimal(3)]  # unchanged
    assert resolve_feature_columns(frame, DataConfig()) == ["x", "y"]


def test_a_column_that_counts_the_rows_is_named_when_it_becomes_a_feature(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    # to_csv without index=False: the index came back as a feature, 'Unnamed: 0'.
    table = pd.DataFrame({"x": [0.5, 0.1, 0.9, 0.3], "n": [1, 2, 3, 4], "k": [0, 1, 3, 2]})
    table.to_csv(tmp_path / "t.csv")
    frame = ingest(pd.read_csv(tmp_path / "t.csv"), DataConfig(label_column=None))
    assert resolve_feature_columns(frame, DataConfig()) == ["Unnamed: 0", "x", "n", "k"]
    assert "Column(s) 'Unnamed: 0', 'n' count the rows (0, 1, 2, ...)" in caplog.text
    caplog.clear()
    resolve_feature_columns(frame, DataConfig(feature_columns=("x", "k")))
    assert "count the rows" not in caplog.text  # listed features are the user's choice


def test_ingest_creates_an_id_when_absent() -> None:
    frame = ingest(pd.DataFrame({"a": [1.0, 2.0, 3.0]}), DataConfig(id_column="row"))
    assert frame["row"].tolist() == [0, 1, 2]


def test_features_default_to_numeric_columns_except_id_and_label(
    caplog: pytest.LogCaptureFixture,
) -> None:
    frame = pd.DataFrame(
        {"id": [1], "x": [1.0], "n": [2], "area": ["271.2%"], "flag": [True], "y": [0]}
    )
    assert resolve_feature_columns(frame, DataConfig(label_column="y")) == ["x", "n"]
    # Left out out loud, with a value to show why, and the way to keep them.
    (record,) = [r for r in caplog.records if r.levelname == "WARNING"]
    assert "'area' ('271.2%'), 'flag' (True)" in record.getMessage()
    assert "data.feature_columns" in record.getMessage()


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
    if method != "none":
        assert scaler.scale[1] == 1.0  # the constant column: scale 1, so it scales to 0
        assert (scaled[:, 1] == 0.0).all()


def test_robust_scaler_centers_on_medians_and_falls_back_to_the_std_for_a_zero_iqr() -> None:
    # a: 0..9 (median 4.5, IQR 6.75 - 2.25); b: constant; c: one 1 among zeros (IQR 0,
    # std 0.3), whose rare value must still stand out rather than be scaled by 1.
    values = np.column_stack([np.arange(10.0), np.full(10, 5.0), np.r_[np.zeros(9), 1.0]])
    scaler = fit_scaler(values, ["a", "b", "c"], "robust")
    np.testing.assert_allclose(scaler.center, [4.5, 5.0, 0.0])
    np.testing.assert_allclose(scaler.scale, [4.5, 1.0, 0.3])
    scaled = scaler.transform(values)
    np.testing.assert_allclose(scaled[:, 0], (np.arange(10.0) - 4.5) / 4.5, rtol=1e-6)
    assert scaled[-1, 2] == pytest.approx(1 / 0.3)


def test_standard_scaler_is_fit_on_the_given_rows_only() -> None:
    train = np.array([[0.0], [2.0]])
    scaler = fit_scaler(train, ["a"], "standard")
    assert scaler.transform(np.array([[1.0], [3.0]]))[:, 0].tolist() == [0.0, 2.0]


def test_minmax_maps_train_range_to_unit_interval() -> None:
    values = np.array([[2.0], [4.0], [6.0]])
    scaled = fit_scaler(values, ["a"], "minmax").transform(values)
    assert scaled[:, 0].tolist() == [0.0, 0.5, 1.0]


def test_a_scalers_typical_value_lies_inside_the_training_data() -> None:
    values = np.array([[1.0, 10.0, 5.0], [2.0, 10.0, 5.0], [3.0, 40.0, 5.0], [10.0, 40.0, 5.0]])
    methods = ("standard", "robust", "minmax", "none")
    fitted = {m: fit_scaler(values, ["a", "b", "c"], m) for m in methods}
    typical = {m: scaler.typical for m, scaler in fitted.items()}
    np.testing.assert_allclose(typical["standard"], [4.0, 25.0, 5.0])
    np.testing.assert_allclose(typical["robust"], [2.5, 25.0, 5.0])
    # The range's middle, not its minimum; a constant column's own value.
    np.testing.assert_allclose(typical["minmax"], [5.5, 25.0, 5.0])
    np.testing.assert_allclose(typical["none"], [4.0, 25.0, 5.0])  # not the center, 0
    for scaler in fitted.values():  # kept in the bundle's JSON form
        np.testing.assert_array_equal(
            FittedScaler.from_dict(scaler.to_dict()).typical, scaler.typical
        )
    older = {k: v for k, v in fitted["minmax"].to_dict().items() if k != "middle"}
    np.testing.assert_array_equal(FittedScaler.from_dict(older).typical, [1.0, 10.0, 5.0])


def test_scaler_round_trips_through_json_form() -> None:
    scaler = fit_scaler(np.random.default_rng(0).normal(size=(20, 3)), ["a", "b", "c"], "robust")
    again = FittedScaler.from_dict(scaler.to_dict())
    values = np.ones((2, 3))
    assert np.array_equal(scaler.transform(values), again.transform(values))


def _scaler(center: list[float], scale: list[float]) -> FittedScaler:
    columns = tuple(f"f{i}" for i in range(len(center)))
    return FittedScaler("robust", columns, np.array(center), np.array(scale))


def test_float32_columns_are_scaled_in_float32_and_others_in_float64() -> None:
    rng = np.random.default_rng(0)
    scaler = _scaler([1000.1, -3.3], [0.7, 12.9])
    narrow = (rng.normal(size=5000) * 2 + 1000).astype(np.float32)
    wide = rng.normal(size=5000) * 30 - 3
    scaled = scaler.transform_columns([narrow, wide])
    center32, scale32 = scaler.center.astype(np.float32), scaler.scale.astype(np.float32)
    np.testing.assert_array_equal(scaled[:, 0], (narrow - center32[0]) / scale32[0])
    np.testing.assert_array_equal(scaled[:, 1], ((wide - -3.3) / 12.9).astype(np.float32))
    # float32 arithmetic stays within the error the float32 input itself carries:
    # half an ulp of the input (and of the center) over the scale, and the result's ulps
    exact = (narrow.astype(np.float64) - 1000.1) / 0.7
    bound = np.spacing(np.float32(1000.1)) / 0.7 + 2 * np.spacing(np.abs(scaled[:, 0]))
    assert (np.abs(scaled[:, 0] - exact) <= bound).all()
    assert (scaled[:, 0] != exact.astype(np.float32)).any()  # not the float64 path


def test_a_float32_table_gets_the_same_samples_row_or_column_major() -> None:
    values = np.random.default_rng(1).normal(size=(300, 3)).astype(np.float32)
    # The last center does not fit a float32, so that column is scaled in float64.
    scaler = _scaler([0.5, -2.0, 1e39], [3.0, 0.25, 1e38])
    by_rows = scaler.transform(np.ascontiguousarray(values))
    by_columns = scaler.transform_columns([values[:, j] for j in range(3)])
    np.testing.assert_array_equal(by_rows, by_columns)
    assert by_rows.flags.c_contiguous and np.isfinite(by_rows).all()
    in_float64 = (values[:, 2].astype(np.float64) - 1e39) / 1e38
    np.testing.assert_array_equal(by_rows[:, 2], in_float64.astype(np.float32))
    plain = _scaler([0.5, -2.0, 1.0], [3.0, 0.25, 1.0]).transform(values)
    np.testing.assert_array_equal(plain[:, :2], by_rows[:, :2])


def test_a_values_samples_do_not_depend_on_its_dtype_or_its_neighbours() -> None:
    rng = np.random.default_rng(2)
    narrow = rng.normal(size=2000).astype(np.float32)
    counts = rng.integers(0, 50_000, size=2000)
    mixed = np.where(rng.random(2000) < 0.5, rng.normal(size=2000), narrow)  # half float32
    scaler = _scaler([0.1, 4000.0, -0.3], [1.1, 900.0, 1.3])
    samples = scaler.transform_columns([narrow, counts, mixed])
    # MLflow widens a float32 column to float64 before a served model sees it.
    widened = scaler.transform_columns([narrow.astype(np.float64), counts, mixed])
    np.testing.assert_array_equal(samples, widened)
    one_by_one = [
        scaler.transform_columns([narrow[i : i + 1], counts[i : i + 1], mixed[i : i + 1]])
        for i in range(0, 2000, 7)
    ]
    np.testing.assert_array_equal(np.concatenate(one_by_one), samples[::7])
    center32, scale32 = scaler.center.astype(np.float32), scaler.scale.astype(np.float32)
    np.testing.assert_array_equal(
        samples[:, 1], (counts.astype(np.float32) - center32[1]) / scale32[1]
    )
    is_float32 = mixed.astype(np.float32) == mixed
    in_float64 = ((mixed - -0.3) / 1.3).astype(np.float32)
    in_float32 = (mixed.astype(np.float32) - center32[2]) / scale32[2]
    np.testing.assert_array_equal(samples[:, 2], np.where(is_float32, in_float32, in_float64))
    assert 0 < is_float32.sum() < 2000


def test_float32_arithmetic_gives_way_where_it_would_overflow_and_nan_stays_nan() -> None:
    scaler = _scaler([-1e38], [10.0])
    values = np.array([3e38, 0.0, np.nan, np.inf], dtype=np.float32)
    scaled = scaler.transform_columns([values])[:, 0]
    in_float64 = (values[0].astype(np.float64) + 1e38) / 10
    assert scaled[0] == np.float32(in_float64)  # (x - center) overflows float32
    assert scaled[1] == np.float32(1e37)
    assert np.isnan(scaled[2]) and scaled[3] == np.inf
    np.testing.assert_array_equal(scaler.transform(values[:, None].copy())[:, 0], scaled)


def test_transform_columns_fills_the_array_given_and_refuses_a_wrong_one() -> None:
    scaler = _scaler([0.5, 1.0], [1.0, 2.0])
    columns = [np.arange(4, dtype=np.float32), np.linspace(0, 1, 4)]
    out = np.full((4, 2), np.nan, np.float32, order="F")
    assert scaler.transform_columns(columns, out) is out
    np.testing.assert_array_equal(out, scaler.transform_columns(columns))
    with pytest.raises(ValueError, match=r"out must be a \(4, 2\) float32 array; got \(3, 2\)"):
        scaler.transform_columns(columns, np.empty((3, 2), np.float32, order="F"))


def test_unknown_scaling_method_names_the_choices() -> None:
    with pytest.raises(ValueError, match="choose one of: standard, minmax, robust, none"):
        fit_scaler(np.ones((3, 1)), ["a"], "zscore")


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ({"max_gap": 5}, r"data\.max_gap: .*'5' is not a positive duration with a unit"),
        ({"max_gap": "-5min"}, r"data\.max_gap: .*'-5min' is not a positive duration"),
        ({"max_gap": "soon"}, r"data\.max_gap: .*'soon' is not a positive duration"),
        ({"pixel_range": [16, 0]}, r"data\.pixel_range: .*must be \[low, high\] with low below"),
    ],
)
def test_series_and_image_settings_are_checked_as_parameters(
    block: dict[str, object], message: str
) -> None:
    with pytest.raises(ParameterError, match=message):
        parse_params(DataConfig, block, "data")
    assert parse_params(DataConfig, {"max_gap": "90s"}, "data").max_gap == "90s"


def test_a_gap_written_as_a_clock_time_is_a_duration() -> None:
    assert parse_params(DataConfig, {"max_gap": "00:05:00"}, "data").max_gap == "00:05:00"


def test_training_rows_that_are_all_the_same_are_refused() -> None:
    frame = pd.DataFrame({"id": range(30), "a": 1.0, "b": 2.5})
    spec = make_input_spec(frame, DataConfig())
    with pytest.raises(DataIngestionError, match=r"all 30 training rows \(every feature is"):
        fit_input_scaler(spec, frame, "robust")
    frame.loc[3, "b"] = 2.6  # one row apart is enough to learn from
    assert fit_input_scaler(spec, frame, "robust").columns == ("a", "b")


def test_bounds_for_a_column_the_listed_features_lack_are_refused_with_a_close_match() -> None:
    message = r"data\.bounds names 'bb', which is not a feature column \(did you mean 'b'\?\)"
    with pytest.raises(ValueError, match=message):
        DataConfig(feature_columns=("a", "b"), bounds={"bb": (0.0, 1.0)})
    DataConfig(feature_columns=("a", "b"), bounds={"b": (0.0, 1.0)})
    DataConfig(bounds={"bb": (0.0, 1.0)})  # features from the data: validation names it
