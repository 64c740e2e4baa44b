"""Random number generator states as JSON, so that a resumed run draws the same numbers.

:func:`capture_rng_state` returns plain lists and numbers (no pickle, no tensors), which is what
``trainer_state.json`` stores under ``"rng"``::

    {"torch": [5056 ints: the CPU generator's bytes],
     "python": {"version": 3, "state": [625 ints], "gauss_next": null},
     "numpy": {"bit_generator": "MT19937", "key": [624 ints], "pos": 624,
               "has_gauss": 0, "cached_gaussian": 0.0},
     "cuda": [[ints], ...]}   # one per device, only when CUDA has been initialized

The torch CPU state is a list of byte values rather than a tensor in a safetensors file: it is
5 KB, and keeping every RNG state in one JSON file keeps the checkpoint layout simple.
"""

from __future__ import annotations

import random
import warnings
from typing import Any

import numpy as np
import torch


def capture_rng_state() -> dict[str, Any]:
    """The states of torch's CPU (and CUDA) generators, Python's ``random`` and NumPy's global
    generator, as JSON-able values."""
    version, internal, gauss_next = random.getstate()
    kind, key, pos, has_gauss, cached_gaussian = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "torch": torch.get_rng_state().tolist(),
        "python": {"version": version, "state": list(internal), "gauss_next": gauss_next},
        "numpy": {
            "bit_generator": kind,
            "key": key.tolist(),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian),
        },
    }
    # Only when CUDA is in use: querying the states would otherwise initialize CUDA.
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = [s.tolist() for s in torch.cuda.get_rng_state_all()]
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Set the generators to a state from :func:`capture_rng_state`.

    Generators missing from ``state`` are left alone. CUDA states are restored when CUDA is
    available with the same number of devices; otherwise a warning says that they were not.
    """
    if "torch" in state:
        torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    if "python" in state:
        py = state["python"]
        random.setstate((py["version"], tuple(py["state"]), py["gauss_next"]))
    if "numpy" in state:
        npy = state["numpy"]
        key = np.array(npy["key"], dtype=np.uint32)
        np.random.set_state(
            (npy["bit_generator"], key, npy["pos"], npy["has_gauss"], npy["cached_gaussian"])
        )
    if "cuda" in state:
        cuda = state["cuda"]
        if torch.cuda.is_available() and torch.cuda.device_count() == len(cuda):
            torch.cuda.set_rng_state_all([torch.tensor(s, dtype=torch.uint8) for s in cuda])
        else:
            available = torch.cuda.device_count() if torch.cuda.is_available() else 0
            warnings.warn(
                f"the checkpoint has CUDA RNG states for {len(cuda)} device(s) but "
                f"{available} are available here; CUDA random numbers will differ",
                stacklevel=2,
            )
