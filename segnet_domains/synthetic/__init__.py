"""Synthetic data in the real formats and layouts: the demo, the web samples, napari's samples and the tests.

Nothing is downloaded: every data set the project shows or tests with is made
here, from a seeded :class:`numpy.random.Generator`, so the same seed gives
the same arrays on any machine.

* :mod:`.fields` — shared primitives: smooth random fields, ellipsoids, footprints.
* :mod:`.brain` — one head anatomy with lesions, rendered in a contrast
  declared as data (ATLAS-style T1w on the MNI grid, FLAIR with bright
  lesions, a flat phantom for layout and training tests).
* :mod:`.fundus` — fundus photographs with artery/vein annotations (RITE colour code).
* :mod:`.aerial` — one land-cover class map and its renderers (Landsat-like
  4-band scenes with a footprint, plain reflectance, an RGB aerial photograph).
* :mod:`.scenes` — 2D scenes of bright disks and blocks with known masks.
* :mod:`.counting` — crowd images with head positions (UCF-QNRF).
* :mod:`.layouts` — writers that put these arrays on disk in each data set's
  distributed layout, using the readers' own declarations
  (:mod:`segnet_domains.medical.atlas`, :mod:`~segnet_domains.medical.atlas_r12`,
  :mod:`~segnet_domains.medical.rite`, :mod:`segnet_domains.geo.dataset`,
  :mod:`segnet_domains.counting.task`), so a file name is spelled once.

The generators return arrays; only :mod:`.layouts` writes files.
"""
