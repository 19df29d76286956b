"""Self-describing, safely loaded checkpoints: the contract between training and every front end.

A checkpoint is a `safetensors <https://huggingface.co/docs/safetensors>`_ file:
tensors only, plus a JSON header. Loading it never unpickles anything, so a
file cannot run code; a ``torch.save``/pickle file is refused with a clear
error. The header (:class:`ModelInfo`) holds the architecture and its
arguments and everything a front end needs to use the model without asking
the user: bands, normalisation, class names and colours, domain, slice axis
and 2.5D context, tile size, provenance.

Training state (optimizer, scheduler, epoch, RNG) can ride along in the same
file through ``state=``: nested dicts/lists of tensors and JSON values are
flattened into tensors + header and restored with their int keys intact.

An ONNX export (``segnet-domains export-onnx``, :mod:`segnet_domains.onnx_export`)
carries the same JSON header in its ``metadata_props`` under the same key, so
:func:`read_info` reads a ``.onnx`` file too and every front end configures
itself from either.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn

from segnet_domains.errors import CheckpointError, NoDropoutError
from segnet_domains.io.atomic import atomic_output
from segnet_domains.io.safety import file_kind
from segnet_domains.model.segnet import build_model

FORMAT = "segnet-domains/1"
_HEADER_KEY = "segnet_domains"
_MAX_HEADER = 100 * 1024 * 1024
#: Key of the JSON header: safetensors ``__metadata__`` and ONNX ``metadata_props`` alike.
HEADER_KEY = _HEADER_KEY
ONNX_SUFFIX = ".onnx"

#: Bounds a header's counts must respect (refused before anything is allocated).
MAX_CHANNELS = 4096
MAX_CLASSES = 65536
MAX_WIDTH = 16384

DOMAINS = ("mri", "fundus", "aerial")

#: Default class colours (RGB): background transparent-black, then a qualitative palette.
DEFAULT_COLORS = [
    [0, 0, 0],
    [230, 25, 75],
    [60, 180, 75],
    [255, 225, 25],
    [0, 130, 200],
    [245, 130, 48],
    [145, 30, 180],
    [70, 240, 240],
    [240, 50, 230],
    [210, 245, 60],
    [250, 190, 212],
    [0, 128, 128],
    [220, 190, 255],
    [170, 110, 40],
    [255, 250, 200],
    [128, 0, 0],
]


@dataclass
class ModelInfo:
    """What a checkpoint says about its model (its JSON header).

    Attributes:
        architecture: registered model name (``"SegNet"``, ``"SegNetBasic"``).
        args: the constructor's arguments.
        in_channels: network input channels (bands × (2·context + 1)).
        out_channels: classes.
        band_names: names of the input bands, one per band.
        normalization: how raw pixels become network input; ``{"mode": ...}``
            with mode ``"percentile"`` (per image/volume and channel, ``lower``/
            ``upper`` percentiles → [0, 1]), ``"zscore"`` (per channel ``mean``/
            ``std`` lists, or per image if absent), ``"scale"`` (divide by
            ``scale``) or ``"none"``.
        class_names: one name per class.
        class_colors: one RGB triple per class.
        domain: ``"mri"``, ``"fundus"``, ``"aerial"`` or ``None``.
        slice_axis: default axis for slice-wise volume inference.
        context: 2.5D neighbours stacked on each side of a slice (0 = 2D).
        tile_size: tile edge that suits the model for big images.
        tile_overlap: overlap between tiles.
        provenance: training config, metrics, date, library version.
        extra: anything else passed to :func:`save_checkpoint`.
    """

    architecture: str
    args: dict[str, Any]
    in_channels: int
    out_channels: int
    band_names: list[str] | None = None
    normalization: dict[str, Any] = field(
        default_factory=lambda: {"mode": "percentile", "lower": 0.5, "upper": 99.5}
    )
    class_names: list[str] = field(default_factory=list)
    class_colors: list[list[int]] = field(default_factory=list)
    domain: str | None = None
    slice_axis: int | None = None
    context: int = 0
    tile_size: int | None = None
    tile_overlap: int | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def bands(self) -> int:
        """Bands of the raw image (``in_channels`` without the 2.5D neighbours)."""
        return self.in_channels // (2 * self.context + 1)

    @property
    def has_dropout(self) -> bool:
        """True if the model was built with Bayesian dropout (Monte Carlo uncertainty is possible)."""
        return bool(self.args.get("dropout"))

    def require_dropout(
        self, source: str | Path | None, what: str = "Monte Carlo uncertainty", hint: str = ""
    ) -> None:
        """The one check every front end runs before Monte Carlo dropout.

        Args:
            source: the file (or name) the message names.
            what: what was asked for, as the front end calls it (``"--uncertainty"``).
            hint: appended to the message (what to do in that front end).

        Raises:
            NoDropoutError: ``"<source>: <what> needs a checkpoint trained with dropout
                (Bayesian SegNet)<hint>"``.
        """
        if not self.has_dropout:
            raise NoDropoutError(
                source, f"{what} needs a checkpoint trained with dropout (Bayesian SegNet){hint}"
            )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (what ``segnet-domains info`` prints)."""
        return {"format": FORMAT, **dataclasses.asdict(self)}


