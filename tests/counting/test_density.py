"""Density targets and UCF-QNRF annotations: widths by hand, exact mass, the real .mat format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.io import savemat

from segnet_domains.counting.annotations import read_count, read_head_points
from segnet_domains.counting.density import density_map, kernel_sigmas
from segnet_domains.errors import InputError
from segnet_domains.synthetic.layouts import write_annotation, write_ucf_qnrf


def test_adaptive_sigmas_by_hand() -> None:
    # a 3-4-5 triangle: each head's two neighbours are at (3, 4), (3, 5), (4, 5) pixels
    points = np.array([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0]])
    assert kernel_sigmas(points) == pytest.approx([0.3 * 3.5, 0.3 * 4.0, 0.3 * 4.5])
    assert kernel_sigmas(points, k=1, sigma_min=0.0) == pytest.approx([0.9, 0.9, 1.2])  # nearest head only
    assert kernel_sigmas(points, k=1) == pytest.approx([1.0, 1.0, 1.2])  # clipped to sigma_min = 1
    assert kernel_sigmas(points, sigma=2.5) == pytest.approx([2.5] * 3)
    assert kernel_sigmas(points[:1]) == pytest.approx([4.0])  # a lone head: the fixed width
    far = np.array([[0.0, 0.0], [500.0, 0.0]])
    assert kernel_sigmas(far) == pytest.approx([30.0, 30.0])  # clipped to sigma_max


def test_density_keeps_every_head_and_windows_add_up() -> None:
    points = np.array(
        [[0.0, 0.0], [10.0, 5.0], [39.0, 29.0], [20.4, 15.6], [50.0, 5.0]]
    )  # the last is outside
    sigmas = np.array([3.0, 2.0, 4.0, 1.5, 2.0])
    dens = density_map(points, (30, 40), sigmas)
    assert dens.shape == (30, 40) and dens.dtype == np.float32
    assert dens.sum(dtype=np.float64) == pytest.approx(4.0, abs=1e-5)  # corner heads keep their full mass
    assert np.unravel_index(dens[:, 5:15].argmax(), (30, 10)) == (5, 5)  # the peak is on the head
    quarters = [
        density_map(points, (30, 40), sigmas, window=(t, c, 15, 20)) for t in (0, 15) for c in (0, 20)
    ]
    stitched = np.block([[quarters[0], quarters[1]], [quarters[2], quarters[3]]])
    np.testing.assert_allclose(stitched, dens, atol=1e-7)


def test_read_head_points_from_matlab_v5(tmp_path: Path) -> None:
    ann = write_annotation(tmp_path / "img_0001_ann.mat", np.array([[1.0, 1.0], [10.5, 20.0]]))
    assert ann.read_bytes()[:6] == b"MATLAB"  # a real v5 MAT-file header
    np.testing.assert_allclose(read_head_points(ann), [[0.0, 0.0], [9.5, 19.0]])  # 1-based -> 0-based
    assert read_count(ann) == 2.0
    savemat(tmp_path / "bad_ann.mat", {"points": np.zeros((3, 2))}, format="5")
    with pytest.raises(InputError, match=r"bad_ann.mat: has no 'annPoints' \(variables: points\)"):
        read_head_points(tmp_path / "bad_ann.mat")
    (tmp_path / "junk_ann.mat").write_bytes(b"not a mat file")
    with pytest.raises(InputError, match="not a readable MATLAB"):
        read_head_points(tmp_path / "junk_ann.mat")


def test_miniature_layout(tmp_path: Path) -> None:
    root = write_ucf_qnrf(tmp_path / "UCF-QNRF_ECCV18")
    assert sorted(p.name for p in (root / "Test").iterdir()) == [
        "img_0001.jpg",
        "img_0001_ann.mat",
        "img_0002.jpg",
        "img_0002_ann.mat",
    ]
    assert read_count(root / "Train" / "img_0003_ann.mat") == 17.0  # 5 + 4·3 heads
