"""Behaviour of the raw-data validation suite, run against real Great Expectations."""

from __future__ import annotations

import io
import json
import pickle
import re
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pytest

from aeops.validation import (
    DataValidationError,
    SuiteConfigError,
    ValidationReport,
    build_suite,
    suite_from_dict,
    suite_to_dict,
    validate_frame,
)

if TYPE_CHECKING:
    from great_expectations import ExpectationSuite

FEATURES = ["f0", "f1", "f2", "f3"]
SOURCE = "data/01_raw/demo.csv"


def _clean_frame(rows: int = 40) -> pd.DataFrame:
    rng = np.random.default_rng(7)
    frame = pd.DataFrame(rng.normal(size=(rows, len(FEATURES))), columns=FEATURES)
    frame.insert(0, "id", [f"r{i}" for i in range(rows)])
    frame["label"] = rng.integers(0, 2, rows)
    return frame


@pytest.fixture(scope="module")
def suite() -> ExpectationSuite:
    return build_suite(
        _clean_frame(),
        id_column="id",
        feature_columns=FEATURES,
        label_column="label",
        bounds={"f0": (-5.0, 5.0), "f1": (None, 3.0)},
        min_rows=1,
        name="demo",
    )


def _error(frame: pd.DataFrame, suite: ExpectationSuite) -> DataValidationError:
    report = validate_frame(frame, suite, source=SOURCE)
    assert not report.success
    with pytest.raises(DataValidationError) as info:
        report.raise_for_failures()
    assert info.value.report is report
    return info.value


def _lines_about(message: str, column: str) -> list[str]:
    return [line for line in message.splitlines()[1:] if f"(column {column!r})" in line]


def test_clean_frame_passes(suite: ExpectationSuite) -> None:
    report = validate_frame(_clean_frame(), suite, source=SOURCE)

    assert report.success
    assert report.failures == ()
    assert report.evaluated == len(suite.expectations)
    report.raise_for_failures()  # no exception


def test_boolean_label_and_nullable_numeric_features_pass(suite: ExpectationSuite) -> None:
    frame = _clean_frame()
    frame["label"] = frame["label"].astype(bool)
    frame["f2"] = frame["f2"].round().astype("Int64")
    frame["f3"] = frame["f3"].astype("Float32")

    report = validate_frame(frame, suite, source=SOURCE)

    assert report.success, report.message()


def test_missing_feature_column_names_the_column_once(suite: ExpectationSuite) -> None:
    frame = _clean_frame().drop(columns=["f2"])

    error = _error(frame, suite)
    message = str(error)

    assert message.startswith(f"{SOURCE} failed validation: ")
    lines = _lines_about(message, "f2")
    assert len(lines) == 1, message  # dependent GX errors are folded into one line
    assert lines[0].strip().startswith("- expect_column_to_exist")
    assert "missing" in lines[0]
    assert "'f0'" in lines[0]  # lists the columns that are present
    assert [f.expectation for f in error.report.failures] == ["expect_column_to_exist"]


def test_missing_id_column_still_reports_feature_values(suite: ExpectationSuite) -> None:
    frame = _clean_frame().drop(columns=["id"])
    frame.loc[2, "f0"] = np.nan

    error = _error(frame, suite)
    message = str(error)

    assert len(_lines_about(message, "id")) == 1
    null_lines = [line for line in _lines_about(message, "f0") if "not_be_null" in line]
    assert len(null_lines) == 1
    assert "1 null value (" in null_lines[0]


def test_text_value_in_numeric_column_names_column_dtype_and_value(suite: ExpectationSuite) -> None:
    written = _clean_frame()
    written["f3"] = written["f3"].astype(object)
    written.loc[5, "f3"] = "abc"
    frame = pd.read_csv(io.StringIO(written.to_csv(index=False)))  # as a raw CSV would load
    assert not pd.api.types.is_numeric_dtype(frame["f3"])

    error = _error(frame, suite)
    type_lines = [line for line in _lines_about(str(error), "f3") if "type_list" in line]

    assert len(type_lines) == 1, str(error)
    assert f"dtype {frame['f3'].dtype}" in type_lines[0]
    assert "'abc'" in type_lines[0]
    assert "'r5'" in type_lines[0]
    failure = next(f for f in error.report.failures if f.column == "f3")
    assert failure.expected == "numeric dtype"
    assert failure.sample_values == ["abc"]