@dataclass
class Checkpoint:
    """A loaded checkpoint: the model (eval mode), its info and any training state."""

    model: nn.Module
    info: ModelInfo
    state: dict[str, Any] | None = None


_INFO_FIELDS = {f.name for f in dataclasses.fields(ModelInfo)}


def make_info(model: nn.Module, **metadata: Any) -> ModelInfo:
    """Build a :class:`ModelInfo` for ``model``, filling defaults and checking consistency."""
    config = _model_config(model)
    args = config["args"]
    unknown = {k: v for k, v in metadata.items() if k not in _INFO_FIELDS}
    known = {k: v for k, v in metadata.items() if k in _INFO_FIELDS and v is not None}
    known.setdefault("extra", {}).update(unknown)
    info = ModelInfo(
        architecture=config["architecture"],
        args=args,
        in_channels=int(args["in_channels"]),
        out_channels=int(args["out_channels"]),
        **{
            k: v for k, v in known.items() if k not in ("architecture", "args", "in_channels", "out_channels")
        },
    )
    k = info.out_channels
    if not info.class_names:
        info.class_names = ["background"] + [f"class_{i}" for i in range(1, k)]
    if len(info.class_names) != k:
        raise ValueError(f"{len(info.class_names)} class_names for a model with {k} classes")
    if not info.class_colors:
        info.class_colors = [DEFAULT_COLORS[i % len(DEFAULT_COLORS)] for i in range(k)]
    info.class_colors = [[int(c) for c in rgb[:3]] for rgb in info.class_colors]
    if len(info.class_colors) != k:
        raise ValueError(f"{len(info.class_colors)} class_colors for a model with {k} classes")
    if info.domain is not None and info.domain not in DOMAINS:
        raise ValueError(f"domain must be one of {DOMAINS}, not {info.domain!r}")
    if info.in_channels % (2 * info.context + 1):
        raise ValueError(
            f"in_channels={info.in_channels} is not a multiple of 2*context+1={2 * info.context + 1}"
        )
    if info.band_names is not None and len(info.band_names) != info.bands:
        raise ValueError(f"{len(info.band_names)} band_names for {info.bands} bands")
    info.provenance = {
        "library": _version(),
        "saved": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        **info.provenance,
    }
    return info


def save_checkpoint(
    path: str | Path, model: nn.Module, *, state: Mapping[str, Any] | None = None, **metadata: Any
) -> Path:
    """Write ``model`` and its metadata to ``path`` (atomically).

    Args:
        path: destination (any suffix; ``.pt`` by convention).
        model: a registered architecture (``SegNet``, ``SegNetBasic``), possibly
            wrapped in DDP / ``torch.compile``.
        state: optional training state (optimizer/scheduler state dicts, epoch,
            RNG…): nested dicts/lists of tensors and JSON values.
        **metadata: :class:`ModelInfo` fields (``class_names``, ``domain``,
            ``normalization``, ``band_names``, ``context``, ``slice_axis``,
            ``tile_size``, ``provenance`` …); unknown keys go to ``extra``.

    Returns:
        The path written.

    Example:
        >>> save_checkpoint("m.pt", SegNet(1, 2), class_names=["background", "lesion"])  # doctest: +SKIP
    """
    model = _unwrap(model)
    info = make_info(model, **metadata)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    header: dict[str, Any] = {"info": info.to_dict()}
    if state is not None:
        header["state"] = _flatten(state, tensors)
    blob = st_save(tensors, metadata={_HEADER_KEY: json.dumps(header)})
    path = Path(path)
    with atomic_output(path) as tmp:
        tmp.write_bytes(blob)
    return path


