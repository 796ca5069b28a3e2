"""The node that plans an embed or score job."""

from __future__ import annotations

import pandas as pd
import pytest

from aeops.embedding import BatchJobError
from aeops.pipelines._batch_nodes import plan_batch_job


def test_an_input_that_is_not_streamed_from_files_is_named() -> None:
    # An ImageDataset entry (a DataFrame) crashed with "'DataFrame' object has no
    # attribute 'parts'".
    frame = pd.DataFrame({"id": ["a.png"], "image": [[0.0] * 4]})
    with pytest.raises(BatchJobError, match=r"embed_input .* aeops\.io\.TableSourceDataset"):
        plan_batch_job(frame, {}, {}, "embeddings", "embed")  # type: ignore[arg-type]
