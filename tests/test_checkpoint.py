"""Self-describing checkpoints: round trip, metadata, training state, safe loading."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from segnet_domains import CheckpointError, SegNet, load_checkpoint, read_info, save_checkpoint
from segnet_domains.io.atomic import temporary_path


def _model() -> SegNet:
    torch.manual_seed(0)
    return SegNet(4, 3, features=(4, 8, 8, 8, 8), dropout=0.5)


def test_metadata_round_trip(tmp_path: Path) -> None:
    meta = dict(
        band_names=["blue", "green", "red", "nir"],
        normalization={"mode": "zscore", "mean": [1, 2, 3, 4], "std": [1, 1, 1, 1]},
        class_names=["background", "building", "road"],
        class_colors=[[0, 0, 0], [255, 0, 0], [128, 128, 128]],
        domain="aerial",
        slice_axis=None,
        tile_size=512,
        tile_overlap=64,
        provenance={"config": {"train": {"epochs": 3}}, "metrics": {"miou": 0.71}},
        sensor="Sentinel-2",
    )
    path = save_checkpoint(tmp_path / "m.pt", _model(), **meta)
    info = read_info(path)
    assert info.architecture == "SegNet"
    assert info.args == {"in_channels": 4, "out_channels": 3, "features": [4, 8, 8, 8, 8], "dropout": 0.5,
                         "depths": [2, 2, 3, 3, 3]}  # fmt: skip
    for key, value in meta.items():
        if key == "sensor":
            assert info.extra == {"sensor": "Sentinel-2"}
        elif key == "provenance":
            assert info.provenance["metrics"] == {"miou": 0.71}
            assert "saved" in info.provenance and "library" in info.provenance
        else:
            assert getattr(info, key) == value, key
    assert not list(tmp_path.glob(".*partial*"))


def test_defaults_fill_class_names_and_colours(tmp_path: Path) -> None:
    info = read_info(save_checkpoint(tmp_path / "m.pt", _model()))
    assert info.class_names == ["background", "class_1", "class_2"]
    assert len(info.class_colors) == 3 and info.domain is None and info.context == 0


@pytest.mark.parametrize(
    ("meta", "match"),
    [
        ({"class_names": ["a"]}, "1 class_names for a model with 3 classes"),
        ({"domain": "ct"}, "domain must be one of"),
        ({"context": 1}, "not a multiple of 2\\*context\\+1"),
        ({"band_names": ["r", "g"]}, "2 band_names for 4 bands"),
    ],
)
def test_inconsistent_metadata_is_refused(tmp_path: Path, meta: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        save_checkpoint(tmp_path / "m.pt", _model(), **meta)
    assert not (tmp_path / "m.pt").exists()


def test_weights_identical_after_round_trip(tmp_path: Path) -> None:
    model = _model().eval()
    loaded = load_checkpoint(save_checkpoint(tmp_path / "m.pt", model)).model
    for (k, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), k
    assert not loaded.training


def test_training_state_round_trip(tmp_path: Path) -> None:
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.001, momentum=0.9)
    model(torch.randn(2, 4, 32, 32)).mean().backward()
    opt.step()
    state = {"optimizer": opt.state_dict(), "epoch": 7, "rng": torch.get_rng_state(), "best": 0.5}
    ckpt = load_checkpoint(save_checkpoint(tmp_path / "last.pt", model, state=state))
    assert ckpt.state is not None
    assert ckpt.state["epoch"] == 7 and ckpt.state["best"] == 0.5
    assert torch.equal(ckpt.state["rng"], state["rng"])
    opt2 = torch.optim.SGD(ckpt.model.parameters(), lr=0.1)
    opt2.load_state_dict(ckpt.state["optimizer"])  # int keys survive
    assert opt2.param_groups[0]["lr"] == 0.001 and opt2.param_groups[0]["momentum"] == 0.9
    for k, v in opt.state_dict()["state"].items():
        assert torch.equal(opt2.state_dict()["state"][k]["momentum_buffer"], v["momentum_buffer"])


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_pickle_payload_is_refused_and_never_executed(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"model": _Exploit(marker)}, evil)
    with pytest.raises(CheckpointError, match="pickle payload"):
        load_checkpoint(evil)
    raw = tmp_path / "raw.pkl"
    raw.write_bytes(pickle.dumps(_Exploit(marker)))
    with pytest.raises(CheckpointError, match="pickle payload"):
        read_info(raw)
    assert not marker.exists()


def test_plain_torch_state_dict_is_refused(tmp_path: Path) -> None:
    torch.save(_model().state_dict(), tmp_path / "sd.pt")
    with pytest.raises(CheckpointError, match="torch.save format"):
        load_checkpoint(tmp_path / "sd.pt")


@pytest.mark.parametrize("cut", [0, 4, 100, -1000])
def test_truncated_checkpoint(tmp_path: Path, cut: int) -> None:
    good = save_checkpoint(tmp_path / "m.pt", _model()).read_bytes()
    bad = tmp_path / "cut.pt"
    bad.write_bytes(good[:cut])
    with pytest.raises(CheckpointError, match=r"cut\.pt: .*(truncated|corrupt|header)"):
        load_checkpoint(bad)


def test_missing_and_foreign_files(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "nope.pt")
    (tmp_path / "notes.txt").write_text("hello world, not weights")
    with pytest.raises(CheckpointError, match="notes.txt"):
        load_checkpoint(tmp_path / "notes.txt")
    save_file({"w": torch.zeros(2)}, tmp_path / "other.safetensors")
    with pytest.raises(CheckpointError, match="not a segnet-domains checkpoint"):
        read_info(tmp_path / "other.safetensors")


def test_weights_that_do_not_fit_the_architecture(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "m.pt", _model())
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    meta = json.loads(header["__metadata__"]["segnet_domains"])
    meta["info"]["args"]["features"] = [8, 8, 8, 8, 8]
    header["__metadata__"]["segnet_domains"] = json.dumps(meta)
    new = json.dumps(header).encode()
    new += b" " * ((8 - len(new) % 8) % 8)
    (tmp_path / "lie.pt").write_bytes(len(new).to_bytes(8, "little") + new + raw[8 + n :])
    with pytest.raises(CheckpointError, match="weights do not match SegNet"):
        load_checkpoint(tmp_path / "lie.pt")


def test_atomic_save_leaves_nothing_on_failure(tmp_path: Path) -> None:
    with pytest.raises(TypeError):
        save_checkpoint(tmp_path / "m.pt", _model(), state={"bad": object()})
    assert not (tmp_path / "m.pt").exists() and not temporary_path(tmp_path / "m.pt").exists()


def test_not_our_model(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="not a segnet-domains architecture"):
        save_checkpoint(tmp_path / "m.pt", torch.nn.Linear(2, 2))


def test_header_length_starting_with_pickle_opcode_byte_loads(tmp_path: Path) -> None:
    """Regression: a safetensors header length whose low byte is 0x80 is not a pickle."""
    path = tmp_path / "m.pt"
    for pad in range(300):
        save_checkpoint(path, _model(), note="x" * pad)
        if path.read_bytes()[:1] == b"\x80":
            break
    else:
        pytest.fail("could not produce a header length with low byte 0x80")
    assert load_checkpoint(path).info.extra["note"] == "x" * pad
