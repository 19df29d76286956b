"""Segmenter: probabilities, labels, fast path vs fp32, TTA, devices, big images in tiles."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from segnet_domains import InputError, Segmenter, SegNet
from segnet_domains.backends import TorchBackend
from segnet_domains.checkpoint import make_info, read_info
from segnet_domains.devices import (
    available_devices,
    probe_precision,
    resolve_device,
    resolve_precision,
)
from segnet_domains.errors import NoDropoutError
from segnet_domains.inference import (
    FIRST_MAX_MAX_CLASSES,
    _first_maximum,
    channel_first_float32,
    class_labels,
    class_mean_variance,
    class_softmax,
    drive,
    stack_images,
)
from segnet_domains.synthetic.scenes import blob_scene
from segnet_domains.tiling import TileGrid


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


# --------------------------------------------------------------------------- big images in tiles


def test_tiled_small_image_and_shapes(tiny_checkpoint) -> None:
    seg = Segmenter.from_checkpoint(tiny_checkpoint(3, 4), device="cpu", precision="fp32")
    img = np.random.default_rng(0).integers(0, 4000, (70, 45, 3)).astype(np.uint16)
    p = seg.predict_proba_tiled(img, tile_size=32, overlap=8, batch_size=3)
    assert p.shape == (4, 70, 45) and p.dtype == np.float32
    np.testing.assert_allclose(p.sum(0), 1.0, atol=1e-4)
    one = seg.predict_proba_tiled(img, tile_size=512)  # smaller than a tile: one tile
    np.testing.assert_allclose(one, seg.predict_proba(img), atol=1e-5)
    calls: list[tuple[int, int]] = []
    seg.predict_proba_tiled(img, tile_size=32, overlap=8, progress=lambda d, n: calls.append((d, n)))
    assert calls[0] == (0, 6) and calls[-1] == (6, 6)
    with pytest.raises(InputError, match=r"bad\.png"):
        seg.predict_proba_tiled(img[..., :2], source="bad.png")


def blob_mosaic(h: int, w: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """A big image made of 64×64 blob scenes (the statistics the tiny model was trained on)."""
    rng = np.random.default_rng(seed)
    img, mask = np.zeros((1, h, w), np.float32), np.zeros((h, w), np.uint8)
    for y in range(0, h, 64):
        for x in range(0, w, 64):
            i, m = blob_scene(rng, 64, 64, 1)
            hh, ww = min(64, h - y), min(64, w - x)
            img[:, y : y + hh, x : x + ww], mask[y : y + hh, x : x + ww] = i[:, :hh, :ww], m[:hh, :ww]
    return img, mask


def test_tiled_equals_whole_image_for_trained_model(trained_checkpoint: Path) -> None:
    """Default tile (512) and overlap (128): ≥ 99.5 % equal labels, no excess on the seams."""
    seg = Segmenter.from_checkpoint(trained_checkpoint, device="cpu")
    img, mask = blob_mosaic(1100, 1300)
    whole = seg.predict_proba(img).argmax(0)
    tiled = seg.predict_proba_tiled(img).argmax(0)
    assert (whole == mask).mean() > 0.8  # the model is trained: agreement is meaningful
    differ = whole != tiled
    assert 1 - differ.mean() >= 0.995
    seam = TileGrid.create(1100, 1300, 512, 128, align=seg.multiple).seam_distance() < 16
    assert seam.any() and (~seam).any()
    # disagreement is not concentrated where tiles meet
    assert differ[seam].mean() <= max(3 * differ[~seam].mean(), 0.002)


# --------------------------------------------------------------------------- every way of running the model


def _bayesian(classes: int = 3) -> Segmenter:
    torch.manual_seed(0)
    model = SegNet(1, classes, features=(8, 8, 8, 8, 8), dropout=0.5)
    return Segmenter(model, device="cpu", precision="fp32")


def test_monte_carlo_is_one_seedable_definition() -> None:
    """Mean and per-class population variance of the draws; a seed repeats them, the caller's RNG stays."""
    seg = _bayesian()
    batch = np.random.default_rng(0).random((2, 1, 40, 48), dtype=np.float32)
    torch.manual_seed(5)
    before = torch.get_rng_state()
    mean, var = seg.sample(batch, 4, seed=7)
    assert torch.equal(torch.get_rng_state(), before)  # the caller's stream is untouched
    assert mean.shape == var.shape == (2, 3, 40, 48)
    again = seg.sample(batch, 4, seed=7)
    assert torch.equal(mean, again[0]) and torch.equal(var, again[1])
    assert not torch.equal(mean, seg.sample(batch, 4, seed=8)[0])
    torch.manual_seed(7)  # the definition, written out: the same draws from the global stream
    draws = torch.stack([seg.forward(batch, mc_dropout=True) for _ in range(4)])
    torch.testing.assert_close(mean, draws.mean(0))
    torch.testing.assert_close(var, draws.var(0, unbiased=False))
    assert float(var.max()) > 0
    steps = []
    drive(seg.iter_sample(batch, 3, seed=1), lambda d, t: steps.append((d, t)))
    assert steps == [(0, 3), (1, 3), (2, 3), (3, 3)]
    image = batch[0, 0] * 1000
    m, v = seg.predict_uncertainty(image, samples=3, seed=2)
    np.testing.assert_array_equal(v, seg.predict_uncertainty(image, samples=3, seed=2)[1])
    np.testing.assert_allclose(class_mean_variance(v), v.mean(0))


