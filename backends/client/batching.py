"""Sending a frame to a deployment in batches, one loop for every kind of deployment: over HTTP
(``backends.client.evaluation.EndpointPredictor``) or in this process (the in-memory backend's)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd


@dataclass(frozen=True)
class BatchAnswer:
    """What a deployment answered for one batch: a 0/1 label per row, the positive class's probabilities (None
    when it gave none) and the classes it names (the data's labels, negative first), if any."""

    labels: list[int]
    scores: list[float] | None
    classes: list[str] | None = None


class BatchPredictor:
    """A ``Predictor`` over a per-batch call: ``answer_batch(rows, request_number)`` is called for each batch of
    at most ``batch_size`` rows, in order; this counts the requests, times them, keeps the classes the
    deployment names and the scores of the last frame (None when any batch gave none)."""

    def __init__(self, answer_batch: Callable[[pd.DataFrame, int], BatchAnswer], *, deployment: str,
                 batch_size: int) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {batch_size}")
        self._answer_batch = answer_batch
        self.deployment = deployment
        self.batch_size = batch_size
        self.requests = 0
        self.latencies_ms: list[float] = []
        self.classes: list[str] | None = None
        self.scores: list[float] | None = None  # the positive class's probabilities of the last call

    def __call__(self, frame: pd.DataFrame) -> list[int]:
        predictions: list[int] = []
        scores: list[float] | None = []
        for start in range(0, len(frame), self.batch_size):
            batch = frame.iloc[start : start + self.batch_size]
            started = time.perf_counter()
            answer = self._answer_batch(batch, self.requests)
            self.latencies_ms.append((time.perf_counter() - started) * 1000)
            self.requests += 1
            self.classes = self.classes or answer.classes
            predictions.extend(answer.labels)
            scores = None if scores is None or answer.scores is None else scores + list(answer.scores)
        self.scores = scores
        return predictions
