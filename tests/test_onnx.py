"""ONNX export and the onnxruntime backend: same labels and probabilities as PyTorch fp32, any size."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from segnet_domains import CheckpointError, InputError, Segmenter, load_checkpoint, read_info
from segnet_domains.backends import onnx_providers
from segnet_domains.onnx_export import export_model_proto, export_onnx
from segnet_domains.synthetic.scenes import blob_scene

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

SIZES = [(37, 53), (100, 131), (64, 64)]


@pytest.fixture(scope="module")
def exported(trained_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_onnx(trained_checkpoint, tmp_path_factory.mktemp("onnx") / "blobs.onnx")


@pytest.fixture(scope="module")
def reference(trained_checkpoint: Path) -> Segmenter:
    return Segmenter.from_checkpoint(trained_checkpoint, device="cpu", precision="fp32")


def _agreement(a: np.ndarray, b: np.ndarray) -> float:
    return float((a == b).mean())


def test_export_passes_checker_with_dynamic_shapes_and_metadata(exported: Path, trained_checkpoint) -> None:
    proto = onnx.load(str(exported))
    onnx.checker.check_model(proto, full_check=True)
    (inp,), (out,) = proto.graph.input, proto.graph.output
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    assert (inp.name, dims) == ("image", ["batch", 1, "height", "width"])
    assert [d.dim_param or d.dim_value for d in out.type.tensor_type.shape.dim] == [
        "batch",
        2,
        "height",
        "width",
    ]
    ops = {n.op_type for n in proto.graph.node}
    assert {"MaxPool", "ScatterElements"} <= ops and "MaxUnpool" not in ops  # our scatter unpooling
    props = {p.key: p.value for p in proto.metadata_props}
    info = read_info(trained_checkpoint)
    assert json.loads(props["class_names"]) == ["background", "blob"] == info.class_names
    assert json.loads(props["class_colors"]) == info.class_colors
    assert json.loads(props["normalization"]) == info.normalization
    assert props["pad_multiple"] == "32" and props["precision"] == "fp32"
    # the whole checkpoint header round-trips: read_info reads the .onnx like the checkpoint
    assert read_info(exported).to_dict() == info.to_dict()


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_onnx_agrees_with_pytorch_fp32(exported: Path, reference: Segmenter, size) -> None:
    seg = Segmenter.from_checkpoint(exported, device="cpu")
    assert seg.backend.name == "onnxruntime" and seg.backend.providers == ["CPUExecutionProvider"]
    rng = np.random.default_rng(sum(size))
    for _ in range(2):
        img, mask = blob_scene(rng, *size)
        p_ref, p = reference.predict_proba(img), seg.predict_proba(img)
        assert p.shape == (2, *size) and p.dtype == np.float32
        assert np.abs(p - p_ref).max() < 1e-3
        labels = seg.predict(img)
        assert _agreement(labels, reference.predict(img)) >= 0.999
        assert _agreement(labels, mask) > 0.9  # a trained model: the answer is not trivial


def test_graph_itself_restores_odd_sizes_and_batches(exported: Path, trained_checkpoint: Path) -> None:
    """No padding in front: the exported pooling rounds up and the unpooling restores each exact size."""
    model = load_checkpoint(trained_checkpoint).model.eval()
    session = ort.InferenceSession(str(exported), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    for shape in [(3, 1, 37, 53), (2, 1, 33, 97), (1, 1, 100, 131)]:
        x = rng.normal(0.4, 0.2, shape).astype(np.float32)
        (logits,) = session.run(None, {"image": x})
        with torch.inference_mode():
            ref = model(torch.from_numpy(x)).numpy()
        assert logits.shape == ref.shape == (shape[0], 2, *shape[2:])
        np.testing.assert_allclose(logits, ref, atol=1e-3 * max(1.0, np.abs(ref).max()))


def test_volume_in_batches_matches_pytorch(exported: Path, reference: Segmenter) -> None:
    seg = Segmenter.from_checkpoint(exported, device="cpu", batch_size=4)
    rng = np.random.default_rng(5)
    vol = np.stack([blob_scene(rng, 45, 39)[0][0] for _ in range(9)], axis=-1)
    labels, proba = seg.predict_volume(vol, axis=2, return_proba=True)
    ref_labels, ref_proba = reference.predict_volume(vol, axis=2, return_proba=True)
    assert labels.shape == vol.shape and proba.shape == (2, *vol.shape)
    assert _agreement(labels, ref_labels) >= 0.999
    assert np.abs(proba - ref_proba).max() < 1e-3


def test_backend_flag_exports_a_checkpoint_in_memory(exported: Path, trained_checkpoint: Path) -> None:
    via_flag = Segmenter.from_checkpoint(trained_checkpoint, device="cpu", backend="onnxruntime", tta=True)
    from_file = Segmenter.from_checkpoint(exported, device="cpu", tta=True)
    assert via_flag.backend.name == "onnxruntime" and via_flag.info.class_names == ["background", "blob"]
    img, _ = blob_scene(np.random.default_rng(1), 61, 75)
    np.testing.assert_allclose(via_flag.predict_proba(img), from_file.predict_proba(img), atol=1e-5)
    with pytest.raises(AttributeError, match="no PyTorch model"):
        _ = via_flag.model


def test_multiclass_multiband_probabilities(tiny_checkpoint, tmp_path: Path) -> None:
    ckpt = tiny_checkpoint(4, 5, class_names=["bg", "a", "b", "c", "d"])
    ref = Segmenter.from_checkpoint(ckpt, device="cpu", precision="fp32")
    seg = Segmenter.from_checkpoint(export_onnx(ckpt, tmp_path / "m.onnx"), device="cpu")
    img = np.random.default_rng(2).integers(0, 4000, (53, 37, 4), dtype=np.uint16)
    np.testing.assert_allclose(seg.predict_proba(img), ref.predict_proba(img), atol=1e-3)


def test_fp16_export(trained_checkpoint: Path, reference: Segmenter, tmp_path: Path) -> None:
    path = export_onnx(trained_checkpoint, tmp_path / "half.onnx", fp16=True)
    proto = onnx.load(str(path))
    kinds = {init.data_type for init in proto.graph.initializer if len(init.dims) == 4}  # conv weights
    assert kinds == {onnx.TensorProto.FLOAT16}
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # I/O stays fp32
    seg = Segmenter.from_checkpoint(path, device="cpu")
    assert seg.dtype == torch.float16
    img, _ = blob_scene(np.random.default_rng(4), 100, 131)
    assert _agreement(seg.predict(img), reference.predict(img)) >= 0.99
    with pytest.raises(ValueError, match="exported in fp16"):
        Segmenter.from_checkpoint(path, device="cpu", precision="fp32")


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_dynamo_exporter_gives_the_same_model(trained_checkpoint: Path) -> None:
    ckpt = load_checkpoint(trained_checkpoint)
    outputs = []
    x = np.random.default_rng(3).normal(0.4, 0.2, (2, 1, 37, 53)).astype(np.float32)
    for exporter in ("torchscript", "dynamo"):
        proto = export_model_proto(ckpt.model, ckpt.info, exporter=exporter)
        assert proto.opset_import[0].version == (17 if exporter == "torchscript" else 18)
        session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
        outputs.append(session.run(None, {"image": x})[0])
    np.testing.assert_allclose(outputs[0], outputs[1], atol=1e-4)


def test_a_cpu_segmenters_fused_network_exports_plain_ops(tiny_checkpoint) -> None:
    """Its ReLUs run inside the convolutions (a private oneDNN op); traced for export, the plain modules."""
    seg = Segmenter.from_checkpoint(tiny_checkpoint(), device="cpu", precision="fp32")
    with torch.no_grad():  # where the fused path would run
        proto = export_model_proto(seg.model, seg.info)
    assert {"Conv", "Relu"} <= {node.op_type for node in proto.graph.node}


def test_monte_carlo_dropout_is_refused(tiny_checkpoint, tmp_path: Path) -> None:
    ckpt = tiny_checkpoint(1, 2, dropout=0.5)
    seg = Segmenter.from_checkpoint(export_onnx(ckpt, tmp_path / "bayes.onnx"), device="cpu")
    assert seg.has_dropout
    with pytest.raises(InputError, match="needs the PyTorch backend") as err:
        seg.predict_uncertainty(np.zeros((40, 40), np.float32), samples=3)
    assert "\n" not in str(err.value)
    assert seg.predict(np.zeros((40, 40), np.float32)).shape == (40, 40)  # deterministic use still works


def test_bad_onnx_files_and_combinations(exported: Path, tmp_path: Path, tiny_checkpoint) -> None:
    with pytest.raises(CheckpointError, match="is an ONNX model"):
        load_checkpoint(exported)
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(exported.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="corrupt or truncated ONNX"):
        read_info(broken)
    foreign = tmp_path / "foreign.onnx"
    proto = onnx.load(str(exported))
    del proto.metadata_props[:]
    foreign.write_bytes(proto.SerializeToString())
    with pytest.raises(CheckpointError, match="without a segnet-domains header"):
        Segmenter.from_checkpoint(foreign, device="cpu")
    with pytest.raises(InputError, match="onnxruntime backend, not torch"):
        Segmenter.from_checkpoint(exported, backend="torch")
    with pytest.raises(CheckpointError, match="ONNX model not found"):
        read_info(tmp_path / "missing.onnx")
    with pytest.raises(InputError, match=r"must end in \.onnx"):
        export_onnx(tiny_checkpoint(), tmp_path / "model.pt2")
    with pytest.raises(InputError, match="opset >= 18"):
        export_onnx(tiny_checkpoint(), tmp_path / "m.onnx", opset=17, exporter="dynamo")
    assert not (tmp_path / "m.onnx").exists()


def test_execution_providers_for_devices() -> None:
    cpu_only = ["CPUExecutionProvider"]
    assert onnx_providers("auto", cpu_only) == (cpu_only, torch.device("cpu"))
    gpu = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    providers, dev = onnx_providers("cuda:1", gpu)
    assert dev == torch.device("cuda", 1)
    assert [p if isinstance(p, str) else p[0] for p in providers] == gpu
    assert providers[0][1] == {"device_id": 1}
    assert onnx_providers("auto", gpu)[1] == torch.device("cuda", 0)
    with pytest.raises(ValueError, match="no CUDA execution provider"):
        onnx_providers("cuda", cpu_only)
    with pytest.raises(ValueError, match="cpu or cuda"):
        onnx_providers("mps", gpu)


@pytest.mark.gpu
def test_cuda_execution_provider(exported: Path, reference: Segmenter) -> None:
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("this onnxruntime build has no CUDA execution provider")
    seg = Segmenter.from_checkpoint(exported, device="cuda")
    assert seg.device.type == "cuda" and "CUDAExecutionProvider" in seg.backend.providers
    img, _ = blob_scene(np.random.default_rng(8), 100, 131)
    assert _agreement(seg.predict(img), reference.predict(img)) >= 0.999
