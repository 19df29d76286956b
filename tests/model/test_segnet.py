"""SegNet as in the paper, SegNet-Basic and Bayesian SegNet."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from segnet_domains import Segmenter, SegNet, SegNetBasic, load_checkpoint, save_checkpoint
from segnet_domains.model import load_vgg16_bn
from segnet_domains.model.blocks import ConvBNAct, relu_post_op_works
from segnet_domains.model.unpool import IndexUnpool
from tests.model.base import ModelTestMixin


class TestSegNet(ModelTestMixin):
    model_class = SegNet
    kwargs = {"features": (8, 16, 32, 32, 32)}


class TestSegNetBasic(ModelTestMixin):
    model_class = SegNetBasic
    kwargs = {"features": 16}


class TestBayesianSegNet(ModelTestMixin):
    model_class = SegNet
    kwargs = {"features": (8, 16, 32, 32, 32), "dropout": 0.5}


def _convs(model: nn.Module) -> list[nn.Conv2d]:
    return [m for m in model.modules() if isinstance(m, nn.Conv2d)]


def test_paper_size_parameters_and_layers() -> None:
    model = SegNet(3, 12)
    n = sum(p.numel() for p in model.parameters())
    assert abs(n - 29.4e6) / 29.4e6 < 0.01, n
    convs = _convs(model)
    assert len(convs) == 26
    assert all(c.kernel_size == (3, 3) for c in convs)
    # encoder = VGG16's 13 convs: stages of 2, 2, 3, 3, 3 with 64..512 channels
    enc = [u.conv.out_channels for s in model.encoder.stages for u in s]
    assert enc == [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    # no learned upsampling, no transposed convs
    assert not any(isinstance(m, nn.ConvTranspose2d | nn.Upsample) for m in model.modules())
    assert sum(isinstance(m, IndexUnpool) for m in model.modules()) == 1  # shared, applied per stage


def test_classifier_has_no_bn_or_relu() -> None:
    model = SegNet(1, 2, features=(8, 16, 32, 32, 32))
    assert isinstance(model.decoder.classifier, nn.Conv2d)
    assert model.decoder.classifier.out_channels == 2
    x = torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        assert (model.eval()(x) < 0).any()  # a ReLU output could not be negative


def test_decoder_unpools_with_the_matching_encoder_indices() -> None:
    """Each decoder stage must receive exactly the indices of its encoder stage."""
    model = SegNet(1, 2, features=(4, 8, 8, 8, 8)).eval()
    seen_pool, seen_unpool = [], []
    model.encoder.pool.register_forward_hook(lambda m, i, o: seen_pool.append(o[1]))
    model.decoder.unpool.register_forward_hook(lambda m, i, o: seen_unpool.append(i[1]))
    with torch.no_grad():
        model(torch.randn(1, 1, 45, 63))
    assert len(seen_pool) == len(seen_unpool) == 5
    for pooled, unpooled in zip(seen_pool, reversed(seen_unpool)):
        assert unpooled is pooled


def test_segnet_basic_matches_paper() -> None:
    model = SegNetBasic(3, 11)
    convs = _convs(model)
    assert [c.kernel_size for c in convs[:-1]] == [(7, 7)] * 8
    assert convs[-1].kernel_size == (1, 1)
    assert {c.out_channels for c in convs[:-1]} == {64}
    # decoder convs have BN but no ReLU
    assert all(isinstance(u.act, nn.Identity) for s in model.decoder.stages for u in s)


def test_bayesian_dropout_sampling_only_when_enabled() -> None:
    model = SegNet(1, 2, features=(8, 16, 16, 16, 16), dropout=0.5).eval()
    x = torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), model(x))
        model.enable_mc_dropout(True)
        assert not torch.equal(model(x), model(x))
        model.enable_mc_dropout(False)
        assert torch.equal(model(x), model(x))
    assert sum(isinstance(m, nn.Dropout) for m in model.modules()) == 1


def test_mc_dropout_uncertainty() -> None:
    seg = Segmenter(SegNet(1, 2, features=(8, 16, 16, 16, 16), dropout=0.5), device="cpu", precision="fp32")
    mean, var = seg.predict_uncertainty(torch.rand(40, 48).numpy(), samples=6)
    assert mean.shape == var.shape == (2, 40, 48)
    assert abs(float(mean.sum(0).mean()) - 1) < 1e-4
    assert float(var.max()) > 0
    with pytest.raises(ValueError, match="no dropout"):
        Segmenter(SegNet(1, 2, features=(4, 4, 4, 4, 4)), device="cpu").predict_uncertainty(mean[0])


def test_he_init() -> None:
    model = SegNet(3, 2)
    w = model.encoder.stages[3][1].conv.weight  # 512 out, fan_out = 512*9
    expected = (2.0 / (512 * 9)) ** 0.5
    assert abs(float(w.std()) - expected) / expected < 0.05
    assert float(model.encoder.stages[3][1].conv.bias.abs().sum()) == 0


def _torchvision_layout_state(in_channels: int = 3) -> dict[str, torch.Tensor]:
    """A state dict with torchvision vgg16_bn's key layout and shapes (random values)."""
    g = torch.Generator().manual_seed(1)
    state: dict[str, torch.Tensor] = {}
    cfg = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
    i, c_in = 0, in_channels
    for v in cfg:
        if v == "M":
            i += 1
            continue
        state[f"features.{i}.weight"] = torch.randn(v, c_in, 3, 3, generator=g)
        state[f"features.{i}.bias"] = torch.randn(v, generator=g)
        for name in ("weight", "bias", "running_mean"):
            state[f"features.{i + 1}.{name}"] = torch.randn(v, generator=g)
        state[f"features.{i + 1}.running_var"] = torch.rand(v, generator=g) + 0.5
        state[f"features.{i + 1}.num_batches_tracked"] = torch.tensor(1)
        i, c_in = i + 3, v
    state["classifier.0.weight"] = torch.randn(10, 10, generator=g)  # ignored
    return state


