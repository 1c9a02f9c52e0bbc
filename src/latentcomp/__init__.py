"""latentcomp: latent space regression on frozen pretrained GANs.

    import latentcomp as lc

    pipe = lc.Pipeline.from_pretrained("toyfaces")            # bundled generator + regressor
    face = lc.io.load_image("face.png", size=pipe.resolution)  # (1, 3, 64, 64) in [-1, 1]
    G = lc.load_generator("stylegan2:/ckpt/ffhq.pt")           # any supported checkpoint layout

What a user needs is an attribute of the package: `Pipeline`, `load_generator`, `load_regressor`,
`Generator`, `CustomGenerator` (wrap your own module), `ToyFaces` (the procedural face domain),
`LatentcompError` (every user-facing error), and the modules `io` (image and mask files), `masks`,
`data`, `edit`, `metrics`, `navigate`, `pretrained` (the bundled models), `probe`, `regressors`,
`training`. Heavy modules are imported on first use, so `import latentcomp` stays light.
"""

from .errors import LatentcompError
from .generators import Generator, load_generator

__version__ = "0.1.0"

__all__ = [
    "CustomGenerator",
    "Generator",
    "LatentcompError",
    "Pipeline",
    "ToyFaces",
    "__version__",
    "load_generator",
    "load_regressor",
]

#: modules reachable as attributes (`lc.io.load_image(...)`, `lc.navigate.pca_directions(...)`),
#: imported on first use
SUBPACKAGES = (
    "data", "edit", "io", "masks", "metrics", "navigate", "pretrained", "probe", "regressors", "training"
)

#: public names -> (module, attribute), imported on first use
_LAZY = {
    "Pipeline": (".edit.pipeline", "Pipeline"),
    "load_regressor": (".regressors", "load_regressor"),
    "CustomGenerator": (".generators.custom", "CustomGenerator"),
    "ToyFaces": (".data.toyfaces", "ToyFaces"),
}


def __getattr__(name):  # lazy: keep `import latentcomp` light
    import importlib

    if name in _LAZY:
        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module, __name__), attr)
    if name in SUBPACKAGES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'latentcomp' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__) | set(SUBPACKAGES))
