"""Segmenter: probabilities, labels, fast path vs fp32, TTA, devices."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from segnet_domains import Segmenter, SegNet
from segnet_domains.devices import available_devices, probe_precision, resolve_device, resolve_precision
from tests.data.synthetic import blob_scene


def test_predict_proba_sums_to_one(tiny_checkpoint) -> None:
    seg = Segmenter.from_checkpoint(tiny_checkpoint(3, 4), device="cpu")
    p = seg.predict_proba(np.random.default_rng(0).integers(0, 255, (45, 67, 3), dtype=np.uint8))
    assert p.shape == (4, 45, 67) and p.dtype == np.float32
    np.testing.assert_allclose(p.sum(0), 1.0, atol=1e-4)
    labels = seg.predict(np.zeros((3, 45, 67), np.float32))
    assert labels.shape == (45, 67) and labels.dtype == np.uint8 and labels.max() < 4


def test_segmenter_does_not_modify_callers_model() -> None:
    model = SegNet(1, 2, features=(4, 8, 8, 8, 8))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    Segmenter(model, device="cpu")
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())


def test_auto_device_and_precision() -> None:
    assert available_devices()[-1] == "cpu"
    dev = resolve_device("auto")
    assert str(dev).split(":")[0] == available_devices()[0].split(":")[0]
    cpu = torch.device("cpu")
    assert resolve_precision(cpu, "auto") == probe_precision(cpu).dtype  # what the timed probe found faster
    assert resolve_precision(cpu, "fp32") == torch.float32
    with pytest.raises(ValueError, match="precision must be"):
        resolve_precision(cpu, "int4")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")


def test_trained_model_segments_blobs(trained_checkpoint: Path) -> None:
    seg = Segmenter.from_checkpoint(trained_checkpoint, device="cpu", precision="fp32")
    img, mask = blob_scene(np.random.default_rng(123), 96, 80)
    pred = seg.predict(img)
    dice = 2 * np.sum((pred == 1) & (mask == 1)) / (np.sum(pred == 1) + np.sum(mask == 1))
    assert dice > 0.9, dice


def test_fast_path_agrees_with_fp32_on_trained_model(trained_checkpoint: Path) -> None:
    """The default CPU path (bf16 where available, fused BN, channels-last) vs fp32 eager."""
    fast = Segmenter.from_checkpoint(trained_checkpoint, device="cpu")
    ref = Segmenter.from_checkpoint(trained_checkpoint, device="cpu", precision="fp32")
    rng = np.random.default_rng(7)
    agree, total = 0, 0
    for _ in range(6):
        img, _ = blob_scene(rng, 97, 131)
        a, b = fast.predict(img), ref.predict(img)
        agree += int((a == b).sum())
        total += a.size
    assert agree / total >= 0.995, agree / total
    assert fast.dtype == probe_precision(torch.device("cpu")).dtype
    if fast.dtype == torch.bfloat16:
        assert next(fast.model.parameters()).dtype == torch.bfloat16


def test_tta_averages_flips(trained_checkpoint: Path) -> None:
    plain = Segmenter.from_checkpoint(trained_checkpoint, device="cpu", precision="fp32")
    tta = Segmenter.from_checkpoint(trained_checkpoint, device="cpu", precision="fp32", tta=True)
    img, _ = blob_scene(np.random.default_rng(3), 64, 72)
    p_tta = tta.predict_proba(img)
    manual = (
        plain.predict_proba(img)
        + plain.predict_proba(img[:, :, ::-1].copy())[:, :, ::-1]
        + plain.predict_proba(img[:, ::-1, :].copy())[:, ::-1, :]
    ) / 3
    np.testing.assert_allclose(p_tta, manual, atol=1e-5)


def test_volume_progress_callback(tiny_checkpoint) -> None:
    seg = Segmenter.from_checkpoint(tiny_checkpoint(), device="cpu", batch_size=4)
    seen: list[tuple[int, int]] = []
    seg.predict_volume(np.random.rand(10, 16, 16), axis=0, progress=lambda d, t: seen.append((d, t)))
    assert seen == [(0, 10), (4, 10), (8, 10), (10, 10)]


@pytest.mark.gpu
def test_cuda_mixed_precision_matches_fp32(trained_checkpoint: Path) -> None:
    gpu = Segmenter.from_checkpoint(trained_checkpoint, device="cuda")
    assert gpu.device.type == "cuda" and gpu.dtype in (torch.float16, torch.bfloat16)
    ref = Segmenter.from_checkpoint(trained_checkpoint, device="cpu", precision="fp32")
    img, _ = blob_scene(np.random.default_rng(5), 128, 160)
    assert (gpu.predict(img) == ref.predict(img)).mean() >= 0.995


def test_density_head_is_not_softmaxed(tmp_path) -> None:
    """A density model's Segmenter output is the network's map / ``density_scale``; count() sums it."""
    from segnet_domains import save_checkpoint
    from segnet_domains.errors import InputError

    torch.manual_seed(0)
    model = SegNet(3, 1, features=(4, 8, 8, 8, 8), head="density").eval()
    path = save_checkpoint(
        tmp_path / "d.pt", model, class_names=["density"], density_scale=50.0, normalization={"mode": "none"}
    )
    seg = Segmenter.from_checkpoint(path, device="cpu", precision="fp32")
    image = np.random.default_rng(0).normal(size=(3, 64, 64)).astype(np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(image)[None])[0, 0].numpy() / 50.0
    np.testing.assert_allclose(seg.predict_density(image), expected, rtol=1e-4, atol=1e-5)
    assert seg.count(image) == pytest.approx(float(expected.sum(dtype=np.float64)), rel=1e-4, abs=1e-4)
    with pytest.raises(InputError, match="is a density model, not segmentation"):
        seg.predict(image)
