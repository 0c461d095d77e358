"""Files both ways: one write that readers see whole (a temporary file beside it, fsync, then os.replace), and
one read of a YAML or JSON settings file with errors that name it."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from backends.errors import ConfigurationError


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` so that a reader (or a crash) sees the old file or the new one, never a mix.
    ``mode`` applies before the rename, so a secret is never readable by others, even briefly."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)  # created 0600
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def read_yaml_or_json(path: Path, what: str, missing_hint: str = "") -> Any:
    """The content of a YAML file (JSON by its .json suffix); ConfigurationError naming ``what`` file when it
    is missing (plus ``missing_hint``) or does not parse."""
    import yaml

    if not path.is_file():
        raise ConfigurationError(f"{what} file {path} does not exist{missing_hint}")
    text = path.read_text(encoding="utf-8")
    as_json = path.suffix.lower() == ".json"
    try:
        return json.loads(text) if as_json else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ConfigurationError(f"{what} file {path} is not valid {'JSON' if as_json else 'YAML'}: {exc}") from exc