def test_no_dropout_is_one_check(tiny_checkpoint) -> None:
    info = read_info(tiny_checkpoint(1, 2))
    assert not info.has_dropout and read_info(tiny_checkpoint(1, 2, name="b.pt", dropout=0.3)).has_dropout
    message = r"^m\.pt: --uncertainty needs a checkpoint trained with dropout"
    with pytest.raises(NoDropoutError, match=message) as e:
        info.require_dropout("m.pt", "--uncertainty")
    assert isinstance(e.value, InputError) and isinstance(e.value, ValueError)


def test_one_slice_equals_its_volume_slice(tiny_checkpoint) -> None:
    """The 2.5D context (edges repeated), whole-volume normalisation and the axis default of a volume run."""
    seg = Segmenter.from_checkpoint(tiny_checkpoint(3, 2, context=1, slice_axis=1), device="cpu")
    vol = np.random.default_rng(3).normal(100, 20, (20, 6, 24)).astype(np.float32)
    labels, proba = seg.predict_volume(vol, return_proba=True)  # axis 1, the checkpoint's
    for i in (0, 3, 5):
        one, p = seg.predict_slice(vol, i, return_proba=True)
        np.testing.assert_array_equal(one, labels[:, i, :])
        np.testing.assert_allclose(p, proba[:, :, i, :], atol=1e-6)
    assert seg.volume_axis() == 1 and seg.volume_axis(0) == 0
    with pytest.raises(InputError, match=r"v\.nii: slice 6 is outside 0\.\.5 along axis 1"):
        seg.predict_slice(vol, 6, source="v.nii")


def test_batch_of_frames_equals_frame_by_frame(tiny_checkpoint) -> None:
    seg = Segmenter.from_checkpoint(tiny_checkpoint(3, 4), device="cpu", precision="fp32", batch_size=2)
    frames = np.random.default_rng(1).integers(0, 255, (5, 3, 36, 44)).astype(np.uint8)
    out = seg.predict_batch(frames)
    assert isinstance(out, np.ndarray) and out.shape == (5, 36, 44) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, np.stack([seg.predict(f) for f in frames]))
    mixed = [frames[0], frames[1, :, :32, :40], frames[2]]  # sizes change: one batch per run of a size
    for got, frame in zip(seg.predict_batch(iter(mixed)), mixed, strict=True):
        np.testing.assert_array_equal(got, seg.predict(frame))
    with pytest.raises(InputError, match=r"clip\[1\]"):
        seg.predict_batch([frames[0], frames[1, :2]], source="clip")


def test_drive_reports_and_closes_a_cancelled_generator() -> None:
    closed: list[bool] = []

    def steps():
        try:
            for i in range(3):
                yield i, 3
            return "done"
        finally:
            closed.append(True)

    seen: list[tuple[int, int]] = []
    assert drive(steps(), lambda d, t: seen.append((d, t))) == "done"
    assert seen == [(0, 3), (1, 3), (2, 3)] and closed == [True]

    def stop(done: int, total: int) -> None:
        if done == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        drive(steps(), stop)
    assert closed == [True, True]  # its finally ran before the interrupt went on