def read_info(path: str | Path) -> ModelInfo:
    """Read only the header of a checkpoint (fast: no weights are loaded).

    The header is checked for consistency (class names and colours against
    the class count, the architecture's arguments against the channel
    counts, widths within :data:`MAX_WIDTH`).

    Raises:
        CheckpointError: missing, not a regular file, pickle-based, corrupt,
            foreign or inconsistent file.
    """
    path = Path(path)
    header = _read_onnx_header(path) if is_onnx(path) else _read_header(path)[0]
    return _parse_info(path, header)


def is_onnx(path: str | Path) -> bool:
    """True for an ONNX model file (by its ``.onnx`` suffix: protobuf has no magic number)."""
    return Path(path).suffix.lower() == ONNX_SUFFIX


def verify_checkpoint(path: str | Path) -> ModelInfo:
    """Check a whole checkpoint without loading its weights: header, tensor shapes, file size.

    The architecture is built on PyTorch's ``meta`` device (no memory is
    allocated, whatever the header claims) and every weight's shape in the
    safetensors table is compared with it; the table must account for the
    file's exact size, so a truncated or padded file is refused.

    Raises:
        CheckpointError: anything :func:`read_info` refuses, a truncated file,
            or weights that do not match the header (both counts named).
    """
    path = Path(path)
    if is_onnx(path):  # an export: its header is checked here, its graph by onnxruntime when loaded
        return read_info(path)
    header, _, table = _read_header(path)
    info = _parse_info(path, header)
    _check_weights(path, info, table)
    return info


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> Checkpoint:
    """Load a checkpoint written by :func:`save_checkpoint`; never executes code from the file.

    Args:
        path: the checkpoint.
        map_location: device for the weights.

    Returns:
        :class:`Checkpoint` with the model in eval mode.

    Raises:
        CheckpointError: missing, pickle-based, truncated/corrupt, not a
            segnet-domains checkpoint, or weights that don't fit the architecture.
    """
    path = Path(path)
    if is_onnx(path):
        raise CheckpointError(
            path,
            "is an ONNX model, not a PyTorch checkpoint: run it with Segmenter.from_checkpoint "
            "(onnxruntime backend)",
        )
    header, data, table = _read_header(path, with_data=True)
    info = _parse_info(path, header)
    _check_weights(path, info, table)  # before anything is allocated
    try:
        tensors = st_load(data)
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise CheckpointError(path, f"corrupt checkpoint ({exc})") from None
    try:
        model = build_model(info.architecture, info.args)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(path, f"cannot build {info.architecture}: {exc}") from None
    weights = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise CheckpointError(path, f"weights do not match {info.architecture}: {first}") from None
    model.to(map_location).eval()
    state = None
    if "state" in header:
        state = _unflatten(header["state"], tensors, map_location)
    return Checkpoint(model=model, info=info, state=state)


# --------------------------------------------------------------------------- internals


def _model_config(model: nn.Module) -> dict[str, Any]:
    config = getattr(model, "config", None)
    if not isinstance(config, dict) or "architecture" not in config:
        raise TypeError(f"{type(model).__name__} is not a segnet-domains architecture")
    return config


def _unwrap(model: nn.Module) -> nn.Module:
    model = getattr(model, "_orig_mod", model)  # torch.compile
    return getattr(model, "module", model)  # DDP / DataParallel


def _version() -> str:
    try:
        from importlib.metadata import version

        return f"segnet-domains {version('segnet-domains')}"
    except Exception:  # noqa: BLE001 - not installed (running from a source tree)
        return "segnet-domains (source)"


