"""Seeded train/validation/test split, stratified by label when one is given."""

from __future__ import annotations

import numpy as np
import pandas as pd

from aeops.data._config import SplitConfig


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
    positions = np.arange(n_rows)
    rest, test = train_test_split(
        positions, test_size=n_test, random_state=config.seed, stratify=labels
    )
    rest_labels = None if labels is None else labels[rest]
    train, validation = train_test_split(
        rest, test_size=n_validation, random_state=config.seed + 1, stratify=rest_labels
    )
    return tuple(  # type: ignore[return-value]
        frame.iloc[np.sort(part)].reset_index(drop=True) for part in (train, validation, test)
    )


def _stratification_labels(
    frame: pd.DataFrame, config: SplitConfig, label_column: str | None
) -> np.ndarray | None:
    if not config.stratify or label_column is None or label_column not in frame.columns:
        return None
    labels = frame[label_column].to_numpy()
    _, counts = np.unique(labels, return_counts=True)
    # Stratification needs every class in every part; tiny classes fall back to random.
    return labels if counts.min() >= 3 else None
