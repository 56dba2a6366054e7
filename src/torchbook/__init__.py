"""torchbook: helpers for an executable PyTorch image-classification course."""
__version__ = "0.1.0"