def test_check_that_raises_inside_gx_is_reported_not_raised(suite: ExpectationSuite) -> None:
    frame = _clean_frame()
    frame["f1"] = frame["f1"].astype(str)

    report = validate_frame(frame, suite, source=SOURCE)

    # GX raised in the bounds check of a text column: the type failure, which says
    # why, counts it, rather than a second, baffling failure line.
    (failure,) = [f for f in report.failures if f.column == "f1"]
    assert failure.expectation == "expect_column_values_to_be_in_type_list"
    assert re.search(r"; \d+ dependent expectations? not evaluated$", failure.observed), failure
    # The first line counts it once, as the lines below show it.
    dependent = int(re.search(r"; (\d+) dependent", failure.observed).group(1))  # type: ignore[union-attr]
    assert report.summary().endswith(
        f"{len(report.failures)} of {report.evaluated} expectations failed, and {dependent} "
        "dependent on them not evaluated"
    )


def test_nan_and_inf_name_column_and_row_ids(suite: ExpectationSuite) -> None:
    frame = _clean_frame()
    frame.loc[3, "f2"] = np.nan
    frame.loc[8, "f2"] = np.inf
    frame.loc[9, "f3"] = -np.inf

    error = _error(frame, suite)
    message = str(error)
    by_key = {(f.expectation, f.column): f for f in error.report.failures}

    null = by_key[("expect_column_values_to_not_be_null", "f2")]
    assert null.sample_ids == ["r3"]
    assert null.sample_values == ["nan"]
    finite = by_key[("expect_column_values_to_be_between", "f2")]
    assert finite.sample_ids == ["r8"]
    assert finite.sample_values == ["inf"]
    assert by_key[("expect_column_values_to_be_between", "f3")].sample_values == ["-inf"]
    f2_lines = _lines_about(message, "f2")
    assert any("null" in line and "'r3'" in line for line in f2_lines), message
    assert any("finite" in line and "'r8'" in line and "'inf'" in line for line in f2_lines)


def test_bounds_violations_are_reported_with_ids(suite: ExpectationSuite) -> None:
    frame = _clean_frame()
    frame.loc[4, "f0"] = 9.5  # above max 5
    frame.loc[6, "f0"] = -7.0  # below min -5
    frame.loc[11, "f1"] = 4.0  # above max 3, no min
    frame.loc[12, "f1"] = -1e6  # fine: no lower bound on f1

    error = _error(frame, suite)
    by_column = {f.column: f for f in error.report.failures}

    assert set(by_column) == {"f0", "f1"}
    assert by_column["f0"].expected == "values in [-5, 5]"
    assert sorted(by_column["f0"].sample_ids) == ["r4", "r6"]
    assert sorted(by_column["f0"].sample_values) == [-7.0, 9.5]
    assert by_column["f1"].expected == "values <= 3"
    assert by_column["f1"].sample_ids == ["r11"]


def test_duplicate_ids_fail(suite: ExpectationSuite) -> None:
    frame = _clean_frame()
    frame.loc[10, "id"] = "r2"

    error = _error(frame, suite)

    (failure,) = error.report.failures
    assert failure.expectation == "expect_column_values_to_be_unique"
    assert failure.column == "id"
    assert failure.sample_values == ["r2"]
    assert "'r2'" in str(error)


def test_bad_labels_fail(suite: ExpectationSuite) -> None:
    frame = _clean_frame()
    frame["label"] = frame["label"].astype(float)
    frame.loc[1, "label"] = 2.0
    frame.loc[2, "label"] = np.nan

    error = _error(frame, suite)
    types = {f.expectation for f in error.report.failures if f.column == "label"}

    assert types == {"expect_column_values_to_be_in_set", "expect_column_values_to_not_be_null"}


def test_header_only_frame_fails_on_row_count(suite: ExpectationSuite) -> None:
    header = ",".join(["id", *FEATURES, "label"]) + "\n"
    frame = pd.read_csv(io.StringIO(header))

    error = _error(frame, suite)

    (failure,) = error.report.failures
    assert failure.expectation == "expect_table_row_count_to_be_between"
    assert failure.observed.startswith("0 rows")
    assert failure.expected == "at least 1 rows"
    assert "0 rows" in str(error).splitlines()[1]


def test_suite_round_trips_through_json(suite: ExpectationSuite) -> None:
    payload = suite_to_dict(suite)
    restored = suite_from_dict(json.loads(json.dumps(payload, allow_nan=False)))

    assert suite_to_dict(restored) == payload
    frame = _clean_frame()
    frame.loc[0, "f0"] = np.inf
    frame.loc[1, "id"] = "r0"
    frame = frame.drop(columns=["f3"])
    original = validate_frame(frame, suite, source=SOURCE)
    again = validate_frame(frame, restored, source=SOURCE)
    assert not again.success
    assert again.evaluated == original.evaluated
    assert again.failures == original.failures
    assert validate_frame(_clean_frame(), restored, source=SOURCE).success


