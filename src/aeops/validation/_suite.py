"""Build the raw-data expectation suite and (de)serialise it for model bundles."""

from __future__ import annotations

import difflib
import json
import logging
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd

from aeops.validation._views import IMAGE_COLUMNS, NEVER_MISSING_FACTS

IMAGE_DIMS = IMAGE_COLUMNS[:3]  # channels, height, width
IMAGE_VALUES = IMAGE_COLUMNS[3]

if TYPE_CHECKING:
    import great_expectations as gx
    from great_expectations.expectations import Expectation

logger = logging.getLogger(__name__)

#: Largest finite float64 (the finite check of bundles before FINITE_LIMIT).
FLOAT64_MAX = 1.7976931348623157e308
#: Largest finite float32: models compute in float32, so a feature beyond it (1e308)
#: would become inf. ``ExpectColumnValuesToBeBetween`` with +-this fails on +-inf too.
FINITE_LIMIT = 3.4028234663852886e38

#: dtype names accepted as "numeric" by ``ExpectColumnValuesToBeInTypeList`` on pandas.
#: The nullable extension dtypes must be spelled ``Int64Dtype`` etc.: GX resolves names via
#: ``numpy.dtype(name)`` or ``getattr(pandas, name)``, so ``"Int64"`` would match nothing.
NUMERIC_DTYPE_NAMES: tuple[str, ...] = (
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "float16",
    "float32",
    "float64",
    "Int8Dtype",
    "Int16Dtype",
    "Int32Dtype",
    "Int64Dtype",
    "UInt8Dtype",
    "UInt16Dtype",
    "UInt32Dtype",
    "UInt64Dtype",
    "Float32Dtype",
    "Float64Dtype",
)

#: Values a binary label may take; pandas' ``isin`` also matches ``True``/``False`` to these.
LABEL_VALUES: tuple[int, ...] = (0, 1)

#: Key under the suite's ``meta`` holding the column roles the suite was built for.
META_KEY = "aeops"

_SUITE_FIELDS = ("name", "expectations", "suite_parameters", "meta", "notes")
_EXPECTATION_FIELDS = ("type", "kwargs", "meta", "notes", "description", "severity")


class SuiteConfigError(ValueError):
    """The ``data`` settings a suite is built from do not fit the data (bounds for a
    column that is not a feature, a feature listed twice, ...); the message names the
    setting."""


