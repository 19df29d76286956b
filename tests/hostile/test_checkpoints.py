"""Hostile checkpoints for ``info`` and ``export-bundle``, and the bundle folder itself."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from segnet_domains.bundle import is_bundle
from tests.hostile.conftest import Assets, Table, check_case, fifo, rewrite_header, run_main

INFO, BUNDLE = Table(), Table()


def _header_only(ckpt: Path) -> bytes:
    """The checkpoint cut right after its header: every weight missing."""
    raw = ckpt.read_bytes()
    return raw[: 8 + int.from_bytes(raw[:8], "little")]


def _five(info: dict) -> None:
    info["out_channels"] = info["args"]["out_channels"] = 5
    info["class_names"] = ["bg", "a", "b", "c", "d"]
    info["class_colors"] = [[0, 0, 0]] * 5


def _names_only(info: dict) -> None:
    info["class_names"] = ["bg", "a", "b", "c", "d"]


def _features(value: object) -> object:
    def mutate(info: dict) -> None:
        info["args"]["features"] = value

    return mutate


def _set(key: str, value: object) -> object:
    def mutate(info: dict) -> None:
        info[key] = value

    return mutate


def _args(key: str, value: object) -> object:
    def mutate(info: dict) -> None:
        info["args"][key] = value

    return mutate


#: name → (how the checkpoint is made from the 2-class one, text expected in the error line)
BAD = {
    "five-names-two-class-weights": (
        lambda a, p: rewrite_header(a.ckpt1, p, _five),
        ["5 classes", "the file holds"],
    ),
    "five-names-in-a-two-class-header": (
        lambda a, p: rewrite_header(a.ckpt1, p, _names_only),
        ["5 class_names for weights of 2 classes"],
    ),
    "absurd-features": (
        lambda a, p: rewrite_header(a.ckpt1, p, _features([2**40, 2**40])),
        ["features", "must be widths in [1, 16384]"],
    ),
    "large-features-no-weights": (
        lambda a, p: rewrite_header(a.ckpt1, p, _features([16384, 16384])),
        ["weights do not match", "the file holds"],
    ),
    "negative-features": (lambda a, p: rewrite_header(a.ckpt1, p, _features([-4, 8])), ["features"]),
    "text-features": (lambda a, p: rewrite_header(a.ckpt1, p, _features("wide")), ["features"]),
    "zero-classes": (lambda a, p: rewrite_header(a.ckpt1, p, _set("out_channels", 0)), ["out_channels=0"]),
    "args-disagree": (lambda a, p: rewrite_header(a.ckpt1, p, _args("in_channels", 3)), ["args say 3→2"]),
    "unknown-architecture": (lambda a, p: rewrite_header(a.ckpt1, p, _set("architecture", "UNet")), ["UNet"]),
    "bad-dropout": (lambda a, p: rewrite_header(a.ckpt1, p, _args("dropout", 7.0)), ["cannot build"]),
    "context-mismatch": (lambda a, p: rewrite_header(a.ckpt1, p, _set("context", 1)), ["context=1"]),
    "no-format": (
        lambda a, p: rewrite_header(a.ckpt1, p, _set("format", "other/9")),
        ["not a segnet-domains/1"],
    ),
    "truncated": (lambda a, p: p.write_bytes(a.ckpt1.read_bytes()[:-100]) and p, ["truncated"]),
    "padded": (lambda a, p: p.write_bytes(a.ckpt1.read_bytes() + b"\0" * 64) and p, ["the file holds"]),
    "header-only": (lambda a, p: p.write_bytes(_header_only(a.ckpt1)) and p, ["truncated"]),
    "empty": (lambda a, p: p.write_bytes(b"") is not None and p, ["empty or truncated"]),
    "text": (lambda a, p: p.write_text("weights go here") and p, ["checkpoint"]),
    "huge-header-length": (
        lambda a, p: p.write_bytes((2**60).to_bytes(8, "little") + b"{}") and p,
        ["header length"],
    ),
    "json-not-ours": (
        lambda a, p: p.write_bytes(len(b'{"a":1}  ').to_bytes(8, "little") + b'{"a":1}  ') and p,
        ["not a segnet-domains checkpoint"],
    ),
    "pickle": (lambda a, p: torch.save({"w": torch.zeros(2)}, p) or p, ["pickle payload"]),
}


def _bad(name: str) -> object:
    make, expect = BAD[name]

    def build_info(w: Path, a: Assets) -> tuple[list[str], list[str]]:
        path = make(a, w / "m.pt")
        return ["info", str(path)], ["m.pt", *expect]

    def build_bundle(w: Path, a: Assets) -> tuple[list[str], list[str]]:
        path = make(a, w / "m.pt")
        return ["export-bundle", str(path), str(w / "bundle")], ["m.pt", *expect]

    build_info.__name__ = f"info_{name}".replace("-", "_")
    build_bundle.__name__ = f"bundle_{name}".replace("-", "_")
    INFO.case()(build_info)
    BUNDLE.case()(build_bundle)


for _name in BAD:
    _bad(_name)


@INFO.case()
def info_missing(w, a):
    return ["info", str(w / "nope.pt")], ["nope.pt", "checkpoint not found"]


@INFO.case()
def info_folder(w, a):
    (w / "d.pt").mkdir()
    return ["info", str(w / "d.pt")], ["d.pt", "is a folder"]


@INFO.case()
def info_fifo(w, a):
    return ["info", str(fifo(w / "f.pt"))], ["f.pt", "named pipe (FIFO)"]


@INFO.case()
def info_device(w, a):
    return ["info", "/dev/zero"], ["/dev/zero", "is a device"]


# ----------------------------------------------------------------------------- the bundle folder


def _bundle_like(folder: Path) -> Path:
    (folder / "configs").mkdir(parents=True)
    (folder / "configs" / "metadata.json").write_text(json.dumps({"segnet_domains": {}}))
    return folder


@BUNDLE.case()
def bundle_into_dot(w, a):
    os.chdir(w)
    return ["export-bundle", str(a.ckpt1), "."], ["working folder"]


@BUNDLE.case()
def bundle_into_the_checkpoints_folder(w, a):
    (w / "d").mkdir()
    (w / "d" / "m.pt").write_bytes(a.ckpt1.read_bytes())
    return ["export-bundle", str(w / "d" / "m.pt"), str(w / "d")], ["holds the input", "m.pt"]


@BUNDLE.case()
def bundle_into_the_checkpoints_folder_force(w, a):
    (w / "d").mkdir()
    (w / "d" / "m.pt").write_bytes(a.ckpt1.read_bytes())
    return ["export-bundle", str(w / "d" / "m.pt"), str(w / "d"), "--force"], ["holds the input"]


@BUNDLE.case()
def bundle_over_the_checkpoint(w, a):
    return ["export-bundle", str(a.ckpt1), str(a.ckpt1)], ["m1.pt", "is also an input"]


@BUNDLE.case()
def bundle_into_a_file(w, a):
    (w / "f").write_text("mine")
    return ["export-bundle", str(a.ckpt1), str(w / "f")], ["f", "exists and is not a folder"]


@BUNDLE.case()
def bundle_into_a_foreign_folder(w, a):
    (w / "d").mkdir()
    (w / "d" / "thesis.tex").write_text("years of work")
    return ["export-bundle", str(a.ckpt1), str(w / "d")], ["d", "not a MONAI bundle"]


@BUNDLE.case()
def bundle_into_a_foreign_folder_force(w, a):
    (w / "d").mkdir()
    (w / "d" / "thesis.tex").write_text("years of work")
    return ["export-bundle", str(a.ckpt1), str(w / "d"), "--force"], ["not a MONAI bundle"]


@BUNDLE.case()
def bundle_over_an_earlier_bundle(w, a):
    return ["export-bundle", str(a.ckpt1), str(_bundle_like(w / "b"))], [
        "b",
        "earlier MONAI bundle",
        "--force",
    ]


@BUNDLE.case()
def bundle_missing_parent(w, a):
    return ["export-bundle", str(a.ckpt1), str(w / "no" / "b")], ["does not exist"]


@BUNDLE.case()
def bundle_into_a_fifo(w, a):
    return ["export-bundle", str(a.ckpt1), str(fifo(w / "b"))], ["FIFO"]


@BUNDLE.case()
def bundle_of_a_folder(w, a):
    (w / "c.pt").mkdir()
    return ["export-bundle", str(w / "c.pt"), str(w / "b")], ["c.pt", "is a folder"]


@BUNDLE.case(code=0, creates=("b",))
def bundle_force_replaces_an_earlier_bundle(w, a):
    _bundle_like(w / "b")
    return ["export-bundle", str(a.ckpt1), str(w / "b"), "--force"], []


@BUNDLE.case(code=0, creates=("b",))
def bundle_into_an_empty_folder(w, a):
    (w / "b").mkdir()
    return ["export-bundle", str(a.ckpt1), str(w / "b")], []


@pytest.mark.parametrize("case", INFO, ids=INFO.ids)
def test_info(case, tmp_path: Path, assets: Assets, capsys: pytest.CaptureFixture[str]) -> None:
    check_case(case, tmp_path, assets, capsys)


@pytest.mark.parametrize("case", BUNDLE, ids=BUNDLE.ids)
def test_export_bundle(
    case, tmp_path: Path, assets: Assets, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # restored afterwards (one case exports into ".")
    check_case(case, tmp_path, assets, capsys)
    if case.code == 0:
        assert is_bundle(tmp_path / "b") and (tmp_path / "b" / "models" / "model.pt").is_file()


def test_export_bundle_read_only(read_only_dir: Path, assets: Assets, capsys) -> None:
    code, _, err = run_main(["export-bundle", str(assets.ckpt1), str(read_only_dir / "b")], capsys)
    assert code == 2 and err.strip().endswith("is on a read-only file system"), err
