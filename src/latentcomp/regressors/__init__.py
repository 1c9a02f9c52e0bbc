"""Latent regressors: masked RGBM image -> latent of a frozen generator (see model.py, io.py)."""

from .io import builtin_regressors, load_regressor, resolve_regressor_file, save_regressor
from .model import BACKBONES, SPACES, Regressor, build_regressor, default_backbone, default_space

__all__ = [
    "BACKBONES",
    "SPACES",
    "Regressor",
    "build_regressor",
    "builtin_regressors",
    "default_backbone",
    "default_space",
    "load_regressor",
    "resolve_regressor_file",
    "save_regressor",
]
