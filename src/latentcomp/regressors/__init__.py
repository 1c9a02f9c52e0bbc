"""Latent regressors: masked RGBM image -> latent of a frozen generator (see model.py, io.py)."""

from .io import builtin_regressors, load_regressor, resolve_regressor_file, save_regressor
from .model import (
    BACKBONES,
    HEADS,
    SPACES,
    Regressor,
    build_regressor,
    default_backbone,
    default_space,
    pyramid_levels,
)

__all__ = [
    "BACKBONES",
    "HEADS",
    "SPACES",
    "Regressor",
    "build_regressor",
    "builtin_regressors",
    "default_backbone",
    "default_space",
    "load_regressor",
    "pyramid_levels",
    "resolve_regressor_file",
    "save_regressor",
]
