"""Applications: compose, inpaint (multimodal), edit by example, refine / optimise, baselines."""

from .collage import make_collage, paste_back
from .pipeline import ComposeResult, InpaintResult, Pipeline

__all__ = ["ComposeResult", "InpaintResult", "Pipeline", "make_collage", "paste_back"]
