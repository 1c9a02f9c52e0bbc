"""latentcomp: latent space regression on frozen pretrained GANs."""

from .errors import LatentcompError
from .generators import Generator, load_generator

__version__ = "0.1.0"

__all__ = ["Generator", "LatentcompError", "load_generator", "Pipeline", "load_regressor", "__version__"]


def __getattr__(name):  # lazy: keep `import latentcomp` light
    if name == "Pipeline":
        from .edit.pipeline import Pipeline

        return Pipeline
    if name == "load_regressor":
        from .regressors import load_regressor

        return load_regressor
    raise AttributeError(name)