def test_load_vgg16_bn_from_local_file(tmp_path: Path) -> None:
    state = _torchvision_layout_state()
    torch.save(state, tmp_path / "vgg16_bn.pth")
    model = SegNet(3, 5)
    loaded = load_vgg16_bn(model, tmp_path / "vgg16_bn.pth")
    assert len(loaded) == 13 * 6
    torch.testing.assert_close(model.encoder.stages[0][0].conv.weight, state["features.0.weight"])
    torch.testing.assert_close(model.encoder.stages[4][2].norm.running_var, state["features.41.running_var"])
    torch.testing.assert_close(model.encoder.stages[2][1].conv.bias, state["features.17.bias"])


def test_load_vgg16_bn_adapts_first_conv_to_one_band(tmp_path: Path) -> None:
    state = _torchvision_layout_state()
    torch.save(state, tmp_path / "vgg16_bn.pth")
    model = SegNet(1, 2)
    load_vgg16_bn(model, tmp_path / "vgg16_bn.pth")
    expected = state["features.0.weight"].sum(dim=1, keepdim=True)
    torch.testing.assert_close(model.encoder.stages[0][0].conv.weight, expected)


def test_load_vgg16_bn_rejects_other_layouts(tmp_path: Path) -> None:
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="features.0.weight"):
        load_vgg16_bn(SegNet(3, 2), tmp_path / "other.pth")
    with pytest.raises(ValueError, match="VGG16-BN weights need"):
        load_vgg16_bn(SegNet(3, 2, features=(8, 8, 8, 8, 8)), tmp_path / "other.pth")


def test_density_head(tmp_path: Path) -> None:
    """``head="density"``: the same encoder/decoder, one output channel, recorded in the checkpoint."""
    torch.manual_seed(0)
    model = SegNet(3, 1, features=(4, 8, 8, 8, 8), head="density").eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 33, 35))
    assert out.shape == (2, 1, 33, 35)
    assert model.config["args"]["head"] == "density"
    assert "head" not in SegNet(3, 2, features=(4, 8, 8, 8, 8)).config["args"]  # old headers unchanged
    assert model.decoder.classifier.out_channels == 1
    path = save_checkpoint(tmp_path / "d.pt", model, class_names=["density"], density_scale=100.0)
    loaded = load_checkpoint(path)
    assert loaded.info.args["head"] == "density" and loaded.info.extra["density_scale"] == 100.0
    x = torch.randn(1, 3, 40, 44)
    with torch.no_grad():
        assert torch.equal(model(x), loaded.model(x))
    with pytest.raises(ValueError, match="a density head has out_channels=1, not 2"):
        SegNet(3, 2, head="density")
    with pytest.raises(ValueError, match="head must be one of"):
        SegNet(3, 1, head="boxes")


def test_relu_post_op_probe_leaves_the_global_stream_alone() -> None:
    """The probe draws from its own generator; fp32 runs fused on any x86 CPU torch supports."""
    relu_post_op_works.cache_clear()
    torch.manual_seed(3)
    state = torch.random.get_rng_state()
    works = relu_post_op_works(torch.float32)
    assert torch.equal(torch.random.get_rng_state(), state)
    if torch.backends.mkldnn.is_available():
        assert works


def test_cpu_segmenter_runs_relu_inside_the_convolutions() -> None:
    """The CPU backend's copy is fused; the caller's model is not touched."""
    model = SegNet(3, 4, features=[8, 16, 16, 16, 16]).eval()
    seg = Segmenter(model, device="cpu", precision="fp32")
    fused = [m.relu_in_conv for m in seg.backend.model.modules() if isinstance(m, ConvBNAct)]
    assert fused and all(fused) == relu_post_op_works(torch.float32)
    assert not any(m.relu_in_conv for m in model.modules() if isinstance(m, ConvBNAct))