def _read_header(path: Path, with_data: bool = False) -> tuple[dict[str, Any], bytes, dict[str, Any]]:
    """``(our header, the file's bytes if with_data else b"", the safetensors tensor table)``."""
    kind = file_kind(path)
    if kind == "not found":
        raise CheckpointError(path, "checkpoint not found")
    if kind is not None:
        raise CheckpointError(path, kind)
    try:
        data = path.read_bytes() if with_data else _read_prefix(path)
    except OSError as exc:
        raise CheckpointError(path, f"cannot read checkpoint ({exc.strerror})") from None
    looks_safetensors = len(data) >= 9 and data[8:9] == b"{"
    if not looks_safetensors and (
        data[:2] == b"PK" or (data[:1] == b"\x80" and data[1:2] in b"\x02\x03\x04\x05")
    ):
        raise CheckpointError(
            path,
            "carries a pickle payload (torch.save format); refused because unpickling can run code "
            "— segnet-domains checkpoints are safetensors files written by save_checkpoint",
        )
    if len(data) < 8:
        raise CheckpointError(path, "empty or truncated checkpoint")
    (n,) = struct.unpack("<Q", data[:8])
    size = path.stat().st_size
    if n > _MAX_HEADER or 8 + n > size:
        raise CheckpointError(path, "corrupt or truncated checkpoint (bad header length)")
    if not with_data:
        try:
            with path.open("rb") as fh:
                fh.seek(8)
                raw = fh.read(n)
        except OSError as exc:
            raise CheckpointError(path, f"cannot read checkpoint ({exc.strerror})") from None
    else:
        raw = data[8 : 8 + n]
    try:
        st_header = json.loads(raw)
        header = json.loads(st_header["__metadata__"][_HEADER_KEY])
    except (ValueError, KeyError, TypeError):
        raise CheckpointError(path, "not a segnet-domains checkpoint (no readable header)") from None
    if not isinstance(header, dict) or not isinstance(st_header, dict):
        raise CheckpointError(path, "not a segnet-domains checkpoint (no readable header)")
    table = {k: v for k, v in st_header.items() if k != "__metadata__"}
    table["__data_bytes__"] = size - 8 - n
    return header, data, table


def _read_onnx_header(path: Path) -> dict[str, Any]:
    """The segnet-domains header of an exported ONNX model (its ``metadata_props``).

    ``onnx`` is imported here, not at the top: it is an optional dependency
    (the ``onnx`` extra) that only ``.onnx`` files need.
    """
    if not path.is_file():
        raise CheckpointError(path, "ONNX model not found" if not path.exists() else "is not a file")
    try:
        import onnx
        from google.protobuf.message import DecodeError
    except ImportError:
        raise CheckpointError(
            path, "reading ONNX models needs the onnx extra: pip install 'segnet-domains[onnx]'"
        ) from None
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except (DecodeError, OSError, ValueError) as exc:
        raise CheckpointError(path, f"corrupt or truncated ONNX model ({exc})") from None
    props = {p.key: p.value for p in proto.metadata_props}
    if _HEADER_KEY not in props:
        raise CheckpointError(path, "ONNX model without a segnet-domains header (write it with export-onnx)")
    try:
        header = json.loads(props[_HEADER_KEY])
    except ValueError:
        raise CheckpointError(path, "ONNX model with an unreadable segnet-domains header") from None
    if not isinstance(header, dict):
        raise CheckpointError(path, "ONNX model with an unreadable segnet-domains header")
    return header


def _read_prefix(path: Path) -> bytes:
    with path.open("rb") as fh:
        return fh.read(9)


def _parse_info(path: Path, header: dict[str, Any]) -> ModelInfo:
    raw = dict(header.get("info", {}) if isinstance(header.get("info"), dict) else {})
    if raw.pop("format", None) != FORMAT:
        raise CheckpointError(path, f"not a {FORMAT} checkpoint")
    try:
        info = ModelInfo(**{k: v for k, v in raw.items() if k in _INFO_FIELDS})
    except TypeError as exc:
        raise CheckpointError(path, f"incomplete checkpoint header ({exc})") from None
    problem = _header_problem(info)
    if problem:
        raise CheckpointError(path, f"inconsistent checkpoint header: {problem}")
    return info


