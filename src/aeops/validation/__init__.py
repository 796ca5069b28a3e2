"""Great Expectations (1.x) validation of raw frames: tables, and images and time
series through derived columns (:func:`validation_view`).

Build a suite from config with :func:`build_suite`, run it with :func:`validate_frame` and
ship it inside a model bundle with :func:`suite_to_dict` / :func:`suite_from_dict`.
"""

from aeops.validation._report import (
    DataValidationError,
    FailedExpectation,
    ValidationReport,
    to_jsonable,
)
from aeops.validation._suite import (
    FINITE_LIMIT,
    FLOAT64_MAX,
    LABEL_VALUES,
    NUMERIC_DTYPE_NAMES,
    SuiteConfigError,
    build_suite,
    suite_for_evaluation,
    suite_for_imputation,
    suite_from_dict,
    suite_json_roles,
    suite_roles,
    suite_to_dict,
    with_image_value_count,
)
from aeops.validation._validate import expectation_text, validate_frame
from aeops.validation._views import (
    STEP_COLUMN,
    ValidationView,
    inferred_shape_problem,
    missing_column_text,
    validation_view,
)

__all__ = [
    "FINITE_LIMIT",
    "FLOAT64_MAX",
    "LABEL_VALUES",
    "NUMERIC_DTYPE_NAMES",
    "STEP_COLUMN",
    "DataValidationError",
    "FailedExpectation",
    "SuiteConfigError",
    "ValidationReport",
    "ValidationView",
    "build_suite",
    "expectation_text",
    "inferred_shape_problem",
    "missing_column_text",
    "suite_for_evaluation",
    "suite_for_imputation",
    "suite_from_dict",
    "suite_json_roles",
    "suite_roles",
    "suite_to_dict",
    "to_jsonable",
    "validate_frame",
    "validation_view",
    "with_image_value_count",
]
