"""Loading the output of `embed`/`score` (``BatchJobOutputDataset``) back into pandas.

The files are laid out as the engine writes them: one Parquet file for a file input;
for a folder input, one part per input part, a ``_SUCCESS`` marker when the job is
done, quarantined rows next to their part and hidden temporaries while a part is
being written.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from kedro.io import DataCatalog, DatasetError

from aeops.embedding import SUCCESS_MARKER
from aeops.io import BatchJobOutputDataset


def embeddings(ids: list[int]) -> pd.DataFrame:
    """Rows shaped like the `embed` output: an id and a fixed-size embedding each."""
    vectors = [np.array([i, -i, 0.5 * i], dtype=np.float32) for i in ids]
    return pd.DataFrame({"id": np.array(ids, dtype=np.int64), "embedding": vectors})


def test_a_single_output_file_loads_through_the_catalog(tmp_path: Path) -> None:
    expected = embeddings([3, 1, 2])
    expected.to_parquet(tmp_path / "embeddings.parquet", index=False)
    catalog = DataCatalog.from_config(
        {
            "embeddings": {
                "type": "aeops.io.BatchJobOutputDataset",
                "filepath": str(tmp_path / "embeddings.parquet"),
            }
        }
    )
    loaded = catalog.load("embeddings")
    assert loaded["id"].tolist() == [3, 1, 2]
    np.testing.assert_array_equal(np.stack(loaded["embedding"]), np.stack(expected["embedding"]))


def test_a_finished_folder_loads_its_parts_in_order_without_quarantine_or_temps(
    tmp_path: Path,
) -> None:
    out = tmp_path / "embeddings"
    out.mkdir()
    embeddings([0, 1]).to_parquet(out / "part-0.parquet", index=False)
    embeddings([2]).to_parquet(out / "part-1.parquet", index=False)
    (out / "_quarantine").mkdir()  # where a folder's set-aside rows go
    embeddings([99]).to_parquet(out / "_quarantine" / "part-1.parquet", index=False)
    embeddings([3]).to_parquet(out / "x.quarantine.parquet", index=False)  # a part's name
    embeddings([98]).to_parquet(out / ".part-2.parquet.tmp-123", index=False)
    (out / SUCCESS_MARKER).write_text("")
    loaded = BatchJobOutputDataset(filepath=str(out)).load()
    assert loaded["id"].tolist() == [0, 1, 2, 3]
    assert loaded.index.tolist() == [0, 1, 2, 3]


def test_an_interrupted_folder_is_refused_with_what_to_do(tmp_path: Path) -> None:
    out = tmp_path / "embeddings"
    out.mkdir()
    embeddings([0, 1]).to_parquet(out / "part-0.parquet", index=False)
    with pytest.raises(DatasetError, match=r"embeddings is incomplete \(no _SUCCESS marker\)"):
        BatchJobOutputDataset(filepath=str(out)).load()


def test_a_missing_output_says_to_run_the_pipeline(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"scores\.parquet does not exist: run the pipeline"):
        BatchJobOutputDataset(filepath=str(tmp_path / "scores.parquet")).load()


def test_a_corrupted_output_is_named(tmp_path: Path) -> None:
    (tmp_path / "scores.parquet").write_bytes(b"PAR1 not parquet")
    with pytest.raises(DatasetError, match=r"scores\.parquet is not a readable Parquet file"):
        BatchJobOutputDataset(filepath=str(tmp_path / "scores.parquet")).load()
