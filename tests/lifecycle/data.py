"""A team's table through a season: generated users' rows (text categories and labels, empty cells, an ID
column, a rare positive class) that grow, drift, stay the same, get worse or arrive broken, night by night."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pandas as pd

from backends.domain.inference import infer_schema
from backends.domain.split import is_holdout, row_keys
from backends.domain.validation import check_table
from tests.tables import LABELS, TARGET, user_table

POSITIVE = LABELS[1]
POSITIVE_SHARE = 0.25  # a rare positive class; with 600 rows the gate's no-skill floor can be beaten
HOLDOUT_FRACTION = 0.1  # DataSpec's default: the worse night's generator keeps the holdout's labels true
FIRST_ROWS = 600
LABEL_NOISE = 0.4  # labels the columns explain well enough that a model beats the no-skill floor
DRIFTED_COLUMN = "Cholesterol mg/dl"


class SeasonTable:
    """The table a team exports every night to one path; ``rows`` is what it really holds so far."""

    def __init__(self, folder: Path, seed: int) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / "patients.csv"
        self.seed = seed
        self._batches = 0
        self.rows = user_table(FIRST_ROWS, seed, positive_share=POSITIVE_SHARE, label_noise=LABEL_NOISE)

    def append(self, count: int, cholesterol_shift: float = 0.0) -> None:
        """New patients arrive (``cholesterol_shift``: a lab changed its method, the column drifts)."""
        self._batches += 1
        batch = user_table(count, self.seed * 1000 + self._batches, positive_share=POSITIVE_SHARE,
                           label_noise=LABEL_NOISE, first_id=len(self.rows), cholesterol_shift=cholesterol_shift)
        self.rows = pd.concat([self.rows, batch], ignore_index=True)

    # ---- what lands at the path tonight ---------------------------------------------------------------
    def write_good(self) -> Path:
        self.rows.to_csv(self.path, index=False)
        return self.path

    def write_worse(self, share: float = 0.7, seed: int = 0) -> Path:
        """Labels mis-entered on most training rows, the holdout's rows untouched: a candidate trained on it
        is worse on the rows the gate compares. Which side a row falls on is the product's own rule (its
        content hash), so a relabelled row is kept only where it lands on the training side."""
        frame = self.rows.copy()
        flipped = frame.copy()
        flipped[TARGET] = np.where(frame[TARGET] == POSITIVE, LABELS[0], POSITIVE)
        schema = infer_schema(frame, TARGET, POSITIVE).schema
        sides = [[is_holdout(k, HOLDOUT_FRACTION) for k in row_keys(check_table(f, schema, "worse night").frame)]
                 for f in (frame, flipped)]
        chosen = np.random.default_rng(seed).random(len(frame)) < share
        # Only training rows that stay training rows once relabelled: the holdout is the one the champion knows.
        relabel = chosen & ~np.array(sides[0]) & ~np.array(sides[1])
        frame.loc[relabel, TARGET] = flipped.loc[relabel, TARGET]
        frame.to_csv(self.path, index=False)
        return self.path

    def write_truncated(self) -> Path:
        """The export stopped mid-way: the file ends inside a row, after its first four fields."""
        text = self.rows.to_csv(index=False)
        cut = text.rfind("\n", 0, int(len(text) * 0.6)) + 1
        row = text[cut:text.find("\n", cut)]
        self.path.write_text(text[:cut] + ",".join(row.split(",")[:4]))
        return self.path

    def write_with_new_column(self) -> Path:
        frame = self.rows.copy()
        frame.insert(3, "Smoker", np.random.default_rng(self.seed).choice(["Yes", "No", ""], len(frame)))
        frame.to_csv(self.path, index=False)
        return self.path

    def write_with_missing_column(self) -> Path:
        self.rows.drop(columns=["Exercise Angina"]).to_csv(self.path, index=False)
        return self.path

    def sample_records(self, count: int = 3) -> list[dict[str, object]]:
        """Rows as a client sends them: numbers as numbers, empty cells as null, no label and no ID."""
        records = []
        for row in self.rows.head(count).to_dict("records"):
            record: dict[str, object] = {}
            for column, value in row.items():
                if column in (TARGET, "Patient ID"):
                    continue
                if column in ("Age", DRIFTED_COLUMN):
                    record[column] = float(value) if value != "" else None
                else:
                    record[column] = value or None
            records.append(record)
        return records


class _Failing(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"internal error: the export service is down"
        self.send_response(500)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def failing_source() -> Iterator[str]:
    """A URL on 127.0.0.1 whose server answers every request with HTTP 500."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Failing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/exports/patients.csv"
    finally:
        server.shutdown()
        server.server_close()