def test_from_checkpoint_names_the_file(tiny_checkpoint) -> None:
    ckpt = tiny_checkpoint(1, 2)
    with pytest.raises(InputError, match=rf"^{ckpt}: unknown device 'tpu'"):
        Segmenter.from_checkpoint(ckpt, device="tpu")
    with pytest.raises(InputError, match=rf"^{ckpt}: precision must be"):
        Segmenter.from_checkpoint(ckpt, device="cpu", precision="fp8")


# ---------------------------------------------------------------------- the device-side fast path


def _assert_argmax_up_to_ties(labels: np.ndarray, proba: np.ndarray, axis: int) -> None:
    """Labels taken from the class scores are the probabilities' argmax, except where the softmax
    rounded two different scores to the same probability (then either maximum)."""
    differ = labels != proba.argmax(axis)
    assert differ.mean() < 0.01
    picked = np.take_along_axis(proba, np.expand_dims(labels.astype(np.int64), axis), axis).squeeze(axis)
    np.testing.assert_array_equal(picked[differ], proba.max(axis)[differ])


def _random_segmenter(classes: int = 5, **kwargs) -> Segmenter:
    torch.manual_seed(3)
    return Segmenter(SegNet(3, classes, features=(4, 8, 8, 8, 8)).eval(), device="cpu", **kwargs)


@pytest.mark.parametrize("tta", [False, True])
def test_labels_are_the_argmax_of_the_probabilities(tta: bool) -> None:
    """Labels-only passes (argmax of the scores, on the device) give forward()'s argmax, as uint8."""
    seg = _random_segmenter(tta=tta)
    batch = torch.from_numpy(np.random.default_rng(1).normal(size=(3, 3, 45, 67)).astype(np.float32))
    proba = seg.forward(batch)
    labels = seg.forward_labels(batch)
    assert labels.dtype == torch.uint8 and labels.shape == (3, 45, 67)
    _assert_argmax_up_to_ties(labels.numpy(), proba.numpy(), axis=1)
    labels2, proba2 = seg.forward_labels(batch, return_proba=True)
    assert torch.equal(labels2, labels) and torch.equal(proba2, proba) and proba2.is_contiguous()
    img = np.random.default_rng(2).integers(0, 255, (45, 67, 3), dtype=np.uint8)
    _assert_argmax_up_to_ties(seg.predict(img), seg.predict_proba(img), axis=0)


def test_predict_volume_prefetches_and_agrees_with_its_probabilities() -> None:
    """predict_volume's labels (no softmax taken) are the argmax of the probabilities it returns;
    stopping its generator early stops the prefetching thread."""
    import threading

    torch.manual_seed(0)
    seg = Segmenter(SegNet(1, 3, features=(4, 8, 8, 8, 8)).eval(), device="cpu", batch_size=3)
    vol = np.random.default_rng(0).normal(size=(10, 20, 24)).astype(np.float32)
    labels = seg.predict_volume(vol, axis=0)
    labels_p, proba = seg.predict_volume(vol, axis=0, return_proba=True)
    assert labels.dtype == np.uint8 and np.array_equal(labels_p, proba.argmax(0))
    _assert_argmax_up_to_ties(labels, proba, axis=0)
    before = threading.active_count()
    steps = seg.iter_volume(vol, axis=0)
    next(steps), next(steps)
    steps.close()
    assert threading.active_count() == before


