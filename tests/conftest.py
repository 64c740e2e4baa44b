"""Shared fixtures: every test starts from the same RNG state and runs on one CPU thread.

Every test starts from seed 0 in torch, Python's ``random`` and NumPy, whatever ran before it,
so a failure reproduces when the test is run alone (``pytest path::test_name``).

The models in the fast suite are tiny; on a small shared machine intra-op threads cost more in
contention than they save. Tests that train (the copy task) set their own thread count.
"""

import random

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def _seed_and_one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    random.seed(0)
    np.random.seed(0)
    yield
    torch.set_num_threads(threads)
