"""zlt: LoRA training on Tongyi-MAI/Z-Image-Turbo as a callable capability."""

__version__ = "0.1.0"
