"""Shared pytest fixtures: conformance vectors and deterministic test keys."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

VECTORS = Path(__file__).parent / "vectors"


def load_vectors(name: str) -> Any:
    """Load one conformance vector file from tests/vectors (copied from shared/vectors)."""
    with open(VECTORS / name, encoding="utf-8") as f:
        return json.load(f)


@pytest.fixture(scope="session")
def vectors() -> Any:
    return load_vectors
