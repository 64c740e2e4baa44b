"""Shared fixtures of the building-block tests: every test starts from the same RNG state."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed_torch():
    torch.manual_seed(0)
    yield