def test_normalised_on_the_device_from_raw_pixels() -> None:
    """The raw pixels are normalised as tensors: the numbers of the numpy adapter, for every mode."""
    from segnet_domains.adapters import ImageAdapter

    rng = np.random.default_rng(0)
    specs = [
        {"mode": "percentile", "lower": 1, "upper": 99},
        {"mode": "scale", "scale": 255},
        {"mode": "zscore"},
        {"mode": "zscore", "mean": [1, 2, 3], "std": [2, 3, 0]},
        None,
    ]
    for dtype in (np.uint8, np.uint16, np.int16, np.float32, ">i2", np.uint32):
        img = rng.integers(0, 1000, (3, 37, 41)).astype(dtype)
        for spec in specs:
            adapter = ImageAdapter(3, spec)
            assert np.array_equal(adapter.tensor(img).numpy(), adapter(img)), (dtype, spec)
            assert np.array_equal(adapter.tensor(img, channels_last=True).numpy(), adapter(img)), (
                dtype,
                spec,
            )


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_network_gets_channels_last_input_without_a_layout_copy(
    precision: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A frame is normalised and padded straight into channels-last memory: the reference path's numbers.

    The reference normalises channel-first, pads with ``F.pad``, casts and
    lets the backend convert; the default path hands the backend a tensor
    that is already channels-last and in the network's dtype (padded into
    it: the backend's conversion is a no-op).
    """
    import torch.nn.functional as F

    from segnet_domains.adapters import ImageAdapter

    torch.manual_seed(0)
    model = SegNet(3, 4, features=[4, 8, 8, 8, 8]).eval()
    info = make_info(model, normalization={"mode": "percentile", "lower": 1, "upper": 99})
    seg = Segmenter(model, device="cpu", precision=precision, info=info)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    assert seg.input_channels_last and seg.backend.input_dtype == dtype
    frame = np.random.default_rng(1).integers(0, 256, (45, 70, 3), dtype=np.uint8)
    seen: list[torch.Tensor] = []
    network = seg.backend.model

    def spy(x: torch.Tensor) -> torch.Tensor:  # what the network itself is given
        seen.append(x)
        return network(x)

    seg.backend.model = spy  # type: ignore[assignment]
    given: list[torch.Tensor] = []
    call = TorchBackend.__call__

    def backend_spy(self: TorchBackend, x: torch.Tensor, mc_dropout: bool = False) -> torch.Tensor:
        given.append(x)  # what the backend is handed, before its own conversion
        return call(self, x, mc_dropout)

    monkeypatch.setattr(TorchBackend, "__call__", backend_spy)
    proba = seg.predict_proba(frame)
    assert seen[0].shape == (1, 3, 64, 96) and seen[0].is_contiguous(memory_format=torch.channels_last)
    assert seen[0].dtype == dtype and given[0] is seen[0]  # the backend converted nothing
    chw = torch.from_numpy(ImageAdapter(3, info.normalization)(frame))[None]
    padded = F.pad(chw, (0, 26, 0, 19), mode="reflect").to(dtype, memory_format=torch.channels_last)
    with torch.inference_mode():
        want = torch.softmax(network(padded)[..., :45, :70].float(), 1)
    np.testing.assert_array_equal(proba, want[0].numpy())


def test_compiled_segmenter_agrees_with_eager(trained_checkpoint: Path) -> None:
    """compile= runs the network through torch.compile (here its aot_eager backend: Dynamo's graph,
    no code generation, so the suite stays fast) and gives eager's numbers."""
    eager = Segmenter.from_checkpoint(trained_checkpoint, device="cpu", precision="fp32")
    compiled = Segmenter.from_checkpoint(
        trained_checkpoint, device="cpu", precision="fp32", compile="aot_eager"
    )
    img, _ = blob_scene(np.random.default_rng(5), 64, 96)
    np.testing.assert_allclose(compiled.predict_proba(img), eager.predict_proba(img), atol=1e-5)
    assert compiled.backend.compiled is not None  # it did run compiled
    assert (compiled.predict(img) == eager.predict(img)).mean() >= 0.995


def test_compile_falls_back_to_eager_with_one_warning(tiny_checkpoint) -> None:
    """An unknown backend (fails at torch.compile) and one that fails compiling (at the first
    batch) both warn once and run eager, with eager's numbers."""
    import torch._dynamo

    def no_compiler(gm, example_inputs):  # a backend whose compiler is missing on this machine
        raise OSError("no C++ compiler found")

    torch._dynamo.register_backend(no_compiler, name="segnet_test_no_compiler")
    eager = Segmenter.from_checkpoint(tiny_checkpoint(), device="cpu", precision="fp32")
    img = np.random.default_rng(0).integers(0, 255, (40, 56), dtype=np.uint8)
    for backend in ("no-such-backend", "segnet_test_no_compiler"):
        with pytest.warns(RuntimeWarning, match="torch.compile failed") as caught:
            seg = Segmenter.from_checkpoint(
                tiny_checkpoint(), device="cpu", precision="fp32", compile=backend
            )
            p = seg.predict_proba(img)
            seg.predict_proba(img)  # no second warning
        assert len([w for w in caught if "torch.compile" in str(w.message)]) == 1
        assert len(str(caught[0].message).splitlines()) == 1
        assert seg.backend.compiled is None
        np.testing.assert_array_equal(p, eager.predict_proba(img))


def test_compile_needs_the_torch_backend(tiny_checkpoint) -> None:
    with pytest.raises(ValueError, match="PyTorch backend"):
        Segmenter(SegNet(1, 2, features=(4, 8, 8, 8, 8)), backend="onnxruntime", compile=True)


@pytest.mark.gpu
def test_cuda_path_pins_and_agrees_with_cpu(trained_checkpoint: Path) -> None:
    """On CUDA: inputs cross pinned and non-blocking, inductor compiles, results match the CPU's."""
    from segnet_domains.devices import to_device, to_host

    x = torch.arange(12.0).reshape(3, 4)
    on_gpu = to_device(x, torch.device("cuda"))
    back = to_host(on_gpu * 2)
    assert back.is_pinned() and torch.equal(back, x * 2)
    ref = Segmenter.from_checkpoint(trained_checkpoint, device="cpu", precision="fp32")
    img, _ = blob_scene(np.random.default_rng(5), 128, 160)
    for compile in (False, True):
        gpu = Segmenter.from_checkpoint(trained_checkpoint, device="cuda", compile=compile)
        assert (gpu.predict(img) == ref.predict(img)).mean() >= 0.995
        vol = np.random.default_rng(1).normal(size=(6, 64, 64)).astype(np.float32)
        assert gpu.predict_volume(vol, axis=0).shape == vol.shape


def test_class_labels_are_argmax_with_first_maximum_and_label_dtype() -> None:
    """max(dim).indices (the fast CPU path) is argmax exactly: first maximum, NaN wins; uint8 or int32."""
    g = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 3, (2, 5, 17, 19), generator=g).float()  # many ties
    scores[0, 3, 4, 5] = float("nan")
    for x in (scores, scores.contiguous(memory_format=torch.channels_last), scores[..., 2:15, 1:]):
        labels = class_labels(x)
        assert labels.dtype == torch.uint8
        assert torch.equal(labels.long(), x.argmax(1))
    assert class_labels(torch.zeros(1, 300, 2, 2)).dtype == torch.int32
    assert torch.equal(class_labels(scores[0], 0).long(), scores[0].argmax(0))


