"""One batching loop for every deployment (backends/client/batching.py): the HTTP predictor and the in-memory
one both go through it, so requests, latencies, classes and scores are counted the same way."""

from __future__ import annotations

import pandas as pd
import pytest

from backends.client.batching import BatchAnswer, BatchPredictor
from backends.client.evaluation import EndpointPredictor
from backends.memory.endpoints import MemoryPredictor
from backends.results import Endpoint

FRAME = pd.DataFrame({"age": [63, 37, 41, 56, 57], "sex": ["M", "F", None, "M", "F"]})


def test_each_batch_is_one_request_in_order_with_its_scores_and_classes() -> None:
    seen: list[tuple[list[int], int]] = []

    def answer(rows: pd.DataFrame, number: int) -> BatchAnswer:
        seen.append((rows["age"].tolist(), number))
        return BatchAnswer([int(a > 50) for a in rows["age"]], [a / 100 for a in rows["age"]],
                           ["Absence", "Presence"] if number == 1 else None)

    predict = BatchPredictor(answer, deployment="blue", batch_size=2)
    assert predict(FRAME) == [1, 0, 0, 1, 1]
    assert seen == [([63, 37], 0), ([41, 56], 1), ([57], 2)] and predict.requests == 3
    assert len(predict.latencies_ms) == 3 and predict.classes == ["Absence", "Presence"]
    assert predict.scores == [0.63, 0.37, 0.41, 0.56, 0.57]
    predict(FRAME.iloc[:1])  # numbering goes on across calls; scores are the last call's
    assert seen[-1] == ([63], 3) and predict.scores == [0.63]


def test_one_batch_without_scores_leaves_the_frame_without_scores() -> None:
    predict = BatchPredictor(lambda rows, n: BatchAnswer([0] * len(rows), None if n == 1 else [0.1] * len(rows)),
                             deployment="blue", batch_size=2)
    assert predict(FRAME) == [0] * 5 and predict.scores is None


def test_both_predictors_are_the_one_loop() -> None:
    assert issubclass(EndpointPredictor, BatchPredictor) and issubclass(MemoryPredictor, BatchPredictor)
    endpoint = Endpoint(name="heart", deployment="blue", scoring_uri="http://127.0.0.1:9/score", model_name="m",
                        model_version="1", key_hint="")
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        EndpointPredictor(endpoint, "key", batch_size=0)
    assert EndpointPredictor(endpoint, "key").deployment == "blue"
