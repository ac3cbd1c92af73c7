"""Models: the small layers imported networks are normalised into, and ONNX in/out."""
from lirpa_lid.models.layers import ElementwiseAffine
from lirpa_lid.models.onnx import OnnxNetwork, load_onnx, save_onnx

__all__ = ["ElementwiseAffine", "OnnxNetwork", "load_onnx", "save_onnx"]
