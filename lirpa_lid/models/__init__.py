"""Models: the small layers imported networks are normalised into, ONNX in/out, and the model zoo."""
from lirpa_lid.models.layers import ElementwiseAffine
from lirpa_lid.models.onnx import OnnxNetwork, load_onnx, save_onnx
from lirpa_lid.models.zoo import KNOWN_MODELS, blobs_mlp, mlp, mnist_mlp, paper_cnn

__all__ = ["KNOWN_MODELS", "ElementwiseAffine", "OnnxNetwork", "blobs_mlp", "load_onnx", "mlp", "mnist_mlp",
           "paper_cnn", "save_onnx"]
