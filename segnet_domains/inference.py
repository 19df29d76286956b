"""The one inference path every front end uses: :class:`Segmenter`.

It owns device and precision choice, padding, test-time flips and every way
of running the model that a front end needs, so none re-implements one:

* one image (:meth:`Segmenter.predict`), a batch of frames
  (:meth:`Segmenter.predict_batch`), a big image in blended tiles
  (:meth:`Segmenter.predict_proba_tiled`), a volume slice by slice
  (:meth:`Segmenter.predict_volume`) or one slice of it with its 2.5D
  context (:meth:`Segmenter.predict_slice`);
* Monte Carlo dropout (:meth:`Segmenter.sample`): the mean and the per-class
  variance of the softmax over the samples, seedable;
* each long run also as a generator (``iter_*``) yielding ``(done, total)``,
  which :func:`drive` turns into a tqdm bar or callbacks and a front end
  (napari's thread worker, the web demo) iterates itself: stopping
  iterating cancels the work, closing the generator cleans it up.

The fast paths:

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

import contextlib
import math
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from segnet_domains.adapters import ImageAdapter, VolumeSliceAdapter, crop, pad_to_multiple, to_channel_first
from segnet_domains.backends import BACKENDS, Backend, OnnxBackend, TorchBackend
from segnet_domains.checkpoint import ModelInfo, is_onnx, load_checkpoint, make_info, read_info
from segnet_domains.devices import read_only_tensor, to_device, to_host
from segnet_domains.errors import InputError, SetupError
from segnet_domains.runtime import one_thread_if_small
from segnet_domains.threads import prefetch
from segnet_domains.tiling import DEFAULT_TILE, StreamBlender, TileGrid, default_overlap, tile_batches

ProgressCallback = Callable[[int, int], Any]
#: What a step generator returns.
R = TypeVar("R")
#: ``(done, total)``: what every ``iter_*`` generator yields.
Steps = Generator[tuple[int, int], None, R]


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
        compile: ``torch.compile`` the network (``True``: inductor, weights
            frozen on the CPU; a string: that ``torch.compile`` backend). Where
            compilation is unavailable or fails, one warning and eager.
            PyTorch backend only.

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
        compile: bool | str = False,
    ) -> None:
        if compile and (backend != "torch" or not isinstance(model, nn.Module)):
            raise ValueError("compile needs the PyTorch backend (onnxruntime optimises its own graph)")
        if isinstance(model, nn.Module):
            self.info = info if info is not None else make_info(model)
            if backend not in BACKENDS:
                raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
            if backend == "onnxruntime":
                self.backend: Backend = OnnxBackend.from_module(model, self.info, device, precision)
            else:
                self.backend = TorchBackend(model, device, precision, compile=compile)
        else:  # a ready backend (an .onnx file's session), described by ``info``
            if info is None:
                raise ValueError("a Segmenter built on a backend needs the model's info")
            self.info, self.backend = info, model
        self.batch_size = max(1, int(batch_size))
        self.tta = tta
        #: Where inputs are prepared (normalised, batched): the network's device under PyTorch,
        #: the host for onnxruntime (which takes host arrays).
        torch_backend = isinstance(self.backend, TorchBackend)
        self.input_device = self.device if torch_backend else torch.device("cpu")
        #: Whether the network takes channels-last input (PyTorch on the CPU or CUDA): inputs are
        #: normalised and padded straight into that layout, so the backend copies nothing.
        self.input_channels_last = torch_backend and self.device.type in {"cpu", "cuda"}
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

        The one place a front end builds a segmenter from a file: every
        problem is an :class:`InputError` naming ``path``.

        Args:
            path: a segnet-domains checkpoint, or an ONNX model from ``export-onnx``.
            device: where to run (``"auto"``, ``"cpu"``, ``"cuda:N"`` …).
            backend: ``"auto"`` (onnxruntime for ``.onnx`` files, else PyTorch),
                ``"torch"`` or ``"onnxruntime"`` (a ``.pt`` checkpoint is then
                exported in memory).
            **kwargs: ``precision``, ``batch_size``, ``tta``, ``compile``.

        Raises:
            InputError: a missing, corrupt or foreign checkpoint
                (:class:`~segnet_domains.errors.CheckpointError`), or a device,
                precision or backend that does not exist here
                (:class:`~segnet_domains.errors.SetupError`, also a ``ValueError``).
        """
        kind = resolve_backend(path, backend)
        try:
            if is_onnx(path):
                info = read_info(path)
                onnx = OnnxBackend(path, device=device, precision=kwargs.pop("precision", "auto"))
                return cls(onnx, info=info, **kwargs)
            ckpt = load_checkpoint(path)
            return cls(ckpt.model, device=device, info=ckpt.info, backend=kind, **kwargs)
        except InputError:
            raise
        except ValueError as exc:  # a device, precision or backend that doesn't exist here
            raise SetupError(path, str(exc)) from None

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
        return self.info.has_dropout or self.backend.can_sample_dropout

    # ------------------------------------------------------------------ core

    def _output(self, logits: torch.Tensor) -> torch.Tensor:
        """The head's output map: softmax probabilities, or persons per pixel for a density head."""
        if self.head == "density":
            return logits.float() / self.density_scale
        return class_softmax(logits)

    @torch.inference_mode()
    def forward(self, batch: torch.Tensor | np.ndarray, mc_dropout: bool = False) -> torch.Tensor:
        """Softmax probabilities (density: persons per pixel) for a normalised ``B×C×H×W`` batch.

        Pads to the network's stride, applies test-time flips if enabled, runs
        the backend and returns ``B×K×H×W`` float32 on the CPU (``K = 1`` for a
        density head). Everything but the final copy to the host happens on
        the network's device.

        Raises:
            InputError: Monte Carlo dropout asked of a backend that cannot sample it (onnxruntime).
        """
        return to_host(self._on_device(batch, mc_dropout)).contiguous()

    @torch.inference_mode()
    def proba_on_device(self, batch: torch.Tensor | np.ndarray, mc_dropout: bool = False) -> torch.Tensor:
        """:meth:`forward`'s output left on the network's device, in the layout it came in.

        For callers that go on computing there (the tiler joins it with its
        validity band before the one copy to the host).
        """
        return self._on_device(batch, mc_dropout)

    @torch.inference_mode()
    def forward_labels(
        self, batch: torch.Tensor | np.ndarray, return_proba: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Labels ``B×H×W`` (uint8 up to 256 classes, else int32) of a normalised batch, on the CPU.

        The argmax is taken where the network runs, and only the labels cross
        to the host; without test-time flips it is the argmax of the class
        scores (the softmax's own argmax), so no softmax is computed at all.

        Args:
            batch: normalised ``B×C×H×W`` network input.
            return_proba: also return :meth:`forward`'s probabilities (then
                the labels are their argmax).
        """
        out = self._on_device(batch, scores=not return_proba)
        labels = to_host(class_labels(out))
        return (labels, to_host(out).contiguous()) if return_proba else labels

    def _on_device(
        self, batch: torch.Tensor | np.ndarray, mc_dropout: bool = False, scores: bool = False
    ) -> torch.Tensor:
        """``B×K×H×W`` on the network's device, cropped: :meth:`forward`'s output before the host copy.

        With ``scores`` (labels only), a segmentation model without flips
        gives its raw class scores instead: same argmax, no softmax pass.
        """
        x = to_device(torch.as_tensor(batch), self.input_device).to(torch.float32)
        sample = mc_dropout and self.has_dropout
        if sample and not self.backend.can_sample_dropout:
            raise InputError(
                None,
                f"Monte Carlo dropout (uncertainty) needs the PyTorch backend; the {self.backend.name} "
                "backend runs the exported graph, where dropout is identity",
            )
        flips: list[tuple[int, ...]] = [()] + ([(-1,), (-2,)] if self.tta else [])
        dtype = self.backend.input_dtype  # padded straight into: the backend casts nothing
        total = None
        for dims in flips:  # flip the image itself, then pad: padding stays bottom/right
            with one_thread_if_small(x.numel()) if x.device.type == "cpu" else contextlib.nullcontext():
                xi, size = pad_to_multiple(x.flip(dims) if dims else x, self.multiple, dtype)
            out = crop(self.backend(xi, mc_dropout=sample), size)
            if scores and len(flips) == 1 and self.head == "segmentation":
                return out
            p = self._output(out)  # a new tensor: summed into in place
            p = p.flip(dims) if dims else p
            total = p if total is None else total.add_(p)
        assert total is not None
        return total.div_(len(flips)) if len(flips) > 1 else total

    # ------------------------------------------------------------------ Monte Carlo dropout

    def iter_sample(
        self, batch: torch.Tensor | np.ndarray, samples: int, seed: int | None = None
    ) -> Steps[tuple[torch.Tensor, torch.Tensor]]:
        """Generator form of :meth:`sample`: yields ``(samples done, samples)``, returns ``(mean, var)``."""
        return self._draws(batch, samples, _DropoutStream(seed, self.device))

    def sample(
        self, batch: torch.Tensor | np.ndarray, samples: int, seed: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Monte Carlo dropout (Bayesian SegNet, Kendall et al. 2017, https://arxiv.org/abs/1511.02680).

        ``samples`` forward passes of a normalised ``B×C×H×W`` batch with
        dropout active. The one definition every front end uses: the mean of
        the softmax over the samples, and its variance per class (population
        variance, ``unbiased=False``). A front end that shows one uncertainty
        band reduces it with :func:`class_mean_variance`.

        Args:
            batch: normalised network input.
            samples: passes (at least 1).
            seed: draw the dropout masks from a private stream seeded with
                this: the same seed gives the same result, and the caller's
                random numbers are not touched. ``None``: torch's global stream.

        Returns:
            ``(mean, variance)``, each ``B×K×H×W`` float32 on the CPU.

        Raises:
            NoDropoutError: the model has no dropout.
            InputError: a backend that cannot sample dropout (onnxruntime).
        """
        return drive(self.iter_sample(batch, samples, seed))

    def _draws(
        self, batch: torch.Tensor | np.ndarray, samples: int, stream: _DropoutStream
    ) -> Steps[tuple[torch.Tensor, torch.Tensor]]:
        self.info.require_dropout(None, hint="; this model has no dropout")
        n = max(1, int(samples))
        draws = []
        yield 0, n
        for s in range(n):
            with stream.active():
                draws.append(self.forward(batch, mc_dropout=True))
            yield s + 1, n
        stack = torch.stack(draws)
        return stack.mean(0), stack.var(0, unbiased=False)

    def _pass(
        self, batch: np.ndarray, samples: int, stream: _DropoutStream
    ) -> Steps[tuple[torch.Tensor, torch.Tensor | None]]:
        """``(probabilities, variance or None)``: one plain pass, or ``samples`` Monte Carlo passes."""
        if samples:
            return (yield from self._draws(batch, samples, stream))
        yield 0, 1
        p = self.forward(batch)
        yield 1, 1
        return p, None

    # ------------------------------------------------------------------ 2D images

    def _image(self, image: np.ndarray, source: str) -> torch.Tensor:
        """``C×H×W`` network input on :attr:`input_device`: the raw pixels cross, normalised there.

        A small image is prepared on this thread alone (:func:`~segnet_domains.runtime.one_thread_if_small`).
        """
        with one_thread_if_small(math.prod(np.shape(image))):  # np.size of a tensor is its method
            return ImageAdapter(self.info.in_channels, self.info.normalization).tensor(
                image, source, self.input_device, self.input_channels_last
            )

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
        overlapping tiles and blended with :meth:`predict_proba_tiled`, which
        normalises the whole image once, so tiled and whole-image maps differ
        only where a tile edge cuts the receptive field; blending takes a
        weighted average of the tiles' densities, so the count stays the sum
        of the map.

        Raises:
            InputError: a segmentation model, or an image the checkpoint cannot take.
        """
        self._require_head("density", source)
        tile = tile_size or self.info.tile_size
        h, w = to_channel_first(image, self.info.in_channels, source).shape[1:]
        if tile and max(h, w) > int(tile):
            return self.predict_proba_tiled(image, int(tile), overlap, source=source)[0]
        return self.forward(self._image(image, source)[None])[0, 0].numpy()

    def count(self, image: np.ndarray, source: str = "image", tile_size: int | None = None) -> float:
        """Estimated number of people in a 2D image: the sum of :meth:`predict_density`."""
        return float(self.predict_density(image, source, tile_size).sum(dtype=np.float64))

    def predict(self, image: np.ndarray, source: str = "image") -> np.ndarray:
        """Labels ``H×W`` (uint8 when K ≤ 256) for a 2D image: the argmax of :meth:`predict_proba`.

        Raises:
            InputError: a density (counting) model.
        """
        self._require_head("segmentation", source)
        return self.forward_labels(self._image(image, source)[None])[0].numpy()

    def iter_uncertainty(
        self, image: np.ndarray, samples: int = 10, source: str = "image", seed: int | None = None
    ) -> Steps[tuple[np.ndarray, np.ndarray]]:
        """Generator form of :meth:`predict_uncertainty`: yields ``(samples done, samples)``."""
        self._require_head("segmentation", source)
        self.info.require_dropout(source, hint="; this model has no dropout")
        mean, var = yield from self.iter_sample(self._image(image, source)[None], samples, seed)
        return mean[0].numpy(), var[0].numpy()

    def predict_uncertainty(
        self, image: np.ndarray, samples: int = 10, source: str = "image", seed: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Monte Carlo dropout of a 2D image: :meth:`sample`'s mean and per-class variance.

        Returns:
            ``(mean, variance)``, each ``K×H×W`` float32.

        Raises:
            NoDropoutError: the model has no dropout to sample (also a ``ValueError``).
        """
        return drive(self.iter_uncertainty(image, samples, source, seed))

    def iter_frames(
        self, frames: np.ndarray | Iterable[np.ndarray], source: str = "frames", batch_size: int | None = None
    ) -> Iterator[np.ndarray]:
        """Labels of each frame, in order, ``batch_size`` frames of one size per forward pass.

        Frames stream in and out (a video, a data set split): at most one
        batch is held. Each frame is normalised on its own, exactly as
        :meth:`predict` does, so the labels equal frame-by-frame prediction.

        Args:
            frames: an ``N×C×H×W`` (``N×H×W``, ``N×H×W×C``) array, or any
                iterable of 2D images (sizes may differ).
            source: name used in error messages (``"<source>[i]"``).
            batch_size: frames per pass (default: the segmenter's).
        """
        self._require_head("segmentation", source)
        bs = int(batch_size or self.batch_size)
        pending: list[torch.Tensor] = []
        for i, frame in enumerate(frames):
            x = self._image(frame, f"{source}[{i}]")
            if pending and (x.shape != pending[0].shape or len(pending) == bs):
                yield from self._frame_labels(pending)
                pending = []
            pending.append(x)
        if pending:
            yield from self._frame_labels(pending)

    def _frame_labels(self, batch: list[torch.Tensor]) -> Iterator[np.ndarray]:
        yield from self.forward_labels(stack_images(batch, self.input_channels_last)).numpy()

    def predict_batch(
        self, frames: np.ndarray | Iterable[np.ndarray], source: str = "frames", batch_size: int | None = None
    ) -> np.ndarray | list[np.ndarray]:
        """Labels of a batch of frames (CamVid-style video frames, a split of a data set).

        Returns:
            ``N×H×W`` labels for an array of frames; a list of ``H×W`` labels
            for an iterable (frames of several sizes).
        """
        labels = list(self.iter_frames(frames, source, batch_size))
        return np.stack(labels) if isinstance(frames, np.ndarray) else labels

    # ------------------------------------------------------------------ big 2D images in tiles

    def resolve_tiling(self, tile_size: int | None = None, overlap: int | None = None) -> tuple[int, int]:
        """``(tile_size, overlap)`` from the arguments, else the checkpoint, else 512 and ``tile_size // 4``.

        Raises:
            ValueError: an overlap not in ``[0, tile_size)``.
        """
        tile_size = int(tile_size or self.info.tile_size or DEFAULT_TILE)
        if overlap is None:
            overlap = (
                self.info.tile_overlap if self.info.tile_overlap is not None else default_overlap(tile_size)
            )
        if not 0 <= int(overlap) < tile_size:
            raise ValueError(
                f"overlap must be in [0, {tile_size}) for {tile_size}-pixel tiles, got {overlap}"
            )
        return tile_size, int(overlap)

    def iter_proba_tiled(
        self,
        image: np.ndarray,
        tile_size: int | None = None,
        overlap: int | None = None,
        batch_size: int | None = None,
        source: str = "image",
        kind: str = "cosine",
    ) -> Steps[np.ndarray]:
        """Generator form of :meth:`predict_proba_tiled`: yields ``(tiles done, total)``, returns ``K×H×W``.

        The tiles are blended by :class:`~segnet_domains.tiling.StreamBlender`,
        the raster tiler's own blender (one blender for scenes and in-memory
        images); its finished blocks are written into the result.
        """
        tile_size, overlap = self.resolve_tiling(tile_size, overlap)
        # Normalise the WHOLE image once: percentile/zscore statistics must not change from tile to tile.
        x = self._image(image, source)
        _, h, w = x.shape
        grid = TileGrid.create(h, w, tile_size, overlap, align=self.multiple)
        blender = StreamBlender(grid, self.num_classes, kind, device=self.device)  # blends where it ran
        proba = np.empty((self.num_classes, h, w), np.float32)
        done, total = 0, len(grid)
        yield done, total
        for i in range(grid.shape[0]):
            for chunk in tile_batches(grid.row(i), batch_size or self.batch_size):
                tiles = [x[(slice(None), *t.slices)] for t in chunk]
                p = self.proba_on_device(stack_images(tiles, self.input_channels_last))
                block = blender.add(chunk, p)
                n, k = block.weights.shape
                blended = to_host(blender.blended(block)).numpy()
                proba[:, block.row : block.row + n, block.col : block.col + k] = blended
                done += len(chunk)
                yield done, total
        return proba

    def predict_proba_tiled(
        self,
        image: np.ndarray,
        tile_size: int | None = None,
        overlap: int | None = None,
        batch_size: int | None = None,
        progress: bool | ProgressCallback | None = None,
        source: str = "image",
    ) -> np.ndarray:
        """Class probabilities of a big in-memory 2D image, tile by tile with smooth blending.

        The image is normalised once as a whole with the checkpoint's
        normaliser (so percentile statistics do not differ between tiles), cut
        into :class:`~segnet_domains.tiling.TileGrid` windows aligned to the
        network's stride, run in batches and blended with
        :func:`~segnet_domains.tiling.blend_weights`. The result matches
        :meth:`predict_proba` except where a tile edge cuts the receptive
        field; the overlap should cover it.

        Args:
            image: ``H×W``, ``H×W×C`` or ``C×H×W``, any numeric dtype.
            tile_size: tile edge (default: the checkpoint's ``tile_size``, else 512).
            overlap: pixels shared by neighbours (default: the checkpoint's
                ``tile_overlap``, else ``tile_size // 4``).
            batch_size: tiles per forward pass (default: the segmenter's).
            progress: ``True`` for a tqdm bar, or ``callback(tiles done, total)``.
            source: name used in error messages.

        Returns:
            ``K×H×W`` float32 probabilities (sum to 1 over K).

        Raises:
            InputError: an image the checkpoint cannot take (channels, size, NaN).
        """
        gen = self.iter_proba_tiled(image, tile_size, overlap, batch_size, source)
        return drive(gen, progress or False, desc="tiles", unit="tile")

    # ------------------------------------------------------------------ volumes

    def volume_axis(self, axis: int | None = None) -> int:
        """The slicing axis: ``axis``, else the checkpoint's ``slice_axis``, else 2."""
        if axis is not None:
            return axis
        return 2 if self.info.slice_axis is None else self.info.slice_axis

    def _volume_adapter(self, axis: int | None, source: str) -> VolumeSliceAdapter:
        """The slice adapter for ``axis`` (2.5D context and normalisation from the checkpoint)."""
        self._require_head("segmentation", source)
        if self.info.bands != 1:
            raise InputError(
                source,
                f"a volume has 1 channel but the checkpoint expects {self.info.bands} "
                f"(in_channels={self.info.in_channels}, context={self.info.context})",
            )
        return VolumeSliceAdapter(self.volume_axis(axis), self.info.context, self.info.normalization)

    def iter_volume(
        self,
        volume: np.ndarray,
        axis: int | None = None,
        return_proba: bool = False,
        source: str = "volume",
        mc_samples: int = 0,
        batch_size: int | None = None,
        seed: int | None = None,
    ) -> Steps[Any]:
        """Generator form of :meth:`predict_volume`: yields ``(slices done, total)``, returns the result.

        With ``mc_samples`` each batch of slices is sampled with :meth:`sample`
        (one dropout stream for the volume, seeded by ``seed``) and the result
        is ``(labels, mean probabilities, per-class variance)``.
        """
        adapter = self._volume_adapter(axis, source)
        slices, normalize = adapter.raw_slices(volume, source)  # each batch normalised as it is gathered
        n, k = slices.shape[0], self.num_classes
        out_labels = np.empty(slices.shape, dtype=numpy_label_dtype(k))
        proba = np.empty((n, k, *slices.shape[1:]), np.float32) if return_proba or mc_samples else None
        var = np.empty_like(proba) if mc_samples else None
        stream = _DropoutStream(seed, self.device)
        # the next batch is gathered (and sent to the device) by a thread while the model runs
        batches = prefetch(
            ((sl, to_device(torch.from_numpy(b), self.input_device))
             for sl, b in adapter.batches(slices, batch_size or self.batch_size, normalize)),
            depth=2,
        )  # fmt: skip
        yield 0, n
        try:
            for sl, batch in batches:
                if mc_samples:
                    p, v = drive(self._draws(batch, mc_samples, stream))
                    var[sl] = v.numpy()  # type: ignore[index]
                    labels = class_labels(p)
                elif proba is not None:
                    labels, p = self.forward_labels(batch, return_proba=True)  # type: ignore[misc]
                else:
                    labels = self.forward_labels(batch)  # type: ignore[assignment]
                out_labels[sl] = labels.numpy()
                if proba is not None:
                    proba[sl] = p.numpy()
                yield sl.stop, n
        finally:
            batches.close()
        return _volume_result(adapter, out_labels, proba if return_proba or mc_samples else None, var)

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
        return drive(gen, progress, desc=f"segmenting {Path(source).name}", unit="slice")

    def iter_slice(
        self,
        volume: np.ndarray,
        index: int,
        axis: int | None = None,
        return_proba: bool = False,
        source: str = "volume",
        mc_samples: int = 0,
        seed: int | None = None,
    ) -> Steps[Any]:
        """Segment one slice of a volume: exactly :meth:`predict_volume`'s result at that slice.

        Yields ``(passes done, passes)``. The slice is stacked with the
        checkpoint's 2.5D neighbours (edges repeated) and normalised with
        whole-volume statistics, as in a whole-volume run.

        Args:
            volume: 3D array.
            index: the slice along ``axis``.
            axis: slicing axis (default: :meth:`volume_axis`).
            return_proba: also return ``K×H×W`` probabilities.
            source: name used in error messages.
            mc_samples: Monte Carlo passes (0: none); then ``(labels, mean, variance)``.
            seed: dropout stream seed (see :meth:`sample`).

        Returns:
            ``H×W`` labels of the slice, ``(labels, proba)`` or ``(labels, mean, variance)``.

        Raises:
            InputError: not a 3D single-band volume for this checkpoint, or
                ``index`` outside the volume.
        """
        adapter = self._volume_adapter(axis, source)
        slices, normalize = adapter.raw_slices(volume, source)  # whole-volume normalisation statistics
        n, k = slices.shape[0], adapter.context
        if not 0 <= index < n:
            raise InputError(source, f"slice {index} is outside 0..{n - 1} along axis {adapter.axis}")
        lo = max(0, index - k)  # the slice and its 2.5D neighbours, edges repeated as in predict_volume
        _, stack = next(adapter.batches(slices[lo : index + k + 1], n, normalize))
        x = stack[index - lo : index - lo + 1]
        p, v = yield from self._pass(x, mc_samples, _DropoutStream(seed, self.device))
        labels = labels_from_proba(p[0].numpy())  # the argmax predict_volume takes, on the host: one slice
        if mc_samples:
            return labels, p[0].numpy(), v[0].numpy()  # type: ignore[index]
        return (labels, p[0].numpy()) if return_proba else labels

    def predict_slice(self, volume: np.ndarray, index: int, **options: Any) -> Any:
        """:meth:`iter_slice` run to its end (same arguments)."""
        return drive(self.iter_slice(volume, index, **options))


@dataclass
class SegmenterSpec:
    """How to build a :class:`Segmenter` anywhere (a Dask worker too): ``from_checkpoint``'s arguments."""

    checkpoint: str
    device: str = "auto"
    precision: str = "auto"
    batch_size: int = 8
    tta: bool = False
    backend: str = "auto"
    compile: bool = False

    def build(self) -> Segmenter:
        """The segmenter (raises :class:`InputError` naming the checkpoint, as ``from_checkpoint`` does)."""
        return Segmenter.from_checkpoint(
            self.checkpoint,
            device=self.device,
            precision=self.precision,
            batch_size=self.batch_size,
            tta=self.tta,
            backend=self.backend,
            compile=self.compile,
        )


def _volume_result(
    adapter: VolumeSliceAdapter, labels: np.ndarray, proba: np.ndarray | None, var: np.ndarray | None
) -> Any:
    """:meth:`Segmenter.iter_volume`'s result in the volume's axis order."""
    out = adapter.restore(labels)
    if var is not None:
        return out, adapter.restore(proba), adapter.restore(var)  # type: ignore[arg-type]
    if proba is not None:
        return out, adapter.restore(proba)
    return out


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


def stack_images(images: Sequence[torch.Tensor], channels_last: bool = False) -> torch.Tensor:
    """``torch.stack`` of ``C×H×W`` network inputs into a batch, in channels-last memory if asked.

    ``torch.stack`` writes a channel-first batch whatever its inputs' layout;
    for a channels-last network that is a transposing copy here and another in
    the backend. Stacked into a channels-last batch, channel-innermost inputs
    (:meth:`Segmenter._image`'s) are copied as they lie: eight 360×480 RGB
    frames 13.0 → 4.5 ms (torch 2.13, 2-core AMD EPYC).
    """
    if not channels_last:
        return torch.stack(list(images))
    first = images[0]
    shape = (len(images), *first.shape)
    out = torch.empty(shape, dtype=first.dtype, device=first.device, memory_format=torch.channels_last)
    for i, x in enumerate(images):
        out[i] = x
    return out


def label_dtype(classes: int) -> torch.dtype:
    """The labels' dtype: uint8 for up to 256 classes, else int32."""
    return torch.uint8 if classes <= 256 else torch.int32


def numpy_label_dtype(classes: int) -> np.dtype:
    """:func:`label_dtype` as a numpy dtype (for labels computed or stored on the host)."""
    return torch.empty(0, dtype=label_dtype(classes)).numpy().dtype


def class_labels(scores: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """Labels: the argmax over the class axis ``dim``, in :func:`label_dtype`, where ``scores`` lies.

    The one argmax of every path that turns scores or probabilities into
    labels. It takes ``max(dim).indices`` rather than ``argmax(dim)``: the same
    indices (the first maximum wins, NaN counts as the maximum), but torch's
    CPU argmax over the channel axis of an NCHW tensor takes a slow reduction
    path: 248 against 24 ms for 8×4×512², 53 against 2.9 ms for 8×2×240²
    (torch 2.13, 2-core AMD EPYC).

    Two classes on the CPU (lesion or vessel against background) are one
    comparison, ``scores[1] > scores[0]`` (a tie is class 0, as the first
    maximum wins), once a sum of the scores shows they are all finite; NaN
    or infinite scores take ``max`` as above. For the network's channels-last
    bf16 output of 8 slices of 197×233: 1.7 → 0.35 ms (2-core AMD EPYC Zen 4).
    Three to :data:`FIRST_MAX_MAX_CLASSES` classes on the CPU take
    :func:`_first_maximum` (same labels).
    """
    scores = scores.detach()  # labels have no gradient; the fast paths compute in place on their own copies
    k = scores.shape[dim]
    cpu_float = scores.device.type == "cpu" and scores.is_floating_point()
    if cpu_float and k == 2 and bool(torch.isfinite(scores.sum())):  # one cheap pass: no NaN, no ±inf
        background, foreground = scores.unbind(dim)
        return torch.gt(foreground, background).view(torch.uint8)
    if cpu_float and 2 < k <= FIRST_MAX_MAX_CLASSES and scores.dim() > 1:
        labels = _first_maximum(scores, dim)
        if labels is not None:
            return labels
    return scores.max(dim).indices.to(label_dtype(k))


#: Most classes for which :func:`class_labels` takes :func:`_first_maximum` on the CPU.
FIRST_MAX_MAX_CLASSES = 16


def _first_maximum(scores: torch.Tensor, dim: int) -> torch.Tensor | None:
    """uint8 index of the first maximum along ``dim`` of CPU float scores; ``None`` where ``max`` must decide.

    ``None`` where a maximum is NaN (and for 16-bit scores, zero or infinite: :func:`_first_maximum_low`).

    Built from reductions torch vectorises across pixels instead of
    ``max(dim).indices``, whose CPU kernel walks each pixel's few classes
    one by one: the maximum (``amax``), where each class equals it, those hits
    weighted ``K, K-1, …, 1`` so that the largest weight marks the first
    maximum, and the ``amax`` of the weights. Channel-innermost scores are
    first copied with the classes outermost, where that reduction is fast.
    A NaN maximum equals nothing (no hit at that pixel): then ``None``, and
    the caller takes ``max``, which counts NaN as the maximum. Timed in
    alternation with ``max(dim).indices`` (torch 2.13, 2-core AMD EPYC Zen 4):
    the tiler's 4×4096×512 float32 block 45 → 6.6 ms; the network's
    channels-last bf16 output, 8×4×512² 19 → 11 ms, 12×360×480 3.6 → 3.1 ms,
    8×5×224×192 3.9 → 2.5 ms. Channels-last with 32 classes it was slower
    (6.8 → 7.6 ms, the copy), hence :data:`FIRST_MAX_MAX_CLASSES`.

    bf16 and fp16 scores (the network's own output on a CPU that computes
    in them) take :func:`_first_maximum_low`: torch compares them several
    times slower than it subtracts them.
    """
    k, given = scores.shape[dim], scores
    if scores.stride(dim) == 1:
        scores = scores.movedim(dim, 0).contiguous().movedim(0, dim)
    copied = scores.data_ptr() != given.data_ptr()  # (a 1×K×1×1 tensor is both layouts: not copied)
    low = scores.element_size() == 2  # bf16 or fp16: its bits read as int16
    top = scores.amax(dim, keepdim=True)
    weights = torch.arange(k, 0, -1, dtype=torch.int16 if low else torch.uint8)
    weights = weights.view([k if d == dim % scores.dim() else 1 for d in range(scores.dim())])
    if low:
        return _first_maximum_low(scores, top, weights, dim, in_place=copied)
    hits = torch.eq(scores, top).view(torch.uint8)
    first = hits.mul_(weights).amax(dim)
    if not bool(first.all()):  # a pixel without a hit: its maximum is NaN
        return None
    return first.neg_().add_(k)


def _first_maximum_low(
    scores: torch.Tensor, top: torch.Tensor, weights: torch.Tensor, dim: int, in_place: bool
) -> torch.Tensor | None:
    """:func:`_first_maximum` of 16-bit float scores, from their differences to the maximum ``top``.

    ``score - top`` is +0 exactly where a class reaches the maximum and
    negative elsewhere (the difference of two unequal finite values never
    rounds to zero: subnormals included, the default). Its bits read as
    int16 are then 0 for the hits and negative (the sign bit) for the rest;
    adding the weights ``K … 1`` (int16 ``weights``) and taking the ``amax``
    gives ``K`` minus the first maximum's index. A subtraction, an integer
    add and an integer ``amax`` against a float comparison that torch runs
    as slowly as a copy with a cast: 12×360×480 channels-last bf16, the
    reordering copy included, 2.1–2.3 → 1.3–1.4 ms; 8×4×512² 8.1–8.4 →
    6.8–6.9 ms; 8×5×224×192 1.8 → 1.4 ms (alternating, torch 2.13, 2-core
    AMD EPYC Zen 4). float32 keeps the comparison, which is fast there
    (the tiler's float32 block: 0.72 against 1.18 ms the other way).

    ``None`` where a maximum is not finite (NaN counts as the maximum for
    ``max``; ∞ − ∞ is NaN) or zero (−0 − +0 = −0 would hide a tie between
    −0 and +0): the caller then takes ``max``. With ``in_place`` (``scores``
    is this function's own copy) the differences overwrite the scores.
    """
    if top.numel() == 0:  # no pixels (aminmax has no identity): no labels
        return torch.empty(top.squeeze(dim).shape, dtype=torch.uint8, device=top.device)
    smallest, largest = torch.aminmax(top.abs())
    if not (bool(smallest > 0) and bool(torch.isfinite(largest))):
        return None
    key = torch.sub(scores, top, out=scores if in_place else None).view(torch.int16)
    return key.add_(weights).amax(dim).neg_().add_(scores.shape[dim]).to(torch.uint8)


def class_softmax(scores: torch.Tensor) -> torch.Tensor:
    """Softmax over the class axis (1) of ``B×K×H×W`` scores: a new contiguous float32 tensor, where they lie.

    On the CPU it copies the scores once into the row-major layout the host
    wants (:func:`channel_first_float32`) and runs torch's softmax kernel on that copy in place
    (``torch.softmax(p, 1, out=p)``): one streaming pass that shifts,
    exponentiates and normalises each pixel's classes together. Against the
    six elementwise passes it replaced (max, subtract, scale, ``exp2``, sum,
    divide), right after the network: 26–28 → 18 ms for the tiler's batch of
    8×4×512²; for one 12×360×480 frame the same within the noise (4.2–5.0 ms
    each); with the caches flushed, 132 → 103 ms for 16×12×360×480 (torch
    2.13, 2-core AMD EPYC). ``torch.softmax`` straight on the network's
    channels-last output, then the contiguous copy for the host, took about
    twice as long (6.2 against 3.4 ms for 12×360×480). The numbers are
    ``torch.softmax``'s. On an accelerator, where the copy would
    cost a kernel launch more, and for scores that autograd tracks (the
    ``out=`` form has no derivative), it is ``torch.softmax`` (made contiguous).
    """
    if scores.device.type != "cpu" or (scores.requires_grad and torch.is_grad_enabled()):
        return torch.softmax(scores.float(), dim=1).contiguous()
    p = channel_first_float32(scores)
    return torch.softmax(p, 1, out=p)


#: Bytes of scores one step of :func:`channel_first_float32` moves: a band of rows, every class.
LAYOUT_CHUNK_BYTES = 1 << 20
#: Classes from which :func:`channel_first_float32` moves channel-innermost float32 scores band by band.
LAYOUT_CHUNK_MIN_CLASSES = 8
#: Classes from which it moves channel-innermost bf16/fp16 scores band by band (below: reordered, then cast).
LAYOUT_CHUNK_MIN_CLASSES_LOW = 32


def channel_first_float32(scores: torch.Tensor) -> torch.Tensor:
    """A new row-major (``B×K×H×W`` contiguous) float32 copy of CPU ``B×K×H×W`` scores, in any layout.

    Channel-innermost scores (the network's channels-last output) with
    :data:`LAYOUT_CHUNK_MIN_CLASSES` classes or more are copied one band of
    rows at a time, each band about :data:`LAYOUT_CHUNK_BYTES` of scores.
    torch's copy into the class-major layout walks the whole source once per
    class (its inner loop runs along a row of one class), so with many
    classes the source is read from memory K times over; a band stays in
    the cache for all K. Same values; scores moved in alternation after the
    source was written, softmax included (torch 2.13, 2-core AMD EPYC):
    12×360×480 0.85×, 32 classes 0.47×, 150 classes 0.44× (286 → 126 ms);
    8×12×512² 0.64×, 8×32×512² 0.49×. With 2 or 4 classes one copy was as
    fast or faster (0.96–1.07×), so those keep it.

    Channel-innermost bf16 or fp16 scores (the network's own output on a CPU
    that computes in them) with fewer than :data:`LAYOUT_CHUNK_MIN_CLASSES_LOW`
    classes are reordered in their own dtype, then cast: torch's reordering
    copy between equal dtypes takes a faster kernel than one that also
    casts (0.70 against about 1.4 ms for bf16 12×360×480), and the cast of
    contiguous memory is one vectorised pass. Softmax included, against the
    banded copy, in alternation (2-core AMD EPYC Zen 4): 12×360×480 0.77–0.81×,
    16×12×360×480 0.77×, 8 classes 0.79×, 8×12×224×192 0.86–0.95×, 8×4×512²
    0.95–0.96×, 32 classes 0.97× (so from 32 on, and for 37 or more classes,
    where it was 1.07–2.05×, the band by band copy).
    """
    k = scores.shape[1] if scores.dim() == 4 else 0
    channel_innermost = k > 0 and scores.stride(1) == 1
    low = scores.dtype in (torch.bfloat16, torch.float16)
    if channel_innermost and low and k < LAYOUT_CHUNK_MIN_CLASSES_LOW:
        return scores.contiguous().float()  # a new tensor: the dtype differs
    if k < LAYOUT_CHUNK_MIN_CLASSES or not channel_innermost:
        return scores.to(torch.float32, memory_format=torch.contiguous_format, copy=True)
    n, _, h, w = scores.shape
    out = torch.empty(scores.shape, dtype=torch.float32, device=scores.device)
    rows = max(1, LAYOUT_CHUNK_BYTES // (w * k * scores.element_size()))
    for b in range(n):
        for top in range(0, h, rows):
            out[b, :, top : top + rows].copy_(scores[b, :, top : top + rows])
    return out


def labels_from_proba(proba: np.ndarray) -> np.ndarray:
    """Labels (argmax over the first axis) of host probabilities, in :func:`label_dtype`."""
    return class_labels(read_only_tensor(proba), 0).numpy()


def class_mean_variance(variance: np.ndarray | torch.Tensor, class_axis: int = 0) -> Any:
    """One uncertainty band from :meth:`Segmenter.sample`'s per-class variance: its mean over the classes.

    What the tiler, the napari plugin and the web demo write or show as
    "uncertainty" (Bayesian SegNet's mean variance of the softmax samples).
    """
    return variance.mean(class_axis)


class _DropoutStream:
    """A seeded random stream for dropout masks, isolated from everyone else's random numbers.

    ``nn.Dropout`` draws from torch's global generator (the device's, on
    CUDA) and takes no ``torch.Generator``, so the stream is kept by swapping
    the global state in around each pass (:func:`torch.random.fork_rng`) and
    saving where it stopped; ``seed=None`` uses the global stream as is.
    """

    def __init__(self, seed: int | None, device: torch.device) -> None:
        self.seed = seed
        self.cuda = (
            [device.index if device.index is not None else torch.cuda.current_device()]
            if (device.type == "cuda")
            else []
        )
        self._state: list[torch.Tensor] | None = None

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        if self.seed is None:
            yield
            return
        with torch.random.fork_rng(devices=self.cuda):
            if self._state is None:
                torch.manual_seed(self.seed)
            else:
                torch.set_rng_state(self._state[0])
                for d, state in zip(self.cuda, self._state[1:]):
                    torch.cuda.set_rng_state(state, d)
            yield
            self._state = [torch.get_rng_state(), *(torch.cuda.get_rng_state(d) for d in self.cuda)]


def drive(
    steps: Generator[Any, None, R],
    progress: bool | ProgressCallback = False,
    *,
    desc: str | None = None,
    unit: str = "step",
    position: int | None = None,
    on_step: Callable[[Any], Any] | None = None,
) -> R:
    """Run a step generator (any ``iter_*``) to its end and return its value.

    The public driver for progress and cancellation. Each step is a tuple
    starting ``(done, total)``.

    Args:
        steps: the generator.
        progress: ``True`` for a tqdm bar, or ``callback(done, total)``.
        desc: the bar's label.
        unit: the bar's unit (``"slice"``, ``"tile"`` …).
        position: the bar's line (when an overall bar is shown too); the bar
            is then removed when done.
        on_step: called with every step as yielded (extra fields included).

    A callback that raises (or Ctrl-C) cancels the run: the generator is
    closed, so its ``finally`` blocks clean up before the exception goes on.
    """
    bar = None
    try:
        while True:
            step = next(steps)
            if on_step is not None:
                on_step(step)
            done, total = step[0], step[1]
            if callable(progress):
                progress(done, total)
            elif progress:
                if bar is None:
                    bar = tqdm(total=total, initial=done, desc=desc, unit=unit, position=position,
                               leave=position is None)  # fmt: skip
                bar.update(done - bar.n)
    except StopIteration as stop:
        return stop.value
    finally:
        steps.close()
        if bar is not None:
            bar.close()
