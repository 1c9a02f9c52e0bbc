"""Optional dependencies: each belongs to an extra of the package (`pip install latentcomp[EXTRA]`), so
that a library user does not install a web server. `require` imports one or says which extra to install.

    web      fastapi, uvicorn, python-multipart   `latentcomp serve`, `latentcomp.web`
    train    tensorboard                          TensorBoard logs of the trainers
    metrics  scikit-learn, opencv                 supervised directions (SVM), the Poisson baseline
    all      the three above
"""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import LatentcompError

#: module -> (pip package, extra)
OPTIONAL = {
    "fastapi": ("fastapi", "web"),
    "uvicorn": ("uvicorn", "web"),
    "torch.utils.tensorboard": ("tensorboard", "train"),
    "sklearn": ("scikit-learn", "metrics"),
    "cv2": ("opencv-python-headless", "metrics"),
}


def require(module: str, feature: str) -> ModuleType:
    """Import `module` (a key of OPTIONAL, or a submodule of one) for `feature`, or raise a
    LatentcompError that names the package and the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        root = next((m for m in OPTIONAL if module == m or module.startswith(m + ".")), module)
        package, extra = OPTIONAL.get(root, (root, "all"))
        raise LatentcompError(
            f"{feature} needs the optional package {package} ({e}); install it with "
            f"pip install 'latentcomp[{extra}]' (or [all])"
        ) from None