def _header_problem(info: ModelInfo) -> str | None:
    """What is wrong with a header on its own (``None``: consistent)."""

    def count(v: Any, hi: int) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= hi

    if not isinstance(info.args, dict) or not isinstance(info.architecture, str):
        return "architecture and args are missing"
    if not count(info.in_channels, MAX_CHANNELS) or not count(info.out_channels, MAX_CLASSES):
        return f"in_channels={info.in_channels!r}, out_channels={info.out_channels!r} are not sensible counts"
    if info.args.get("in_channels") != info.in_channels or info.args.get("out_channels") != info.out_channels:
        return (
            f"args say {info.args.get('in_channels')!r}→{info.args.get('out_channels')!r} channels, "
            f"the header {info.in_channels}→{info.out_channels}"
        )
    features = info.args.get("features", [])
    widths = features if isinstance(features, list) else [features]
    if not widths or not all(count(f, MAX_WIDTH) for f in widths):
        return f"features {features!r} must be widths in [1, {MAX_WIDTH}]"
    for name in ("depths", "depth"):
        depth = info.args.get(name, [1])
        if not all(count(d, 16) for d in (depth if isinstance(depth, list) else [depth])):
            return f"{name} {depth!r} must be in [1, 16]"
    for name in ("class_names", "class_colors"):
        value = getattr(info, name)
        if not isinstance(value, list) or len(value) != info.out_channels:
            n = len(value) if isinstance(value, list) else value
            return f"{n} {name} for weights of {info.out_channels} classes"
    if not isinstance(info.context, int) or info.context < 0 or info.in_channels % (2 * info.context + 1):
        return f"context={info.context!r} does not divide in_channels={info.in_channels}"
    return None


def _check_weights(path: Path, info: ModelInfo, table: dict[str, Any]) -> None:
    """The tensors the file holds against the header's model, before a byte of weights is loaded."""
    data_bytes = table.pop("__data_bytes__", None)
    try:
        ends = [int(v["data_offsets"][1]) for v in table.values()]
        stored = {k[len("model.") :]: list(v["shape"]) for k, v in table.items() if k.startswith("model.")}
    except (TypeError, KeyError, IndexError, ValueError):
        raise CheckpointError(path, "corrupt checkpoint (unreadable tensor table)") from None
    if data_bytes is not None and max(ends, default=0) != data_bytes:
        raise CheckpointError(
            path,
            f"corrupt or truncated checkpoint: its table describes {max(ends, default=0)} bytes of weights, "
            f"the file holds {data_bytes}",
        )
    try:
        with torch.device("meta"):  # shapes only: nothing is allocated
            model = build_model(info.architecture, info.args)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(path, f"cannot build {info.architecture}: {exc}") from None
    expected = {k: list(v.shape) for k, v in model.state_dict().items()}
    if stored == expected:
        return
    differ = [k for k in expected if k in stored and stored[k] != expected[k]]
    missing = [k for k in expected if k not in stored]
    extra = [k for k in stored if k not in expected]
    n_exp = sum(math.prod(v) for v in expected.values())
    n_got = sum(math.prod(v) for v in stored.values())
    detail = (
        f"{differ[0]} is {stored[differ[0]]} in the file, {expected[differ[0]]} for the header"
        if differ
        else f"{len(missing)} tensor(s) missing, {len(extra)} unexpected"
    )
    raise CheckpointError(
        path,
        f"weights do not match {info.architecture} as the header describes it "
        f"({info.out_channels} classes, features {info.args.get('features')}): "
        f"the header needs {len(expected)} tensors with {n_exp} values, the file holds "
        f"{len(stored)} with {n_got}; e.g. {detail}",
    )


def _flatten(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, torch.Tensor):
        key = f"state.{len(tensors)}"
        tensors[key] = obj.detach().cpu().contiguous()
        return {"__tensor__": key}
    if isinstance(obj, Mapping):
        return {"__dict__": [[k, _flatten(v, tensors)] for k, v in obj.items()]}
    if isinstance(obj, list | tuple):
        return [_flatten(v, tensors) for v in obj]
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} in checkpoint state")


def _unflatten(obj: Any, tensors: dict[str, torch.Tensor], device: str | torch.device) -> Any:
    if isinstance(obj, dict) and "__tensor__" in obj:
        t = tensors[obj["__tensor__"]]
        return t if t.dtype == torch.uint8 else t.to(device)
    if isinstance(obj, dict) and "__dict__" in obj:
        return {k: _unflatten(v, tensors, device) for k, v in obj["__dict__"]}
    if isinstance(obj, list):
        return [_unflatten(v, tensors, device) for v in obj]
    return obj
