"""Sample data (File ▸ Open Sample ▸ SegNet segmentation): synthetic, made on the spot, nothing downloaded.

* an MRI-like FLAIR volume: a head with skull, grey and white matter,
  ventricles, a smooth bias field, noise and a few bright white-matter lesions
  (:func:`segnet_domains.synthetic.brain.flair_head`);
* an aerial-like RGB scene: bare soil, vegetation, lakes, a river and a town
  of blocks and streets (:func:`segnet_domains.synthetic.aerial.rgb_scene`).
"""

from __future__ import annotations

from typing import Any

from segnet_domains.synthetic.aerial import rgb_scene
from segnet_domains.synthetic.brain import flair_head

LayerData = tuple[Any, dict[str, Any], str]


def mri_sample() -> list[LayerData]:
    """napari sample: an MRI-like FLAIR volume (1 × 1 × 1.2 mm voxels) with bright lesions."""
    vol, _ = flair_head()
    return [(vol, {"name": "mri sample", "scale": (1.0, 1.0, 1.2), "colormap": "gray"}, "image")]


def aerial_sample() -> list[LayerData]:
    """napari sample: an aerial-like RGB scene (0.5 m pixels)."""
    rgb, _ = rgb_scene(512)
    return [(rgb, {"name": "aerial sample", "rgb": True, "scale": (0.5, 0.5)}, "image")]
