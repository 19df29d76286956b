"""The one inference path every front end uses: :class:`Segmenter`.

It owns device and precision choice, batching, padding, test-time flips and
Monte Carlo dropout. The fast paths:

* CPU with bf16 (AVX512-BF16/AMX): BatchNorm folded into the convs, weights
  and activations in bf16, channels-last memory — about 2.4× fp32 eager here.
* CUDA: folded BN, channels-last, autocast (bf16 where supported, else fp16).
* elsewhere: folded BN, fp32.

Softmax is always taken in fp32. A model with a density head (crowd counting,
:class:`~segnet_domains.model.SegNet` ``head="density"``) gives a density map
instead of probabilities: :meth:`Segmenter.predict_density` and
:meth:`Segmenter.count`, tiled like any big image.

The network itself runs in a backend (:mod:`segnet_domains.backends`): the
PyTorch model above, or its ONNX export in onnxruntime (an ``.onnx`` file, or
``backend="onnxruntime"``). Everything around it — adapters, normalisation,
padding, flips, softmax, cropping, batching — is this module's, whichever runs.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from segnet_domains.adapters import ImageAdapter, VolumeSliceAdapter, crop, pad_to_multiple, to_channel_first
from segnet_domains.backends import BACKENDS, Backend, OnnxBackend, TorchBackend
from segnet_domains.checkpoint import ModelInfo, is_onnx, load_checkpoint, make_info, read_info
from segnet_domains.errors import InputError
from segnet_domains.tiling import predict_proba_tiled

ProgressCallback = Callable[[int, int], None]


class Segmenter:
    """Run a SegNet on images and volumes.

    Args:
        model: a segnet-domains model (weights are copied; the caller's model
            is not modified), or a ready :class:`~segnet_domains.backends.Backend`
            (then ``info`` is required and ``device``/``precision`` are the backend's).
        device: ``"auto"`` (CUDA → MPS → CPU), ``"cpu"``, ``"cuda:1"`` …
        info: the checkpoint's :class:`~segnet_domains.checkpoint.ModelInfo`;
            defaults describe ``model`` with percentile normalisation.
        precision: ``"auto"`` (fastest safe for the device), ``"fp32"``,
            ``"bf16"`` or ``"fp16"``.
        batch_size: slices/tiles per forward pass.
        tta: average the softmax over horizontal and vertical flips.
        backend: ``"torch"``, or ``"onnxruntime"`` to export ``model`` in memory
            and run it there.

    Example:
        >>> seg = Segmenter(SegNet(1, 2), device="cpu")
        >>> seg.predict(np.zeros((64, 64), np.float32)).shape
        (64, 64)
    """

    def __init__(
        self,
        model: nn.Module | Backend,
        device: str | torch.device = "auto",
        info: ModelInfo | None = None,
        precision: str = "auto",
        batch_size: int = 8,
        tta: bool = False,
        backend: str = "torch",
    ) -> None:
        if isinstance(model, nn.Module):
            self.info = info if info is not None else make_info(model)
            if backend not in BACKENDS:
                raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
            if backend == "onnxruntime":
                self.backend: Backend = OnnxBackend.from_module(model, self.info, device, precision)
            else:
                self.backend = TorchBackend(model, device, precision)
        else:  # a ready backend (an .onnx file's session), described by ``info``
            if info is None:
                raise ValueError("a Segmenter built on a backend needs the model's info")
            self.info, self.backend = info, model
        self.batch_size = max(1, int(batch_size))
        self.tta = tta
        #: ``"segmentation"`` (softmax over classes) or ``"density"`` (a density map; :meth:`count`).
        self.head = str(self.info.args.get("head", "segmentation"))
        #: Density targets were scaled by this (checkpoint ``density_scale``); outputs are divided by it.
        self.density_scale = float(self.info.extra.get("density_scale", 1.0))

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        device: str | torch.device = "auto",
        backend: str = "auto",
        **kwargs: Any,
    ) -> Segmenter:
        """Load a checkpoint (safely) and configure the segmenter from its metadata.

        Args:
            path: a segnet-domains checkpoint, or an ONNX model from ``export-onnx``.
            device: where to run (``"auto"``, ``"cpu"``, ``"cuda:N"`` …).
            backend: ``"auto"`` (onnxruntime for ``.onnx`` files, else PyTorch),
                ``"torch"`` or ``"onnxruntime"`` (a ``.pt`` checkpoint is then
                exported in memory).
            **kwargs: ``precision``, ``batch_size``, ``tta``.
        """
        kind = resolve_backend(path, backend)
        if is_onnx(path):
            info = read_info(path)
            onnx = OnnxBackend(path, device=device, precision=kwargs.pop("precision", "auto"))
            return cls(onnx, info=info, **kwargs)
        ckpt = load_checkpoint(path)
        return cls(ckpt.model, device=device, info=ckpt.info, backend=kind, **kwargs)

    @property
    def num_classes(self) -> int:
        return self.info.out_channels

    @property
    def device(self) -> torch.device:
        """Where the network runs."""
        return self.backend.device

    @property
    def dtype(self) -> torch.dtype:
        """The network's compute dtype (softmax is always fp32)."""
        return self.backend.dtype

    @property
    def multiple(self) -> int:
        """Inputs are padded to a multiple of this (the network's total stride)."""
        return self.backend.multiple

    @property
    def model(self) -> nn.Module:
        """The prepared PyTorch network (PyTorch backend only)."""
        if not isinstance(self.backend, TorchBackend):
            raise AttributeError(f"a Segmenter on the {self.backend.name} backend has no PyTorch model")
        return self.backend.model

    @property
    def has_dropout(self) -> bool:
        """True if the model has Bayesian dropout to sample (Monte Carlo uncertainty).

        An ONNX model exported from a dropout checkpoint has it too, but cannot
        sample it: asking for Monte Carlo dropout there raises :class:`InputError`.
        """
        return self.backend.can_sample_dropout or bool(self.info.args.get("dropout"))

    # ------------------------------------------------------------------ core

    def _output(self, logits: torch.Tensor) -> torch.Tensor:
        """The head's output map: softmax probabilities, or persons per pixel for a density head."""
        if self.head == "density":
            return logits.float() / self.density_scale
        return torch.softmax(logits.float(), dim=1)

    @torch.inference_mode()
    def forward(self, batch: torch.Tensor | np.ndarray, mc_dropout: bool = False) -> torch.Tensor:
        """Softmax probabilities (density: persons per pixel) for a normalised ``B×C×H×W`` batch.

        Pads to the network's stride, applies test-time flips if enabled, runs
        the backend and returns ``B×K×H×W`` float32 on the CPU (``K = 1`` for a
        density head).

        Raises:
            InputError: Monte Carlo dropout asked of a backend that cannot sample it (onnxruntime).
        """
        x = torch.as_tensor(batch, dtype=torch.float32)
        sample = mc_dropout and self.has_dropout
        if sample and not self.backend.can_sample_dropout:
            raise InputError(
                None,
                f"Monte Carlo dropout (uncertainty) needs the PyTorch backend; the {self.backend.name} "
                "backend runs the exported graph, where dropout is identity",
            )
        flips: list[tuple[int, ...]] = [()] + ([(-1,), (-2,)] if self.tta else [])
        total = None
        for dims in flips:  # flip the image itself, then pad: padding stays bottom/right
            xi, size = pad_to_multiple(x.flip(dims) if dims else x, self.multiple)
            p = crop(self._output(self.backend(xi, mc_dropout=sample)), size)
            p = p.flip(dims) if dims else p
            total = p if total is None else total + p
        assert total is not None
        return (total / len(flips)).cpu().contiguous()

    # ------------------------------------------------------------------ 2D images

    def _image(self, image: np.ndarray, source: str) -> np.ndarray:
        return ImageAdapter(self.info.in_channels, self.info.normalization)(image, source)

    def _require_head(self, head: str, source: str) -> None:
        if self.head != head:
            hint = "predict()" if head == "density" else "predict_density()/count() (predict-image --count)"
            raise InputError(source, f"the checkpoint is a {self.head} model, not {head}: use {hint}")

    def predict_proba(self, image: np.ndarray, source: str = "image") -> np.ndarray:
        """Class probabilities ``K×H×W`` float32 (sum to 1 over K) for a 2D image.

        Args:
            image: ``H×W``, ``H×W×C`` or ``C×H×W``, any numeric dtype.
            source: name used in error messages (the file name).

        Raises:
            InputError: a density (counting) model.
        """
        self._require_head("segmentation", source)
        return self.forward(self._image(image, source)[None])[0].numpy()

    def predict_density(
        self,
        image: np.ndarray,
        source: str = "image",
        tile_size: int | None = None,
        overlap: int | None = None,
    ) -> np.ndarray:
        """Crowd density ``H×W`` float32 (persons per pixel) of a 2D image; a density head only.

        An image larger than ``tile_size`` (default: the checkpoint's
        ``tile_size``; none: never tiled) in either side is cut into
        overlapping tiles and blended with
        :func:`~segnet_domains.tiling.predict_proba_tiled`, which normalises
        the whole image once, so tiled and whole-image maps differ only where a
        tile edge cuts the receptive field; blending takes a weighted average
        of the tiles' densities, so the count stays the sum of the map.

        Raises:
            InputError: a segmentation model, or an image the checkpoint cannot take.
        """
        self._require_head("density", source)
        tile = tile_size or self.info.tile_size
        h, w = to_channel_first(image, self.info.in_channels, source).shape[1:]
        if tile and max(h, w) > int(tile):
            return predict_proba_tiled(self, image, int(tile), overlap, source=source)[0]
        return self.forward(self._image(image, source)[None])[0, 0].numpy()

    def count(self, image: np.ndarray, source: str = "image", tile_size: int | None = None) -> float:
        """Estimated number of people in a 2D image: the sum of :meth:`predict_density`."""
        return float(self.predict_density(image, source, tile_size).sum(dtype=np.float64))

    def predict(self, image: np.ndarray, source: str = "image") -> np.ndarray:
        """Labels ``H×W`` (uint8 when K ≤ 256) for a 2D image."""
        return _labels(self.predict_proba(image, source))

    def predict_uncertainty(
        self, image: np.ndarray, samples: int = 10, source: str = "image"
    ) -> tuple[np.ndarray, np.ndarray]:
        """Monte Carlo dropout (Bayesian SegNet): mean and variance of the softmax over ``samples`` passes.

        Returns:
            ``(mean, variance)``, each ``K×H×W`` float32.

        Raises:
            ValueError: the model has no dropout to sample.
        """
        if not self.has_dropout:
            raise ValueError("the model has no dropout (train with dropout>0 for Monte Carlo uncertainty)")
        x = self._image(image, source)[None]
        draws = torch.stack([self.forward(x, mc_dropout=True)[0] for _ in range(samples)])
        return draws.mean(0).numpy(), draws.var(0, unbiased=False).numpy()

    # ------------------------------------------------------------------ volumes

    def iter_volume(
        self,
        volume: np.ndarray,
        axis: int | None = None,
        return_proba: bool = False,
        source: str = "volume",
        mc_samples: int = 0,
        batch_size: int | None = None,
    ) -> Generator[tuple[int, int], None, Any]:
        """Generator form of :meth:`predict_volume`: yields ``(slices done, total)``, returns the result.

        Front ends that need progress or cancellation (napari's thread worker)
        drive this directly; stopping the generator stops the work.
        """
        self._require_head("segmentation", source)
        axis = self.info.slice_axis if axis is None else axis
        axis = 2 if axis is None else axis
        adapter = VolumeSliceAdapter(axis, self.info.context, self.info.normalization)
        if self.info.bands != 1:
            raise InputError(
                source,
                f"a volume has 1 channel but the checkpoint expects {self.info.bands} "
                f"(in_channels={self.info.in_channels}, context={self.info.context})",
            )
        slices = adapter.prepare(volume, source)
        n, k = slices.shape[0], self.num_classes
        out_labels = np.empty(slices.shape, dtype=np.uint8 if k <= 256 else np.int32)
        proba = np.empty((n, k, *slices.shape[1:]), np.float32) if return_proba or mc_samples else None
        var = np.empty_like(proba) if mc_samples else None
        bs = batch_size or self.batch_size
        yield 0, n
        for sl, batch in adapter.batches(slices, bs):
            if mc_samples:
                draws = torch.stack([self.forward(batch, mc_dropout=True) for _ in range(mc_samples)])
                p = draws.mean(0)
                var[sl] = draws.var(0, unbiased=False).numpy()  # type: ignore[index]
            else:
                p = self.forward(batch)
            out_labels[sl] = p.argmax(1).numpy()
            if proba is not None:
                proba[sl] = p.numpy()
            yield sl.stop, n
        labels = adapter.restore(out_labels)
        if mc_samples:
            return labels, adapter.restore(proba), adapter.restore(var)  # type: ignore[arg-type]
        if return_proba:
            return labels, adapter.restore(proba)  # type: ignore[arg-type]
        return labels

    def predict_volume(
        self,
        volume: np.ndarray,
        axis: int | None = None,
        return_proba: bool = False,
        progress: bool | ProgressCallback = False,
        source: str = "volume",
        batch_size: int | None = None,
    ) -> Any:
        """Segment a 3D volume slice by slice along ``axis`` (default: the checkpoint's, else 2).

        Args:
            volume: 3D array (a singleton 4th dimension is dropped).
            axis: slicing axis of ``volume``.
            return_proba: also return ``K×(volume shape)`` probabilities.
            progress: ``True`` for a tqdm bar, or a ``callback(done, total)``.
            source: name used in error messages.
            batch_size: slices per forward pass (default: the segmenter's).

        Returns:
            Labels with ``volume``'s shape, or ``(labels, proba)``.
        """
        gen = self.iter_volume(volume, axis, return_proba, source, batch_size=batch_size)
        return _drive(gen, progress, desc=f"segmenting {Path(source).name}")


def resolve_backend(path: str | Path, backend: str = "auto") -> str:
    """The backend that runs ``path``: ``"auto"`` is onnxruntime for ``.onnx`` files, else PyTorch.

    Raises:
        InputError: an unknown backend name, or an ``.onnx`` file asked to run under PyTorch.
    """
    if backend not in ("auto", *BACKENDS):
        raise InputError(None, f"backend must be auto, {' or '.join(BACKENDS)}, not {backend!r}")
    if is_onnx(path):
        if backend == "torch":
            raise InputError(path, "an ONNX model runs with the onnxruntime backend, not torch")
        return "onnxruntime"
    return "torch" if backend == "auto" else backend


def _labels(proba: np.ndarray) -> np.ndarray:
    labels = proba.argmax(0)
    return labels.astype(np.uint8 if proba.shape[0] <= 256 else np.int32)


def _drive(gen: Generator[tuple[int, int], None, Any], progress: bool | ProgressCallback, desc: str) -> Any:
    bar = None
    try:
        while True:
            done, total = next(gen)
            if callable(progress):
                progress(done, total)
            elif progress:
                if bar is None:
                    bar = tqdm(total=total, desc=desc, unit="slice")
                bar.update(done - bar.n)
    except StopIteration as stop:
        return stop.value
    finally:
        if bar is not None:
            bar.close()