def build_suite(
    frame: pd.DataFrame,
    *,
    id_column: str,
    feature_columns: Sequence[str],
    label_column: str | None = None,
    bounds: Mapping[str, tuple[float | None, float | None]] | None = None,
    min_rows: int = 1,
    name: str = "raw_data",
) -> gx.ExpectationSuite:
    """Build the expectation suite for a raw tabular frame from config.

    The suite contains, in this order:

    * ``ExpectTableRowCountToBeBetween(min_value=min_rows)``;
    * ``ExpectColumnToExist`` for the id column, each feature and the label (if given);
    * id: ``ExpectColumnValuesToBeUnique`` and ``ExpectColumnValuesToNotBeNull``;
    * each feature: ``ExpectColumnValuesToBeInTypeList`` (:data:`NUMERIC_DTYPE_NAMES`),
      ``ExpectColumnValuesToNotBeNull``, ``ExpectColumnValuesToBeBetween(+-FINITE_LIMIT)``
      (fails on +-inf) and, if configured, ``ExpectColumnValuesToBeBetween(min, max)``;
    * label: ``ExpectColumnValuesToNotBeNull`` and ``ExpectColumnValuesToBeInSet([0, 1])``.

    Nothing in the suite depends on the values of ``frame``, so the suite can be shipped in a
    model bundle and re-applied to later frames of the same schema. The column roles are
    recorded under ``suite.meta["aeops"]`` so :func:`validate_frame` can find the id column.

    Args:
        frame: A frame with the raw schema. Only its column names are used, to warn early
            when a configured column is absent.
        id_column: Column holding the unique row id.
        feature_columns: Numeric feature columns.
        label_column: Optional binary label column (0/1 or True/False).
        bounds: Optional ``{feature: (min, max)}``; either end may be ``None`` (open).
        min_rows: Minimum number of rows the table must have.
        name: Suite name.

    Returns:
        A new, context-free ``ExpectationSuite``.

    Raises:
        SuiteConfigError: If the configuration is inconsistent (empty or duplicated feature list,
            id/label among the features, bounds for a non-feature column, a non-finite or
            inverted bound, ``min_rows < 0``).
    """
    import great_expectations as gx
    import great_expectations.expectations as gxe

    features = list(feature_columns)
    _check_config(id_column, features, label_column, bounds, min_rows)

    configured = [id_column, *features, *([label_column] if label_column is not None else [])]
    absent = [column for column in configured if column not in frame.columns]
    if absent:
        logger.warning(
            "Building suite %r: configured columns %s are not in the frame; "
            "the frame will fail validation",
            name,
            absent,
        )

    expectations: list[Expectation] = [
        gxe.ExpectTableRowCountToBeBetween(min_value=min_rows, max_value=None),
    ]
    expectations.extend(gxe.ExpectColumnToExist(column=column) for column in configured)
    expectations.append(gxe.ExpectColumnValuesToBeUnique(column=id_column))
    expectations.append(gxe.ExpectColumnValuesToNotBeNull(column=id_column))
    for column in features:
        expectations.append(
            gxe.ExpectColumnValuesToBeInTypeList(column=column, type_list=list(NUMERIC_DTYPE_NAMES))
        )
        expectations.append(gxe.ExpectColumnValuesToNotBeNull(column=column))
        expectations.append(
            gxe.ExpectColumnValuesToBeBetween(
                column=column, min_value=-FINITE_LIMIT, max_value=FINITE_LIMIT
            )
        )
        low, high = (bounds or {}).get(column, (None, None))
        if low is not None or high is not None:
            expectations.append(
                gxe.ExpectColumnValuesToBeBetween(column=column, min_value=low, max_value=high)
            )
    if label_column is not None:
        expectations.append(gxe.ExpectColumnValuesToNotBeNull(column=label_column))
        expectations.append(
            gxe.ExpectColumnValuesToBeInSet(column=label_column, value_set=list(LABEL_VALUES))
        )

    suite = gx.ExpectationSuite(
        name=name,
        expectations=expectations,
        meta={
            META_KEY: {
                "id_column": id_column,
                "feature_columns": features,
                "label_column": label_column,
                "min_rows": min_rows,
            }
        },
    )
    logger.debug("Built suite %r with %d expectations", name, len(suite.expectations))
    return suite


def _check_config(
    id_column: str,
    features: list[str],
    label_column: str | None,
    bounds: Mapping[str, tuple[float | None, float | None]] | None,
    min_rows: int,
) -> None:
    if not features:
        raise SuiteConfigError("feature_columns must name at least one column")
    duplicated = sorted({column for column in features if features.count(column) > 1})
    if duplicated:
        raise SuiteConfigError(f"feature_columns lists columns more than once: {duplicated}")
    for role, column in (("id_column", id_column), ("label_column", label_column)):
        if column is not None and column in features:
            raise SuiteConfigError(f"{role} {column!r} is also listed in feature_columns")
    if label_column is not None and label_column == id_column:
        raise SuiteConfigError(f"label_column and id_column are both {id_column!r}")
    if min_rows < 0:
        raise SuiteConfigError(f"min_rows must be >= 0, got {min_rows}")
    for column, (low, high) in (bounds or {}).items():
        if column not in features:
            close = difflib.get_close_matches(str(column), features, n=1)
            raise SuiteConfigError(
                f"data.bounds names {column!r}, which is not a feature column"
                + (f" (did you mean {close[0]!r}?)" if close else "")
                + f"; the features are {features}"
            )
        for end in (low, high):
            if end is not None and not math.isfinite(end):
                raise SuiteConfigError(f"bounds for {column!r} must be finite or None, got {end}")
        if low is not None and high is not None and low > high:
            raise SuiteConfigError(f"bounds for {column!r} are inverted: min {low} > max {high}")


