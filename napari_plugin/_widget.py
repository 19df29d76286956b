"""The "SegNet segmentation" dock widget: collects arguments, runs :mod:`._segment` in a thread worker.

The widget is thin: :func:`~napari_plugin._segment.build_request` snapshots
the layer on the main thread, :func:`~napari_plugin._segment.iter_segmentation`
runs in ``napari.qt.threading.create_worker`` yielding progress (the viewer
stays responsive; Cancel calls ``worker.quit()``), and
:func:`~napari_plugin._segment.add_result` adds the layers when it returns.
Every failure becomes one napari error notification, never a traceback.
"""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import napari
from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, Label, ProgressBar, PushButton, SpinBox
from napari.layers import Image
from napari.qt.threading import GeneratorWorker, create_worker
from napari.utils.notifications import show_error, show_warning

from segnet_domains.checkpoint import ModelInfo, read_info
from segnet_domains.devices import available_devices
from segnet_domains.errors import InputError

from ._compute import Cancelled, Progress, SegmentationResult, build_request, iter_segmentation
from ._layers import add_result, warm_up_labels
from ._settings import load_settings, save_settings

if TYPE_CHECKING:
    from napari.layers import Labels

MODE_CHOICES = [
    ("2D image", "image"),
    ("whole volume, slice by slice", "volume"),
    ("current slice only", "slice"),
]


def device_choices() -> list[tuple[str, str]]:
    """``(label, value)`` for "auto" and every device available here (CUDA devices by name)."""
    import torch

    choices = []
    devices = available_devices()
    for dev in devices:
        if dev.startswith("cuda"):
            label = f"{dev} ({torch.cuda.get_device_name(int(dev.split(':')[1]))})"
        else:
            label = {"mps": "mps (Apple GPU)", "cpu": "cpu"}.get(dev, dev)
        choices.append((label, dev))
    return [(f"auto ({devices[0]})", "auto"), *choices]


