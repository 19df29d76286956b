"""A tolerant fingerprint of a generated array, for tests that pin a generator's output."""

from __future__ import annotations

import numpy as np


def fingerprint(a: np.ndarray) -> list[float]:
    """Mean, standard deviation and the 1/25/50/75/99th percentiles: what a change to the model moves.

    Compared with a relative tolerance of 1e-5 rather than as a checksum of the bytes, so a
    last-bit difference in the C library's or numpy's SIMD arithmetic on another CPU does
    not fail the test, while a changed draw, tissue or contrast (changes of 1e-3 and more) does.
    """
    a = np.asarray(a, np.float64)
    return [float(a.mean()), float(a.std()), *map(float, np.percentile(a, [1, 25, 50, 75, 99]))]
