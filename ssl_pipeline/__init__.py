"""ssl_pipeline: self-supervised pretraining (SimCLR for images, MLM for text) and label-efficiency reports."""
from .export import load_encoder

__version__ = "0.1.0"
__all__ = ["load_encoder", "__version__"]
