"""Seeded train/validation/test split, stratified by label when one is given."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from aeops.data._config import SplitConfig

logger = logging.getLogger(__name__)


def split_frame(
    frame: pd.DataFrame, config: SplitConfig, label_column: str | None
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Split rows into train, validation and test.

    Labels only stratify the split, so that each part keeps the anomaly rate and the
    test set stays evaluable; they never reach the model.

    Returns:
        Three new frames in (train, validation, test) order, each in input row order.

    Raises:
        ValueError: if any part would be empty.
    """
    n_rows = len(frame)
    n_test = round(n_rows * config.test)
    n_validation = round(n_rows * config.validation)
    if min(n_test, n_validation, n_rows - n_test - n_validation) < 1:
        raise ValueError(
            f"{n_rows} rows cannot be split into train, validation ({config.validation}) and "
            f"test ({config.test}) parts that are all non-empty; supply more rows"
        )
    from sklearn.model_selection import train_test_split  # only training splits need it

    labels = _stratification_labels(frame, config, label_column)

    def split(stratify: np.ndarray | None) -> tuple[np.ndarray, ...]:
        rest, test = train_test_split(
            np.arange(n_rows), test_size=n_test, random_state=config.seed, stratify=stratify
        )
        rest_labels = None if stratify is None else stratify[rest]
        train, validation = train_test_split(
            rest, test_size=n_validation, random_state=config.seed + 1, stratify=rest_labels
        )
        return train, validation, test

    try:
        parts = split(labels)
    except ValueError as error:
        if labels is None:
            raise
        # Some class is too small for these fractions (scikit-learn needs two of each
        # class wherever it stratifies): a random split still keeps every part filled.
        logger.warning(
            "Cannot stratify the split by %r (class counts %s) with test=%s and "
            "validation=%s: %s. Splitting at random; a part may hold no anomalies.",
            label_column,
            _class_counts(labels),
            config.test,
            config.validation,
            error,
        )
        parts = split(None)
    return tuple(  # type: ignore[return-value]
        frame.iloc[np.sort(part)].reset_index(drop=True) for part in parts
    )


def _class_counts(labels: np.ndarray) -> dict[str, int]:
    values, counts = np.unique(labels, return_counts=True)
    return {str(v): int(c) for v, c in zip(values, counts, strict=True)}


def _stratification_labels(
    frame: pd.DataFrame, config: SplitConfig, label_column: str | None
) -> np.ndarray | None:
    if not config.stratify or label_column is None or label_column not in frame.columns:
        return None
    labels = frame[label_column].to_numpy()
    counts = _class_counts(labels)
    # Stratification needs every class in every part; tiny classes fall back to random.
    if min(counts.values()) < 3:
        logger.warning(
            "Not stratifying the split by %r: a class has fewer than 3 rows (%s); "
            "splitting at random, so a part may hold no anomalies.",
            label_column,
            counts,
        )
        return None
    return labels
