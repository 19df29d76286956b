"""``segnet-domains export-bundle``: the bundle really runs in MONAI and writes aligned masks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from segnet_domains import Segmenter
from segnet_domains.cli import main
from segnet_domains.medical.nifti import read_volume
from segnet_domains.synthetic.brain import PHANTOM_AFFINE, phantom_brain


@pytest.mark.timeout(240)
def test_export_and_run_with_monai_bundle(trained_checkpoint: Path, tmp_path: Path) -> None:
    pytest.importorskip("fire", reason="python -m monai.bundle needs the 'fire' package")
    bundle = tmp_path / "bundle"
    assert main(["export-bundle", str(trained_checkpoint), str(bundle), "--device", "cpu"]) == 0
    for rel in ("configs/metadata.json", "configs/inference.json", "models/model.pt", "docs/README.md"):
        assert (bundle / rel).is_file(), rel
    meta = json.loads((bundle / "configs" / "metadata.json").read_text())
    assert meta["network_data_format"]["outputs"]["pred"]["channel_def"] == {"0": "background", "1": "blob"}
    assert (bundle / "models" / "model.pt").read_bytes()[:2] not in (b"PK", b"\x80\x02")  # not a pickle

    inputs = tmp_path / "in"
    inputs.mkdir()
    rng = np.random.default_rng(0)
    for i, codes_flip in enumerate((False, True)):
        vol, _ = phantom_brain(rng, (24, 28, 10))
        affine = PHANTOM_AFFINE.copy()
        if codes_flip:  # an LPS-stored volume
            vol = vol[::-1, ::-1].copy()
            affine = affine @ np.array([[-1, 0, 0, 23], [0, -1, 0, 27], [0, 0, 1, 0], [0, 0, 0, 1]])
        nib.save(nib.Nifti1Image(vol, affine), inputs / f"case{i}.nii.gz")
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "monai.bundle",
        "run",
        "--config_file",
        str(bundle / "configs" / "inference.json"),
    ]
    cmd += ["--bundle_root", str(bundle), "--input_dir", str(inputs), "--output_dir", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == ["case0_seg.nii.gz", "case1_seg.nii.gz"]
    seg = Segmenter.from_checkpoint(trained_checkpoint, device="cpu")
    for i in range(2):
        src, mask = read_volume(inputs / f"case{i}.nii.gz"), nib.load(out / f"case{i}_seg.nii.gz")
        assert mask.shape == src.data.shape and np.allclose(mask.affine, src.affine)
        expected = src.from_ras(seg.predict_volume(src.to_ras()))
        assert np.array_equal(np.asarray(mask.dataobj), expected)


def test_export_refuses_bad_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x80\x04junk")
    assert main(["export-bundle", str(bad), str(tmp_path / "b")]) == 2
    assert "pickle" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()
