"""The published JSON Schemas, loaded once. The repository's schema/ folder is the source;
the wheel carries a copy under wbsync/schema/ (tests check that they agree)."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

_PACKAGE = Path(__file__).resolve().parent.parent  # wbsync/
_PACKAGED = _PACKAGE / "schema"
_REPO = _PACKAGE.parent / "schema"


def schema_dir() -> Path:
    return _PACKAGED if _PACKAGED.is_dir() else _REPO


@lru_cache(maxsize=None)
def load_schema(name: str) -> dict[str, Any]:
    """``name`` is ``manifest`` or ``lock``."""
    return json.loads((schema_dir() / f"{name}.schema.json").read_text(encoding="utf-8"))


@lru_cache(maxsize=None)
def validator(name: str) -> Any:
    # jsonschema is imported here, lazily: it costs ~50 ms that a no-op sync must not pay.
    import jsonschema

    schema = load_schema(name)
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema)
