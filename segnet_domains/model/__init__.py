"""SegNet models: encoder → decoder → classifier, composed from small modules."""

from segnet_domains.model.init import he_init, load_vgg16_bn
from segnet_domains.model.segnet import ARCHITECTURES, SegNet, SegNetBasic, build_model

__all__ = ["ARCHITECTURES", "SegNet", "SegNetBasic", "build_model", "he_init", "load_vgg16_bn"]