def suite_to_dict(suite: gx.ExpectationSuite) -> dict[str, Any]:
    """Serialise a suite to a JSON-able dict, e.g. to ship it inside a model bundle.

    Context-specific ids are dropped so the result can be loaded anywhere.

    Args:
        suite: The suite to serialise.

    Returns:
        A dict with ``name``, ``expectations`` (``type``/``kwargs``/``meta``/...), ``meta``
        and, where set, ``suite_parameters`` and ``notes``; ``json.dumps(...,
        allow_nan=False)`` accepts it.

    Raises:
        ValueError: If the suite holds values JSON cannot represent (e.g. NaN bounds).
    """
    raw: dict[str, Any] = dict(suite.to_json_dict())
    payload: dict[str, Any] = {key: raw[key] for key in _SUITE_FIELDS if key in raw}
    payload["expectations"] = [
        {key: value for key, value in expectation.items() if key != "id"}
        for expectation in raw.get("expectations") or []
        if isinstance(expectation, Mapping)
    ]
    try:
        text = json.dumps(payload, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise ValueError(f"suite {suite.name!r} is not JSON-serialisable: {error}") from error
    result: dict[str, Any] = json.loads(text)
    return result


def with_image_value_count(payload: Mapping[str, Any]) -> dict[str, Any]:
    """An image suite from before ``image_values`` (a bundle trained earlier), with the
    checks of each image's value count added; any other suite as it is.

    Those suites checked a flat image's value count through ``image_width``, which now
    reads a flat image as the expected shape. The count is channels x height x width,
    from the suite's own size checks, and ``image_values`` gets ``image_width``'s checks.
    """
    expectations = payload.get("expectations")
    if not isinstance(expectations, list) or not all(
        isinstance(e, Mapping) and isinstance(e.get("kwargs", {}), Mapping) for e in expectations
    ):
        return dict(payload)  # malformed: suite_from_dict says how
    columns = {(e.get("kwargs") or {}).get("column") for e in expectations}
    if IMAGE_VALUES in columns or not set(IMAGE_DIMS) <= columns:
        return dict(payload)
    sizes: dict[str, float] = {}
    for expectation in expectations:
        kwargs = expectation.get("kwargs") or {}
        low, high = kwargs.get("min_value"), kwargs.get("max_value")
        if (
            expectation.get("type") == "expect_column_values_to_be_between"
            and kwargs.get("column") in IMAGE_DIMS
            and low is not None
            and low == high
        ):
            sizes[kwargs["column"]] = float(low)
    if len(sizes) < len(IMAGE_DIMS):
        return dict(payload)
    count = math.prod(sizes.values())
    added = []
    for expectation in expectations:
        kwargs = expectation.get("kwargs") or {}
        if kwargs.get("column") != IMAGE_DIMS[-1]:
            continue
        copy = json.loads(json.dumps(expectation))
        copy["kwargs"]["column"] = IMAGE_VALUES
        if kwargs.get("min_value") == kwargs.get("max_value") == sizes[IMAGE_DIMS[-1]]:
            copy["kwargs"].update(min_value=count, max_value=count)
        added.append(copy)
    upgraded = json.loads(json.dumps(dict(payload)))
    upgraded["expectations"] = [*upgraded["expectations"], *added]
    roles = upgraded.get("meta", {}).get(META_KEY)
    if roles and IMAGE_VALUES not in roles.get("feature_columns", []):
        roles["feature_columns"] = [*roles.get("feature_columns", []), IMAGE_VALUES]
    return upgraded


def suite_from_dict(payload: Mapping[str, Any]) -> gx.ExpectationSuite:
    """Rebuild a suite from :func:`suite_to_dict` output.

    Unlike ``ExpectationSuite(**payload)``, which logs and silently drops expectations it
    cannot build, this raises on the first invalid expectation.

    Args:
        payload: A mapping as produced by :func:`suite_to_dict` (possibly via JSON).

    Returns:
        A context-free ``ExpectationSuite`` that :func:`validate_frame` accepts.

    Raises:
        ValueError: If the payload has no name, no expectation list, or an expectation GX
            cannot build.
    """
    import great_expectations as gx
    from great_expectations.expectations.expectation_configuration import (
        ExpectationConfiguration,
    )

    payload = with_image_value_count(payload)
    name = payload.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError("suite payload needs a non-empty 'name'")
    raw_expectations = payload.get("expectations")
    if not isinstance(raw_expectations, list):
        raise ValueError(f"suite payload {name!r} needs an 'expectations' list")

    expectations: list[Expectation] = []
    for index, raw in enumerate(raw_expectations):
        if not isinstance(raw, Mapping) or "type" not in raw:
            raise ValueError(f"suite {name!r}: expectation #{index} has no 'type': {raw!r}")
        fields = {key: raw[key] for key in _EXPECTATION_FIELDS if key in raw}
        fields["kwargs"] = dict(fields.get("kwargs") or {})
        try:
            expectations.append(ExpectationConfiguration(**fields).to_domain_obj())
        except Exception as error:
            raise ValueError(
                f"suite {name!r}: cannot build expectation #{index} ({raw['type']}): {error}"
            ) from error

    meta = payload.get("meta")
    return gx.ExpectationSuite(
        name=name,
        expectations=expectations,
        suite_parameters=dict(payload.get("suite_parameters") or {}),
        meta=dict(meta) if isinstance(meta, Mapping) else None,
        notes=payload.get("notes"),
    )


def suite_roles(suite: gx.ExpectationSuite) -> dict[str, Any]:
    """Return the column roles recorded by :func:`build_suite` (empty if none).

    Args:
        suite: Any suite.

    Returns:
        The ``suite.meta["aeops"]`` mapping as a dict, or ``{}``.
    """
    return suite_json_roles({"meta": suite.meta})


def suite_json_roles(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The column roles of a suite's JSON form (see :func:`suite_roles`); ``{}`` if none."""
    roles = (payload.get("meta") or {}).get(META_KEY)
    return dict(roles) if isinstance(roles, Mapping) else {}


def suite_for_evaluation(payload: Mapping[str, Any], labelled: bool) -> dict[str, Any]:
    """A copy of a suite's JSON form for re-evaluating its model on other data.

    The minimum row count goes: it guards training, not a month's sample. The label's
    expectations stay when the data has the label, and go when it has none: the
    evaluation then reports the scores and alert rate without AUROC. Everything else
    (columns present, types, ranges, unique ids) still holds.
    """
    label = suite_json_roles(payload).get("label_column")
    kept = [
        expectation
        for expectation in payload.get("expectations") or []
        if expectation.get("type") != "expect_table_row_count_to_be_between"
        and (labelled or not label or (expectation.get("kwargs") or {}).get("column") != label)
    ]
    return {**payload, "expectations": kept}


def suite_for_imputation(payload: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a suite's JSON form that accepts missing feature values.

    Imputation fills missing values, so the feature columns' not-null expectations go;
    so do the label's expectations and the minimum row count, which only training
    needs (see :func:`suite_for_evaluation`). Everything else (columns present,
    numeric types, ranges, unique ids, a series' time steps, an image's size) still
    holds: range checks skip missing values. Validate the data's
    ``validation_view(..., missing_values=True)``, whose image ranges are those of the
    present pixels.
    """
    features = set(suite_json_roles(payload).get("feature_columns") or []) - set(
        NEVER_MISSING_FACTS
    )
    unlabelled = suite_for_evaluation(payload, labelled=False)
    kept = [
        expectation
        for expectation in unlabelled["expectations"]
        if not (
            expectation.get("type") == "expect_column_values_to_not_be_null"
            and (expectation.get("kwargs") or {}).get("column") in features
        )
    ]
    return {**payload, "expectations": kept}
