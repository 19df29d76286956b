"""segnet-domains: one SegNet for MRI lesions, retinal vessels and aerial imagery.

Public API::

    from segnet_domains import SegNet, Segmenter, save_checkpoint
    model = SegNet(in_channels=1, out_channels=2)
    save_checkpoint("m.pt", model, class_names=["background", "lesion"])
    seg = Segmenter.from_checkpoint("m.pt", device="auto")
    seg.predict(image); seg.predict_proba(image); seg.predict_volume(volume, axis=2)

SegNet: Badrinarayanan, Kendall, Cipolla, TPAMI 2017, https://arxiv.org/abs/1511.00561
"""

from segnet_domains import (  # first: neither imports torch
    _hugepages,  # noqa: F401  (torch's large CPU buffers on 2 MiB pages: see there)
    _malloc,  # noqa: F401  (glibc keeps freed buffers for reuse: see there)
    _openmp,  # noqa: F401  (sets OMP_WAIT_POLICY before torch loads OpenMP)
)
from segnet_domains.checkpoint import Checkpoint, ModelInfo, load_checkpoint, read_info, save_checkpoint
from segnet_domains.errors import CheckpointError, InputError
from segnet_domains.inference import Segmenter
from segnet_domains.model import SegNet, SegNetBasic, build_model, load_vgg16_bn

__version__ = "0.1.0"

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "InputError",
    "ModelInfo",
    "SegNet",
    "SegNetBasic",
    "Segmenter",
    "build_model",
    "load_checkpoint",
    "load_vgg16_bn",
    "read_info",
    "save_checkpoint",
]