@pytest.mark.parametrize("k", [3, 5, 12, 16, 17])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_few_class_labels_are_argmax_exactly(k: int, dtype: torch.dtype) -> None:
    """The first-maximum path gives argmax's labels: ties, ±inf, layouts, dim 0; NaN falls back to max."""
    g = torch.Generator().manual_seed(k)
    scores = torch.randint(0, 3, (2, k, 19, 23), generator=g).to(dtype)  # many ties
    scores[0, k - 1, 2, 3] = float("inf")
    scores[1, :, 4, 5] = -float("inf")  # every class -inf: class 0
    scores[1, 1:, 6, 7] = float("inf")  # tied +inf: the first of them
    views = (scores, scores.contiguous(memory_format=torch.channels_last)[..., 1:18, 2:], scores[:, :, ::2])
    for x in views:
        assert torch.equal(class_labels(x).long(), x.argmax(1))
        assert class_labels(x).dtype == torch.uint8
        assert torch.equal(class_labels(x[1], 0).long(), x[1].argmax(0))
        assert torch.equal(class_labels(x.movedim(1, -1), -1).long(), x.argmax(1))
        fast = _first_maximum(x, 1)
        if k <= FIRST_MAX_MAX_CLASSES and dtype == torch.float32:  # taken, not fallen back from
            assert fast is not None and torch.equal(fast.long(), x.argmax(1))
    nan = scores.clone()
    nan[0, 1, 8, 9] = float("nan")
    assert _first_maximum(nan, 1) is None
    assert torch.equal(class_labels(nan).long(), nan.argmax(1))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_first_maximum_is_argmax_exactly(dtype: torch.dtype) -> None:
    """16-bit scores, from their differences to the maximum: argmax exactly; zero, inf or NaN maxima: None."""
    g = torch.Generator().manual_seed(3)
    k = 12
    scores = torch.randint(-3, 3, (2, k, 19, 23), generator=g).to(dtype) + 0.5  # many ties, no zero maximum
    tiny = torch.finfo(dtype).smallest_normal * torch.finfo(dtype).eps  # the smallest subnormal
    scores[0, :, 1, 1] = tiny * (torch.arange(k).remainder(5) - 4).to(dtype)  # -4·tiny … 0
    scores[0, 4, 1, 1] = tiny  # the maximum, one subnormal above class 9's 0
    scores[1, : k - 1, 2, 3] = -float("inf")  # -inf beside a finite maximum
    pixel = scores[:1, :, 1:2, 1:2].contiguous()  # both layouts at once
    for x in (
        scores,
        scores.contiguous(memory_format=torch.channels_last)[..., 1:18, 2:],
        scores[:, :, ::2],
        pixel,
    ):
        before = x.clone()
        fast = _first_maximum(x, 1)
        assert fast is not None and fast.dtype == torch.uint8
        assert torch.equal(fast.long(), x.argmax(1))
        assert torch.equal(_first_maximum(x[-1], 0).long(), x[-1].argmax(0))
        assert torch.equal(x, before)  # the caller's scores are not overwritten
    for empty in (scores[:, :, :0], scores[:0]):  # no pixels, no labels
        assert class_labels(empty).shape == empty.argmax(1).shape and class_labels(empty).dtype == torch.uint8
    tracked = scores.contiguous(memory_format=torch.channels_last).requires_grad_()  # e.g. a training metric
    assert torch.equal(class_labels(tracked).long(), scores.argmax(1))
    for value in (0.0, float("inf"), float("nan")):  # a maximum of +0 would hide -0 ties; inf - inf is NaN
        x = scores.clone()
        x[0, :, 5, 6] = -1.0
        x[0, 2, 5, 6], x[0, 7, 5, 6] = -0.0 if value == 0 else value, value
        assert _first_maximum(x, 1) is None
        assert torch.equal(class_labels(x).long(), x.argmax(1)), value


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_two_class_labels_are_argmax_exactly(dtype: torch.dtype) -> None:
    """The two-class comparison gives argmax's labels: ties are 0; NaN and ±inf take the max path."""
    g = torch.Generator().manual_seed(2)
    scores = torch.randint(0, 3, (3, 2, 21, 23), generator=g).to(dtype)  # many ties
    for x in (scores, scores.contiguous(memory_format=torch.channels_last)[..., 1:20, 2:]):
        assert torch.equal(class_labels(x).long(), x.argmax(1))
        assert class_labels(x).dtype == torch.uint8
        assert torch.equal(class_labels(x[0], 0).long(), x[0].argmax(0))
    for bad in (float("nan"), float("inf"), -float("inf")):
        for cls in (0, 1):
            x = scores.clone()
            x[1, cls, 3, 4] = bad
            x[2, 1 - cls, 5, 6] = bad
            assert torch.equal(class_labels(x).long(), x.argmax(1)), (bad, cls)


