"""Kind-specific validation through derived columns, with real Great Expectations."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from aeops.data import DataConfig, DataIngestionError, ingest
from aeops.embedding import CompiledSuite
from aeops.io import ImageDataset
from aeops.validation import (
    DataValidationError,
    build_suite,
    inferred_shape_problem,
    suite_for_imputation,
    suite_from_dict,
    suite_to_dict,
    validate_frame,
    validation_view,
    with_image_value_count,
)


def _training_suite(frame: pd.DataFrame, config: DataConfig) -> Any:
    """The suite the train pipeline builds from ``frame``."""
    view = validation_view(ingest(frame, config), config)
    return build_suite(
        view.frame,
        id_column=config.id_column,
        feature_columns=view.feature_columns,
        label_column=config.label_column,
        bounds=view.bounds,
        min_rows=view.min_rows,
    )


def _validate(frame: pd.DataFrame, config: DataConfig) -> None:
    suite = _training_suite(frame, config)
    view = validation_view(ingest(frame, config), config)
    validate_frame(
        view.frame, suite, source="test", id_column=config.id_column
    ).raise_for_failures()


SERIES = DataConfig(kind="timeseries", window={"length": 4, "stride": 2}, min_rows=3)


def _series(n: int = 20) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "timestamp": pd.date_range("2026-01-01", periods=n, freq="min").astype(str),
            "value": np.sin(np.arange(n)),
        }
    )


def test_a_regular_series_passes() -> None:
    _validate(_series(), SERIES)


def test_non_monotonic_timestamps_are_named_with_their_ids() -> None:
    frame = _series()
    frame.loc[[5, 6], "timestamp"] = frame.loc[[6, 5], "timestamp"].to_numpy()
    with pytest.raises(DataValidationError, match=r"timestamp_step_seconds.*sample ids \[6\]"):
        _validate(frame, SERIES)


def test_gaps_beyond_the_tolerance_fail() -> None:
    frame = _series()
    frame = frame.drop(index=range(8, 15)).reset_index(drop=True)
    config = SERIES.model_copy(update={"max_gap": "5min"})
    with pytest.raises(
        DataValidationError, match=r"timestamp_step_seconds.*values in \[1e-06, 300\]"
    ):
        _validate(frame, config)


def test_unparseable_timestamps_are_named_with_their_row_id_and_value() -> None:
    frame = _series()
    frame.loc[3, "timestamp"] = "yesterday"
    frame.insert(0, "id", range(100, 120))
    message = (
        r"'timestamp' holds 1 value\(s\) that are not time stamps, row 3 \(id=103\): 'yesterday'"
    )
    with pytest.raises(DataIngestionError, match=message):
        _validate(frame, SERIES)


def test_numbers_stored_as_text_are_numeric_time_stamps() -> None:
    frame = pd.DataFrame({"id": [1, 2, 3], "timestamp": ["60", "120", "180"], "value": 1.0})
    parsed = ingest(frame, SERIES)["timestamp"]
    assert parsed.tolist() == [60.0, 120.0, 180.0]
    frame.loc[1, "timestamp"] = "later"
    message = r"row 1 \(id=2\): 'later'; expected numbers, as the column's other values are"
    with pytest.raises(DataIngestionError, match=message):
        ingest(frame, SERIES)


def _day_first(days: range) -> pd.DataFrame:
    stamps = [f"{day:02d}/01/2026 06:00" for day in days]
    return pd.DataFrame({"id": list(days), "timestamp": stamps, "value": 1.0})


def test_day_first_dates_read_month_first_are_warned_of(caplog: pytest.LogCaptureFixture) -> None:
    # 01/01 to 12/01 fit the month-first format pandas infers from the first value;
    # 13/01 on do not, and were read day-first one by one, silently.
    with caplog.at_level("WARNING", logger="aeops.data._ingestion"):
        ingest(_day_first(range(1, 13)), SERIES)
    assert not caplog.records
    with caplog.at_level("WARNING", logger="aeops.data._ingestion"):
        ingest(_day_first(range(1, 20)), SERIES)
    assert "7 time stamp(s) are not in the format of the others (%m/%d/%Y %H:%M" in caplog.text
    assert "row 12: '13/01/2026 06:00'" in caplog.text
    assert "Set data.timestamp_format, e.g. '%d/%m/%Y %H:%M'" in caplog.text


def test_a_timestamp_format_reads_every_value_in_it() -> None:
    config = SERIES.model_copy(update={"timestamp_format": "%d/%m/%Y %H:%M"})
    parsed = ingest(_day_first(range(1, 20)), config)["timestamp"]
    assert parsed.tolist() == list(pd.date_range("2026-01-01 06:00", periods=19, freq="D"))
    frame = _day_first(range(1, 20))
    frame.loc[4, "timestamp"] = "2026-01-05 06:00"
    message = r"row 4 \(id=5\): '2026-01-05 06:00'; expected date-times in data.timestamp_format"
    with pytest.raises(DataIngestionError, match=message):
        ingest(frame, config)


def test_a_timestamp_format_reads_dates_written_as_digits() -> None:
    # An integer column was taken as numbers (seconds) whatever the format said.
    frame = pd.DataFrame({"timestamp": [20260130, 20260131, 20260201], "value": 1.0})
    config = SERIES.model_copy(update={"timestamp_format": "%Y%m%d"})
    parsed = ingest(frame, config)["timestamp"]
    assert parsed.tolist() == list(pd.date_range("2026-01-30", periods=3, freq="D"))
    assert ingest(frame, SERIES)["timestamp"].tolist() == [20260130, 20260131, 20260201]
    # As floats (a CSV with a blank cell): the blank is the one value named.
    floats = frame.assign(timestamp=[20260130.0, np.nan, 20260201.0])
    parsed = ingest(floats, config)["timestamp"]
    assert parsed.isna().tolist() == [False, True, False]
    assert parsed.iloc[2] == pd.Timestamp("2026-02-01")


def test_missing_timestamps_are_named_by_validation_with_their_ids() -> None:
    frame = _series()
    frame.loc[3, "timestamp"] = ""
    with pytest.raises(DataValidationError, match=r"timestamp_step_seconds.*null.*sample ids \[3"):
        _validate(frame, SERIES)


@pytest.mark.parametrize(
    "stamps",
    [
        # local time across a daylight-saving switch: pandas refused mixed offsets
        ["2026-03-29T00:00:00+01:00", "2026-03-29T01:00:00+01:00", "2026-03-29T03:00:00+02:00"],
        # midnight as a bare date: pandas took the first value's format for all
        ["2026-01-01", "2026-01-01 01:00:00", "2026-01-01 02:00:00"],
        ["2026-01-01 00:00:00", "2026-01-01 01:00:00Z", "2026-01-01 02:00:00"],
        ["2026-01-01 00:00:00", "2026-01-01 01:00:00.0", "2026-01-01 02:00:00"],
        ["01/01/2026 00:00", "01/01/2026 01:00", "01/01/2026 02:00"],
    ],
)
def test_timestamps_in_any_iso_mix_parse_to_their_instants(stamps: list[str]) -> None:
    frame = pd.DataFrame({"timestamp": stamps, "value": [1.0, 2.0, 3.0]})
    parsed = ingest(frame, SERIES)["timestamp"]
    assert pd.api.types.is_datetime64_any_dtype(parsed)
    assert parsed.diff().dropna().dt.total_seconds().tolist() == [3600.0, 3600.0]


def test_a_series_shorter_than_one_window_fails_on_row_count() -> None:
    config = SERIES.model_copy(update={"window": SERIES.window.model_copy(update={"length": 50})})
    with pytest.raises(DataValidationError, match="expect_table_row_count_to_be_between"):
        _validate(_series(20), config)


IMAGES = DataConfig(kind="image", image_shape=(1, 4, 4), pixel_range=(0, 16), min_rows=3)


def _images() -> pd.DataFrame:
    return pd.DataFrame({"id": [1, 2, 3], "image": [np.full((4, 4), v) for v in (0, 8, 16)]})


def test_images_of_the_expected_shape_and_range_pass() -> None:
    _validate(_images(), IMAGES)


def test_an_image_of_the_wrong_shape_is_named() -> None:
    frame = _images()
    frame.at[1, "image"] = np.zeros((4, 5))
    with pytest.raises(
        DataValidationError, match=r"image_width.*sample ids \[2\]; sample values \[5"
    ):
        _validate(frame, IMAGES)


def test_a_first_image_unlike_the_others_is_named_as_where_the_shape_came_from() -> None:
    # Validation blamed every other image, since the shape came from the first one.
    inferred = IMAGES.model_copy(update={"image_shape": None})
    frame = _images()
    assert (
        inferred_shape_problem(validation_view(ingest(frame, inferred), inferred), inferred) is None
    )
    frame.at[0, "image"] = np.zeros((5, 5))
    problem = inferred_shape_problem(validation_view(ingest(frame, inferred), inferred), inferred)
    assert problem == (
        "the image shape was inferred from the first image (id 1), which is [1, 5, 5], but 2 "
        "of 3 images are [1, 4, 4]: fix or drop that image, or set data.image_shape: [1, 4, 4]"
    )
    assert inferred_shape_problem(validation_view(ingest(frame, IMAGES), IMAGES), IMAGES) is None


def test_a_flat_image_of_the_wrong_size_is_named_by_its_value_count() -> None:
    # It was reported as null channels and height and a "width" of 17.
    frame = _images()
    frame["image"] = [cell.ravel() for cell in frame["image"]]
    frame.at[2, "image"] = np.zeros(17)
    with pytest.raises(DataValidationError) as caught:
        _validate(frame, IMAGES)
    message = str(caught.value)
    assert re.search(r"image_values.*expected values in \[16, 16\].*sample ids \[3\]", message)
    assert "sample values [17" in message
    assert not re.search(r"image_(channels|height|width)", message)


def _without_image_values(payload: dict[str, Any]) -> dict[str, Any]:
    """A suite as bundles trained before ``image_values`` hold it."""
    old = json.loads(json.dumps(payload))
    old["expectations"] = [
        e for e in old["expectations"] if e["kwargs"].get("column") != "image_values"
    ]
    roles = old["meta"]["aeops"]
    roles["feature_columns"] = [c for c in roles["feature_columns"] if c != "image_values"]
    return old


def test_an_older_bundles_image_suite_gets_the_value_count_checks() -> None:
    frame = _images().assign(image=lambda f: [cell.ravel() for cell in f["image"]])
    view = validation_view(frame, IMAGES)
    current = suite_to_dict(_training_suite(frame, IMAGES))
    old = _without_image_values(current)
    upgraded = with_image_value_count(old)
    assert sorted(map(json.dumps, upgraded["expectations"])) == sorted(
        map(json.dumps, current["expectations"])
    )
    assert set(upgraded["meta"]["aeops"]["feature_columns"]) == set(view.feature_columns)
    assert with_image_value_count(current) == current  # nothing to add
    frame.at[2, "image"] = np.zeros(17)
    bad = validation_view(frame, IMAGES).frame
    with pytest.raises(DataValidationError, match=r"image_values.*sample ids \[3\]"):
        validate_frame(bad, suite_from_dict(old), source="old.parquet").raise_for_failures()
    failures = CompiledSuite(old, {"id"}).evaluate(bad)  # the batch jobs' checks
    assert not failures.success
    assert "image_values" in " ".join(failures.reasons_of_bad_rows())


def test_pixels_out_of_range_and_non_finite_are_named() -> None:
    frame = _images()
    frame.at[0, "image"] = np.full((4, 4), 20.0)
    frame.at[2, "image"] = np.full((4, 4), np.nan)
    with pytest.raises(DataValidationError) as caught:
        _validate(frame, IMAGES)
    message = str(caught.value)
    assert "image_max" in message and "sample ids [1]" in message
    assert "sample ids [3]" in message


@pytest.mark.parametrize("shape", [(1, 4, 4), None])
def test_a_missing_image_column_is_named_as_missing(shape: tuple[int, int, int] | None) -> None:
    # Without a shape it asked for data.image_shape; with one it failed on the bounds.
    config = IMAGES.model_copy(update={"image_column": "pixels", "image_shape": shape})
    with pytest.raises(
        DataValidationError, match=r"expect_column_to_exist \(column 'pixels'\).*missing"
    ):
        _validate(_images(), config)


@pytest.mark.parametrize("shape", [(1, 4, 4), None])
def test_null_ragged_and_text_images_are_named_with_their_ids(
    tmp_path: Path, shape: tuple[int, int, int] | None
) -> None:
    # In Parquet these failed the whole load, naming neither row nor id; without a
    # configured shape, a bad first image failed the shape's inference.
    path = tmp_path / "images.parquet"
    cells = [np.full((4, 4), 8.0).tolist() for _ in range(5)]
    cells[0] = None
    cells[3] = [[1.0, 2.0], [3.0]]
    pd.DataFrame({"id": [10, 11, 12, 13, 14], "image": cells}).to_parquet(path)
    frame = ImageDataset(filepath=str(path)).load()
    frame.at[4, "image"] = np.array([["a"] * 4] * 4)
    config = IMAGES.model_copy(update={"image_shape": shape})
    with pytest.raises(DataValidationError, match=r"image_channels.*sample ids \[10, 13, 14\]"):
        _validate(frame, config)


def test_counts_in_messages_read_as_english() -> None:
    frame = pd.DataFrame({"id": [1, 1, 2, 3], "x": [np.nan, np.nan, np.nan, 1.0]})
    config = DataConfig(min_rows=3)
    with pytest.raises(DataValidationError) as caught:
        _validate(frame, config)
    message = str(caught.value)
    assert "3 null values (75.0%)" in message
    assert "2 rows with a duplicated value" in message


def _validate_for_imputation(
    training: pd.DataFrame, data: pd.DataFrame, config: DataConfig
) -> None:
    """The impute pipeline's check: the training suite, less the features' not-null checks."""
    suite = suite_to_dict(_training_suite(training, config))
    suite = suite_from_dict(suite_for_imputation(suite))
    view = validation_view(ingest(data, config), config, missing_values=True)
    validate_frame(
        view.frame, suite, source="test", id_column=config.id_column
    ).raise_for_failures()


def test_imputation_accepts_missing_pixels_but_still_checks_the_others() -> None:
    config = IMAGES.model_copy(update={"label_column": None})
    frame = _images()
    frame.at[1, "image"] = np.where(np.eye(4) > 0, np.nan, 8.0)
    frame.at[2, "image"] = np.full((4, 4), np.nan)  # nothing to check, all to fill
    _validate_for_imputation(_images(), frame, config)
    # A missing pixel used to hide the image's range (its min and max were NaN).
    frame.at[1, "image"] = np.where(np.eye(4) > 0, np.nan, 1000.0)
    with pytest.raises(DataValidationError, match=r"image_max.*sample ids \[2\]"):
        _validate_for_imputation(_images(), frame, config)


def test_imputation_still_refuses_a_missing_timestamp() -> None:
    config = SERIES.model_copy(update={"label_column": None})
    frame = _series()
    frame.loc[3, "value"] = np.nan
    _validate_for_imputation(_series(), frame, config)
    frame.loc[10, "timestamp"] = None
    with pytest.raises(
        DataValidationError,
        match=r"timestamp_step_seconds.*not_be_null|not_be_null.*timestamp_step_seconds",
    ):
        _validate_for_imputation(_series(), frame, config)
