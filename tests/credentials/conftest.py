"""Fixtures for the credential tests (helpers live in cred_helpers.py)."""

from __future__ import annotations

import pytest
from cred_helpers import DAY, Net

from credentials.verify import VerificationPolicy


@pytest.fixture
def net() -> Net:
    """A sandbox network with four issuers, their keys and two policies, finalized at T0 + 100."""
    return Net()


@pytest.fixture
def policy_th() -> VerificationPolicy:
    """Thailand verifying, at least substantial, checkpoints at most a day old."""
    return VerificationPolicy("TH", min_loa="substantial", max_age_seconds=DAY)