def test_class_softmax_is_a_new_contiguous_softmax() -> None:
    """Same numbers as torch.softmax (float32 rounding), a new row-major tensor, the scores untouched."""
    g = torch.Generator().manual_seed(1)
    scores = (torch.randn(2, 12, 40, 48, generator=g) * 30).contiguous(memory_format=torch.channels_last)
    view = scores[..., :37, :45]  # a crop of the network's channels-last output
    before = view.clone()
    p = class_softmax(view)
    assert p.is_contiguous() and p.dtype == torch.float32 and p.shape == view.shape
    assert torch.equal(p, torch.softmax(view.contiguous(), 1))  # torch's own kernel, its numbers
    exact = torch.softmax(view.double(), 1)
    assert (p.double() - exact).abs().max() < 1e-6
    torch.testing.assert_close(p.sum(1), torch.ones(2, 37, 45), rtol=0, atol=1e-5)
    assert torch.equal(view, before)
    assert torch.isfinite(class_softmax(torch.full((1, 3, 2, 2), 1e4))).all()  # max-shifted: no overflow
    weights = torch.randn(view.shape, generator=g)  # under autograd: torch.softmax's gradient
    ours, theirs = (view.detach().clone().requires_grad_() for _ in range(2))
    (class_softmax(ours) * weights).sum().backward()
    (torch.softmax(theirs, 1) * weights).sum().backward()
    assert ours.grad is not None and theirs.grad is not None
    torch.testing.assert_close(ours.grad, theirs.grad)


