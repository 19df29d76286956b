"""napari plugin ``segnet-domains``: open MRI volumes and GeoTIFFs, segment them with SegNet, save masks.

Contributions (``napari.yaml``): NIfTI and GeoTIFF readers, the "SegNet
segmentation" dock widget, NIfTI/GeoTIFF label writers and two sample data
sets. :func:`segment_layer` is the headless function the widget wraps.
"""

from ._segment import segment_layer

__all__ = ["segment_layer"]
