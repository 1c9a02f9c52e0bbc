"""Latent navigation: interpretable directions (PCA / GANSpace, SeFa, supervised boundaries, conditional
manipulation), stored as files, applied to sampled or inverted latents, and evaluated on toyfaces."""

from .directions import (
    DEFAULT_TARGETS,
    Direction,
    LabelledSamples,
    attribute_directions,
    conditional_direction,
    conditional_set,
    conditioned,
    default_space,
    label_samples,
    orthonormal_basis,
    parse_layers,
    parse_target,
    pca,
    pca_directions,
    sefa_directions,
    sefa_from_weight,
    supervised_direction,
)
from .edit import NavigateResult, edit_strip, move, navigate, parse_strengths, strip_grid
from .store import find_direction, list_directions, load_directions, save_directions

__all__ = [
    "DEFAULT_TARGETS",
    "Direction",
    "LabelledSamples",
    "NavigateResult",
    "attribute_directions",
    "conditional_direction",
    "conditional_set",
    "conditioned",
    "default_space",
    "edit_strip",
    "find_direction",
    "label_samples",
    "list_directions",
    "load_directions",
    "move",
    "navigate",
    "orthonormal_basis",
    "parse_layers",
    "parse_strengths",
    "parse_target",
    "pca",
    "pca_directions",
    "save_directions",
    "sefa_directions",
    "sefa_from_weight",
    "strip_grid",
    "supervised_direction",
]
