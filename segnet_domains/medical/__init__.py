"""Medical imaging: NIfTI IO and orientation, ATLAS and RITE dataset indexes."""