def test_channel_first_float32_copies_any_layout_band_by_band(monkeypatch) -> None:
    """The row-major float32 copy: torch's values in any layout and dtype, in bands of rows for many classes.

    Channel-innermost bf16/fp16 scores with fewer classes than
    :data:`LAYOUT_CHUNK_MIN_CLASSES_LOW` are reordered whole, then cast.
    """
    import segnet_domains.inference as inference

    g = torch.Generator().manual_seed(2)
    cl = (torch.randn(3, 12, 29, 33, generator=g) * 9).contiguous(memory_format=torch.channels_last)
    monkeypatch.setattr(inference, "LAYOUT_CHUNK_BYTES", 7 * 33 * 12 * 4)  # bands of 7 rows, the last of 1
    copied: list[tuple[int, ...]] = []
    real_copy = torch.Tensor.copy_

    def spy(self: torch.Tensor, src: torch.Tensor, *args: object) -> torch.Tensor:
        copied.append(tuple(src.shape))
        return real_copy(self, src, *args)

    monkeypatch.setattr(torch.Tensor, "copy_", spy)
    many = (torch.randn(2, 40, 29, 33, generator=g) * 9).contiguous(memory_format=torch.channels_last)
    inputs = {
        "channels-last": cl,
        "cropped width (class axis still innermost)": cl[..., :31],
        "channel-first": cl.contiguous()[..., 1:, :],
        "few classes": cl[:, :4].contiguous(memory_format=torch.channels_last),
        "bf16 (reordered in bf16, then cast)": cl.to(torch.bfloat16),
        "fp16 cropped": cl[..., :31].to(torch.float16),
        "bf16, many classes": many.to(torch.bfloat16),
        "float64": cl.double(),
    }
    for name, x in inputs.items():
        copied.clear()
        out = channel_first_float32(x)
        assert out.is_contiguous() and out.dtype == torch.float32 and out.shape == x.shape, name
        assert torch.equal(out, x.float().contiguous()), name
        assert out.data_ptr() != x.data_ptr(), name
        k, innermost = x.shape[1], x.stride(1) == 1
        low = x.dtype in (torch.bfloat16, torch.float16)
        low_reordered = low and innermost and k < inference.LAYOUT_CHUNK_MIN_CLASSES_LOW
        banded = k >= inference.LAYOUT_CHUNK_MIN_CLASSES and innermost and not low_reordered
        rows = [shape[-2] for shape in copied]
        if not banded:  # a plain copy goes through .to() or .contiguous()
            assert rows == [], name
            continue
        step = inference.LAYOUT_CHUNK_BYTES // (x.shape[-1] * k * x.element_size())  # the bytes fix the rows
        bands = [min(step, 29 - top) for top in range(0, 29, step)]
        assert bands[0] < 29 and rows == bands * x.shape[0], name


def test_stack_images_keeps_channel_innermost_inputs_channels_last() -> None:
    """The batch of frames or tiles is ``torch.stack``'s, laid out channels-last when the network wants it."""
    frames = [torch.randn(5, 7, 3).permute(2, 0, 1) for _ in range(4)]  # C×H×W views of H×W×C memory
    batch = stack_images(frames, channels_last=True)
    assert torch.equal(batch, torch.stack(frames))
    assert batch.is_contiguous(memory_format=torch.channels_last)
    assert stack_images(frames).is_contiguous()  # channel-first as torch.stack gives it
