"""latentcomp: latent space regression on frozen pretrained GANs."""

from .errors import LatentcompError
from .generators import Generator, load_generator

__version__ = "0.1.0"

__all__ = ["Generator", "LatentcompError", "load_generator", "Pipeline", "load_regressor", "__version__"]

#: subpackages reachable as attributes (`lc.navigate.pca_directions(...)`), imported on first use
SUBPACKAGES = ("data", "edit", "metrics", "navigate", "probe", "regressors", "training")


def __getattr__(name):  # lazy: keep `import latentcomp` light
    if name == "Pipeline":
        from .edit.pipeline import Pipeline

        return Pipeline
    if name == "load_regressor":
        from .regressors import load_regressor

        return load_regressor
    if name in SUBPACKAGES:
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'latentcomp' has no attribute {name!r}")