def test_suite_from_dict_rejects_unknown_expectation(suite: ExpectationSuite) -> None:
    payload = suite_to_dict(suite)
    payload["expectations"].append({"type": "expect_nothing_real", "kwargs": {}})

    with pytest.raises(ValueError, match="expect_nothing_real"):
        suite_from_dict(payload)


def test_report_to_dict_is_strict_json(suite: ExpectationSuite) -> None:
    frame = _clean_frame()
    frame.loc[3, "f2"] = np.nan
    frame.loc[8, "f2"] = np.inf
    frame["f1"] = frame["f1"].astype(str)
    report = validate_frame(frame, suite, source=SOURCE)

    data = json.loads(json.dumps(report.to_dict(), allow_nan=False))

    assert data["success"] is False
    assert data["source"] == SOURCE
    assert data["evaluated"] == len(suite.expectations)
    assert len(data["failures"]) == len(report.failures)
    assert data["gx_result"]["success"] is False


def test_frame_is_unchanged_after_validation(suite: ExpectationSuite) -> None:
    frame = _clean_frame()
    frame.loc[3, "f2"] = np.inf
    frame.loc[4, "f3"] = np.nan
    frame.attrs["origin"] = "test"
    before = frame.copy(deep=True)

    validate_frame(frame, suite, source=SOURCE)

    pd.testing.assert_frame_equal(frame, before)
    assert list(frame.columns) == list(before.columns)
    assert frame.attrs == {"origin": "test"}


def test_float32_columns_reach_gx_as_float64_and_fail_as_float64_ones_do(
    suite: ExpectationSuite, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GX checked a float32 column's range in Python, value by value (6x slower).
    from aeops.validation import _validate

    handed: list[pd.Series] = []
    definition = _validate.whole_frame_batch_definition()

    class Spy:
        def get_batch(self, batch_parameters: dict[str, Any]) -> Any:
            handed.append(batch_parameters["dataframe"].dtypes)
            return definition.get_batch(batch_parameters=batch_parameters)

    monkeypatch.setattr(_validate, "whole_frame_batch_definition", lambda: Spy())
    frame = _clean_frame()
    frame.loc[3, "f2"] = np.inf
    frame.loc[5, "f0"] = 9.0  # above its bound, 5
    narrow = frame.astype(dict.fromkeys(FEATURES, np.float32))
    messages = [str(_error(f, suite)).split("\n", 1)[1] for f in (frame, narrow)]
    assert messages[0] == messages[1]
    assert all(dtypes[c] == np.float64 for dtypes in handed for c in FEATURES)
    assert (narrow.dtypes[FEATURES] == np.float32).all()  # the caller's frame as it was


def test_error_is_a_value_error_that_pickles(suite: ExpectationSuite) -> None:
    frame = _clean_frame()
    frame.loc[0, "f0"] = np.nan
    error = _error(frame, suite)

    clone = pickle.loads(pickle.dumps(error))

    assert isinstance(clone, ValueError)
    assert str(clone) == str(error)
    assert isinstance(clone.report, ValidationReport)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"bounds": {"nope": (0.0, 1.0)}}, "not a feature column"),
        ({"bounds": {"f0": (2.0, 1.0)}}, "inverted"),
        ({"bounds": {"f0": (float("-inf"), 1.0)}}, "finite"),
        ({"label_column": "f0"}, "also listed"),
        ({"min_rows": -1}, "min_rows"),
    ],
)
def test_build_suite_rejects_inconsistent_config(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(SuiteConfigError, match=match):
        build_suite(_clean_frame(), id_column="id", feature_columns=FEATURES, **kwargs)


def test_bounds_for_a_column_that_is_not_a_feature_name_the_features() -> None:
    message = (
        r"data\.bounds names 'f00', which is not a feature column \(did you mean 'f0'\?\); "
        r"the features are \['f0', "
    )
    with pytest.raises(SuiteConfigError, match=message):
        build_suite(
            _clean_frame(), id_column="id", feature_columns=FEATURES, bounds={"f00": (0, 1)}
        )


@pytest.mark.parametrize(
    ("expectations", "message"),
    [("abc", r"needs an 'expectations' list"), ([None], r"expectation #0 has no 'type'")],
)
def test_a_malformed_suite_payload_is_named_not_crashed_on(
    expectations: object, message: str
) -> None:
    # The image-suite upgrade read the payload first and raised AttributeError.
    payload = {"name": "bad", "expectations": expectations}
    with pytest.raises(ValueError, match=message):
        suite_from_dict(payload)
