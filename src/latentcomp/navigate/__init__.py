"""Latent navigation: interpretable directions (PCA / GANSpace, SeFa, Jacobian spectra, unsupervised
discovery, supervised boundaries, conditional manipulation, closed-form and learned linear / non-linear
geometric / colour walks), stored as files, applied to sampled or inverted latents, and evaluated on
toyfaces."""

from .directions import (
    DEFAULT_TARGETS,
    Direction,
    LabelledSamples,
    attribute_directions,
    condition_pool,
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
from .discovery import discover_directions
from .edit import NavigateResult, edit_strip, move, navigate, parse_strengths, strip_grid
from .geometry import (
    TRANSFORMS,
    closed_form_directions,
    evaluate_geometry,
    face_geometry,
    steer_directions,
    transform_images,
    transform_move,
)
from .jacobian import jacobian_directions
from .nonlinear import NonlinearWalk, steer_mlp_walks
from .store import bundled_directions, find_direction, list_directions, load_directions, save_directions

__all__ = [
    "DEFAULT_TARGETS",
    "TRANSFORMS",
    "Direction",
    "LabelledSamples",
    "NonlinearWalk",
    "NavigateResult",
    "attribute_directions",
    "bundled_directions",
    "closed_form_directions",
    "conditional_direction",
    "condition_pool",
    "conditional_set",
    "conditioned",
    "default_space",
    "discover_directions",
    "edit_strip",
    "evaluate_geometry",
    "face_geometry",
    "find_direction",
    "jacobian_directions",
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
    "steer_directions",
    "steer_mlp_walks",
    "strip_grid",
    "supervised_direction",
    "transform_images",
    "transform_move",
]
