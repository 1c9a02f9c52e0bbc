"""`python:MODULE_OR_FILE.py:FUNCTION`: bring your own generator.

FUNCTION is called (with the keyword options given to `load_generator`, if any) and returns either a
`Generator` subclass instance or a `CustomGenerator` wrapping any `nn.Module` that maps a latent batch to
images in [-1, 1]:

```python
from latentcomp.generators.custom import CustomGenerator

def build():
    net = MyNet()
    net.load_state_dict(torch.load("my_weights.pth", weights_only=True))
    return CustomGenerator(net, latent_shape=(100,), resolution=28, channels=1, prior="normal")
```

MODULE_OR_FILE is either an importable module (`my_pkg.gen`) or a path to a `.py` file (relative to the
current directory), imported from its path without touching `sys.path`. Loading a `python:` spec runs
that code, like importing it would: only use files you trust.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from ..errors import LatentcompError
from .base import Generator
from .registry import register_kind

Prior = str | Callable[[int, torch.Generator | None], torch.Tensor]


class CustomGenerator(Generator):
    """Wrap an `nn.Module` (latent batch -> images in [-1, 1]) with the metadata the toolkit needs.

    module: called as `module(z)` with z of shape (N, *latent_shape); returns (N, channels, resolution,
        resolution). Its weights are frozen; gradients still reach z.
    latent_shape: shape of one latent, e.g. (100,) or (100, 1, 1).
    resolution, channels: output image size (square) and channel count (1 or 3 are usual; any is accepted).
    prior: "normal" (N(0, I)), "uniform" (U(-1, 1)) or a callable `prior(n, generator) -> Tensor
        (n, *latent_shape)` that draws with the given `torch.Generator` (may be None).
    name: optional label shown by `describe()`.
    """

    latent_spaces = ("z",)

    def __init__(
        self,
        module: nn.Module,
        latent_shape: tuple[int, ...] | list[int] | int,
        resolution: int,
        channels: int = 3,
        prior: Prior = "normal",
        name: str | None = None,
    ):
        super().__init__()
        if not isinstance(module, nn.Module):
            raise LatentcompError(
                f"CustomGenerator needs an nn.Module mapping latents to images; got {type(module).__name__}"
            )
        if isinstance(latent_shape, int):
            latent_shape = (latent_shape,)
        try:
            latent_shape = tuple(int(s) for s in latent_shape)
        except (TypeError, ValueError):
            raise LatentcompError(
                f"CustomGenerator latent_shape must be a tuple of ints; got {latent_shape!r}"
            ) from None
        if not latent_shape or any(s < 1 for s in latent_shape):
            raise LatentcompError(
                f"CustomGenerator latent_shape must be non-empty and positive; got {latent_shape}"
            )
        if int(resolution) < 1 or int(channels) < 1:
            raise LatentcompError(
                f"CustomGenerator resolution and channels must be positive; got {resolution}, {channels}"
            )
        if callable(prior) and not isinstance(prior, str):
            self._prior_fn = prior
            prior = "custom"
        elif prior in ("normal", "uniform"):
            self._prior_fn = None
        else:
            raise LatentcompError(
                f"CustomGenerator prior {prior!r}; accepted: 'normal', 'uniform' or a callable"
            )
        self.module = module
        self.latent_shape = latent_shape
        self.resolution = int(resolution)
        self.channels = int(channels)
        self.prior = prior
        self.name = name or type(module).__name__
        self.freeze()

    def sample_latent(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        if self._prior_fn is None:
            return super().sample_latent(n, generator)
        z = self._prior_fn(n, generator)
        if not isinstance(z, torch.Tensor) or tuple(z.shape) != (n, *self.latent_shape):
            got = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
            raise LatentcompError(
                f"custom prior of {self.name} returned {got}; expected a tensor of shape (n, "
                f"{', '.join(map(str, self.latent_shape))}) = {(n, *self.latent_shape)}"
            )
        return z.float().to(self.device)

    def synthesize(self, latent: torch.Tensor, space: str) -> torch.Tensor:
        out = self.module(latent.to(self.device, torch.float32))
        if not isinstance(out, torch.Tensor):
            raise LatentcompError(f"{self.name} returned {type(out).__name__}; expected an image tensor")
        return out.float()

    def validate(self) -> CustomGenerator:
        """Run two latents through the module and check the image shape; raise a one-line error if wrong."""
        with torch.no_grad():
            z = self.sample_latent(2, torch.Generator().manual_seed(0))
            try:
                x = self(z)
            except LatentcompError:
                raise
            except Exception as e:
                raise LatentcompError(
                    f"{self.name} failed on a latent batch of shape {tuple(z.shape)} "
                    f"({type(e).__name__}: {e})"
                ) from None
        expected = (2, self.channels, self.resolution, self.resolution)
        if tuple(x.shape) != expected:
            raise LatentcompError(
                f"{self.name} returned images of shape {tuple(x.shape)} for 2 latents; expected {expected} "
                f"(channels={self.channels}, resolution={self.resolution})"
            )
        return self

    def describe(self) -> str:
        return super().describe().replace(type(self).__name__, f"{type(self).__name__}({self.name})", 1)


def split_location(location: str) -> tuple[str, str]:
    """'pkg.mod:fn' or 'path/to/file.py:fn' (a drive letter such as C:\\ is kept) -> (module_or_file, fn)."""
    if ":" not in location:
        raise LatentcompError(
            f"python spec 'python:{location}' must be python:MODULE_OR_FILE.py:FUNCTION (e.g. "
            "python:examples/mnist_dcgan.py:build or python:my_pkg.gen:build)"
        )
    target, func = location.rsplit(":", 1)
    if not target or not func.isidentifier():
        raise LatentcompError(
            f"python spec 'python:{location}': expected MODULE_OR_FILE.py:FUNCTION "
            "with FUNCTION a Python name"
        )
    return target, func


def import_target(target: str):
    """Import a module by dotted name, or a .py file by path (under a unique private module name)."""
    looks_like_file = target.endswith(".py") or "/" in target or "\\" in target
    if looks_like_file:
        path = Path(target).expanduser().resolve()
        if not path.is_file():
            raise LatentcompError(f"python generator file not found: {path} (from spec target {target!r})")
        digest = hashlib.sha1(str(path).encode()).hexdigest()[:10]
        mod_name = f"_latentcomp_user_{path.stem}_{digest}"
        spec = importlib.util.spec_from_file_location(mod_name, path)
        if spec is None or spec.loader is None:
            raise LatentcompError(f"{path}: cannot be imported as a Python file")
        module = importlib.util.module_from_spec(spec)
        sys.modules[mod_name] = module  # dataclasses/pickle inside the file need to find it
        try:
            spec.loader.exec_module(module)
        except Exception as e:
            sys.modules.pop(mod_name, None)
            raise LatentcompError(f"{path}: error while importing it ({type(e).__name__}: {e})") from None
        return module
    if not all(part.isidentifier() for part in target.split(".")):
        raise LatentcompError(
            f"python generator target {target!r} is neither a module name (pkg.mod) nor a .py file path"
        )
    try:
        return importlib.import_module(target)
    except ModuleNotFoundError as e:
        if e.name == target or target.startswith(f"{e.name}."):
            raise LatentcompError(
                f"python generator module {target!r} not found (install it, or give a path to a .py file)"
            ) from None
        raise LatentcompError(
            f"module {target!r}: error while importing it (ModuleNotFoundError: {e})"
        ) from None
    except Exception as e:
        raise LatentcompError(
            f"module {target!r}: error while importing it ({type(e).__name__}: {e})"
        ) from None


@register_kind("python")
def load_python(location: str, **options) -> Generator:
    target, func_name = split_location(location)
    module = import_target(target)
    func = getattr(module, func_name, None)
    if func is None:
        public = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_"))
        raise LatentcompError(
            f"{target}: has no function {func_name!r}; callables there: {', '.join(public[:10]) or 'none'}"
        )
    if not callable(func):
        raise LatentcompError(f"{target}:{func_name} is a {type(func).__name__}, not a function")
    try:
        gen = func(**options)
    except LatentcompError:
        raise
    except TypeError as e:
        if options:
            raise LatentcompError(
                f"{target}:{func_name} rejected the options {sorted(options)} ({e})"
            ) from None
        raise LatentcompError(f"{target}:{func_name}() failed (TypeError: {e})") from None
    except Exception as e:
        raise LatentcompError(f"{target}:{func_name}() failed ({type(e).__name__}: {e})") from None
    if isinstance(gen, CustomGenerator):
        return gen.validate()
    if isinstance(gen, Generator):
        return gen
    what = type(gen).__name__
    hint = (
        "wrap the module: CustomGenerator(module, latent_shape, resolution, channels, prior)"
        if isinstance(gen, nn.Module)
        else "return a latentcomp Generator or latentcomp.generators.custom.CustomGenerator"
    )
    raise LatentcompError(f"{target}:{func_name}() returned {what}, not a Generator; {hint}")
