from .base import Generator
from .registry import load_generator, register_kind, split_spec

__all__ = ["Generator", "load_generator", "register_kind", "split_spec"]