class SegNetWidget(Container):
    """Dock widget: segment an Image layer with a SegNet checkpoint.

    Args:
        napari_viewer: the viewer (napari passes it when docking the widget).
    """

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        self._viewer = napari_viewer
        self._worker: GeneratorWorker | None = None
        self._job: Generator[Progress, None, SegmentationResult] | None = None
        self._info: ModelInfo | None = None
        self.last_layer: Labels | None = None
        self.last_error: str | None = None
        self._layer = ComboBox(label="image layer", choices=self._image_layers, nullable=True)
        self._checkpoint = FileEdit(label="checkpoint", mode="r", filter="*.pt *.safetensors *.ckpt *.onnx")
        self._summary = Label(label="model", value="no checkpoint chosen")
        self._device = ComboBox(label="device", choices=device_choices())
        self._mode = ComboBox(label="mode", choices=MODE_CHOICES)
        self._axis = SpinBox(label="slice axis", min=0, max=2, value=2)
        self._tile = SpinBox(label="tile size (0: whole)", min=0, max=16384, step=64, value=0)
        self._uncertainty = CheckBox(text="Monte Carlo uncertainty", value=False)
        self._samples = SpinBox(label="MC samples", min=2, max=200, value=8)
        self._run = PushButton(text="Run")
        self._cancel = PushButton(text="Cancel", enabled=False)
        self._progress = ProgressBar(label="progress", min=0, max=1, value=0)
        self._status = Label(label="status", value="idle")
        super().__init__(
            widgets=[
                self._layer,
                self._checkpoint,
                self._summary,
                self._device,
                self._mode,
                self._axis,
                self._tile,
                self._uncertainty,
                self._samples,
                self._run,
                self._cancel,
                self._progress,
                self._status,
            ],
            labels=True,
        )
        self._samples.visible = False
        warm_up_labels(napari_viewer)  # so the first result does not stall the viewer
        self._uncertainty.changed.connect(lambda v: setattr(self._samples, "visible", bool(v)))
        self._checkpoint.changed.connect(self._on_checkpoint)
        self._layer.changed.connect(self._on_layer)
        self._run.changed.connect(self.run)
        self._cancel.changed.connect(self.cancel)
        for ev in ("inserted", "removed", "reordered", "moved"):
            getattr(self._viewer.layers.events, ev).connect(self._refresh_layers)
        self._refresh_layers()
        remembered = load_settings().get("checkpoint")
        if remembered and Path(remembered).is_file():
            self._checkpoint.value = remembered

    # ------------------------------------------------------------------ choices and configuration

    def _image_layers(self, _widget: Any = None) -> list[tuple[str, Image]]:
        return [(lyr.name, lyr) for lyr in self._viewer.layers if isinstance(lyr, Image)]

    def _refresh_layers(self, _event: Any = None) -> None:
        self._layer.reset_choices()
        if self._layer.value is None and self._layer.choices:
            self._layer.value = self._layer.choices[-1]

    def _on_layer(self, layer: Image | None) -> None:
        if layer is None:
            return
        data = layer.data[0] if layer.multiscale else layer.data
        spatial = data.ndim - (1 if layer.rgb else 0)
        multiband = (layer.metadata.get("geotiff") or {}).get("layout") == "chw"
        self._mode.value = "volume" if spatial == 3 and not multiband else "image"

    def _on_checkpoint(self, value: Any) -> None:
        path = str(value)
        if not path or not Path(path).is_file():
            self._info = None
            self._summary.value = "no checkpoint chosen"
            return
        try:
            info = read_info(path)
        except InputError as exc:
            self._info = None
            self._summary.value = "unusable checkpoint"
            self._notify_error(str(exc))
            return
        self._info = info
        save_settings(checkpoint=str(Path(path).resolve()))
        self.configure(info)

    def configure(self, info: ModelInfo) -> None:
        """Set the controls from a checkpoint: axis, tile size, whether uncertainty is possible."""
        bands = ", ".join(info.band_names) if info.band_names else f"{info.bands} band(s)"
        ctx = f", 2.5D context {info.context}" if info.context else ""
        domain = f"{info.domain}: " if info.domain else ""
        self._summary.value = f"{domain}{bands}{ctx} → {', '.join(info.class_names)}"
        if info.slice_axis is not None:
            self._axis.value = int(info.slice_axis)
        self._tile.value = int(info.tile_size or 0) if info.domain == "aerial" else 0
        self._uncertainty.enabled = info.has_dropout
        if not info.has_dropout:
            self._uncertainty.value = False
        if info.domain == "mri":
            self._mode.value = "volume"
        elif info.domain in ("fundus", "aerial"):
            self._mode.value = "image"

    # ------------------------------------------------------------------ running

    @property
    def worker(self) -> GeneratorWorker | None:
        """The running (or last) thread worker."""
        return self._worker

    def run(self, _value: Any = None) -> GeneratorWorker | None:
        """Start segmenting the chosen layer in a thread worker; returns the worker (None on bad input)."""
        if self._worker is not None and self._worker.is_running:
            return self._worker
        self.last_error = None
        layer = self._layer.value
        checkpoint = str(self._checkpoint.value) if self._checkpoint.value else ""
        if layer is None:
            self._notify_error("choose an image layer to segment")
            return None
        if not checkpoint or Path(checkpoint).is_dir():
            self._notify_error("no checkpoint chosen: choose a segnet-domains checkpoint file")
            return None
        if not Path(checkpoint).is_file():
            self._notify_error(f"{checkpoint}: checkpoint not found; choose an existing checkpoint file")
            return None
        try:
            info = read_info(checkpoint)
            mode = self._mode.value
            axis = int(self._axis.value) if mode == "volume" else None
            request = build_request(self._viewer, layer, mode, axis, bands=info.bands)
        except InputError as exc:
            self._notify_error(str(exc))
            return None
        self._job = iter_segmentation(
            request,
            checkpoint,
            device=self._device.value,
            tile_size=int(self._tile.value) or None,
            uncertainty=bool(self._uncertainty.value),
            mc_samples=int(self._samples.value),
        )
        worker = create_worker(_guarded, self._job, _start_thread=False)
        worker.yielded.connect(self._on_progress)
        worker.returned.connect(lambda out: self._on_returned(layer, out))
        worker.aborted.connect(self._on_aborted)
        worker.finished.connect(self._on_finished)
        self._worker = worker
        self._run.enabled = False
        self._cancel.enabled = True
        self._progress.value = 0
        self._status.value = f"segmenting {layer.name} …"
        worker.start()
        return worker

    def cancel(self, _value: Any = None) -> None:
        """Ask the worker to stop iterating after the current step (its job is closed once it stopped)."""
        if self._worker is not None and self._worker.is_running:
            self._status.value = "cancelling …"
            self._worker.quit()

    def _on_progress(self, step: Progress) -> None:
        self._progress.max = max(1, step.total)
        self._progress.value = min(step.done, step.total)
        if step.message:
            show_warning(step.message)

    def _on_returned(self, layer: Image, out: tuple[str, Any]) -> None:
        kind, value = out
        if kind == "cancelled":
            self._status.value = "cancelled"
            return
        if kind == "error":
            self._status.value = "failed"
            self._notify_error(value)
            return
        result: SegmentationResult = value
        try:
            self.last_layer = add_result(self._viewer, layer, result)
        except (ValueError, TypeError, KeyError) as exc:
            self._notify_error(f"{layer.name}: could not add the result ({exc})")
            return
        # the status line says it; a notification toast would cost the event loop another ~40 ms
        self._status.value = f"done on {result.device}"

    def _on_aborted(self) -> None:
        self._status.value = "cancelled"

    def _on_finished(self) -> None:
        if self._job is not None:  # stopped early: its clean-up runs now (a scene keeps its finished rows)
            self._job.close()
            self._job = None
        self._run.enabled = True
        self._cancel.enabled = False

    def _notify_error(self, message: str) -> None:
        self.last_error = message
        show_error(message)


def _guarded(
    gen: Generator[Progress, None, SegmentationResult],
) -> Generator[Progress, None, tuple[str, Any]]:
    """Run ``gen`` in the worker; return ``("ok", result)`` or ``("error", one-line message)``.

    Errors travel back as values so the widget shows one notification, never
    a traceback dialog.
    """
    try:
        result = yield from gen
    except Cancelled as exc:
        return "cancelled", str(exc)
    except InputError as exc:
        return "error", str(exc)
    except Exception as exc:  # noqa: BLE001 - the widget must never crash; shown as a notification
        return "error", f"segmentation failed: {type(exc).__name__}: {exc}"
    return "ok", result
