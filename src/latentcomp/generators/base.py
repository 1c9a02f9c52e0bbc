"""The one interface every generator provides (see docs/architecture.md).

A `Generator` wraps a frozen network. Subclasses implement `synthesize(latent, space)` and, where a
w space exists, `mapping(z)`. Images come out as float32 (N, C, H, W) in [-1, 1]; weights never get
gradients, the latent does.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import LatentcompError


class Generator(nn.Module):
    """A frozen generator: `G(latent, space="z")` -> float32 images (N, C, H, W) in [-1, 1].

    Every loader returns one (`load_generator(spec)`), so regressors, the Pipeline, probes and navigation
    work with all of them. Attributes: `latent_shape`, `resolution`, `channels`, `latent_spaces`,
    `num_ws` and `w_dim` (where a w space exists), `prior`, `spec`. Methods: `sample_latent(n, generator)`
    draws from the prior; `mapping(z)` and `to_wplus(latent, space)` where a w space exists;
    `space_shape(space)` is the shape of one latent of a space; `features(latent, layer)` and
    `feature_layers()` give intermediate activations for probing. Weights are frozen (eval mode, no
    gradients); gradients reach the latent. A subclass implements `synthesize(latent, space)` (and
    `mapping` where it has a w space) and calls `freeze()` when built.
    """

    #: shape of one z vector, e.g. (512,)
    latent_shape: tuple[int, ...] = ()
    resolution: int = 0
    channels: int = 3
    #: spaces that `forward(latent, space=...)` accepts, e.g. ("z",) or ("z", "w", "w+")
    latent_spaces: tuple[str, ...] = ("z",)
    #: number of style vectors in w+ (0 where there is no w+ space)
    num_ws: int = 0
    #: dimension of one w vector (0 where there is no w space)
    w_dim: int = 0
    #: prior of z: "normal" or "uniform" (uniform(-1, 1)) unless a subclass overrides sample_latent
    prior: str = "normal"
    #: the spec that loads this generator again (set by load_generator)
    spec: str = ""

    def freeze(self) -> Generator:
        """Eval mode and no gradients to the weights; call at the end of a subclass __init__/loader."""
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)
        return self

    def train(self, mode: bool = True) -> Generator:  # noqa: D102 - generators stay frozen
        return super().train(False)

    @property
    def device(self) -> torch.device:
        for t in list(self.parameters()) + list(self.buffers()):
            return t.device
        return torch.device("cpu")

    def sample_latent(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw n latents from the generator's own prior (on the CPU generator's device, then moved)."""
        shape = (n, *self.latent_shape)
        if self.prior == "normal":
            z = torch.randn(shape, generator=generator)
        elif self.prior == "uniform":
            z = torch.rand(shape, generator=generator) * 2 - 1
        else:
            raise LatentcompError(f"unknown prior {self.prior!r}; expected 'normal' or 'uniform'")
        return z.to(self.device)

    def mapping(self, z: torch.Tensor) -> torch.Tensor:
        """z -> w (N, w_dim). Only for generators with a w space; z is checked like `forward`'s."""
        if "w" not in self.latent_spaces:
            raise LatentcompError(f"{type(self).__name__} has no w space (spaces: {self.latent_spaces})")
        return self.map_z(self.check_latent(z, "z"))

    def map_z(self, z: torch.Tensor) -> torch.Tensor:
        """The mapping network itself (subclasses with a w space override this; z is already checked)."""
        raise NotImplementedError

    def to_wplus(self, latent: torch.Tensor, space: str) -> torch.Tensor:
        """Any latent -> w+ (N, num_ws, w_dim), for generators with a w+ space."""
        if "w+" not in self.latent_spaces:
            raise LatentcompError(f"{type(self).__name__} has no w+ space (spaces: {self.latent_spaces})")
        if space == "z":
            latent = self.mapping(latent)
            space = "w"
        if space == "w":
            return latent.unsqueeze(1).repeat(1, self.num_ws, 1)
        return latent

    def synthesize(self, latent: torch.Tensor, space: str) -> torch.Tensor:
        raise NotImplementedError

    #: appended to a wrong-shape error (e.g. how a structured latent is laid out)
    shape_hint: str = ""

    def space_shape(self, space: str) -> tuple[int, ...]:
        """Shape of one latent of `space`, without the batch axis."""
        if space == "z":
            return tuple(self.latent_shape)
        if space == "w":
            return (self.w_dim,)
        return (self.num_ws, self.w_dim)

    def check_latent(self, latent: torch.Tensor, space: str) -> torch.Tensor:
        """Refuse a latent of the wrong space, shape or values; return it on G's device, float64 and
        integer latents (e.g. from numpy) as float32."""
        if space not in self.latent_spaces:
            raise LatentcompError(
                f"latent space {space!r} is not offered by {type(self).__name__}; "
                f"accepted: {', '.join(self.latent_spaces)}"
            )
        expected = self.space_shape(space)
        if not isinstance(latent, torch.Tensor) or tuple(latent.shape[1:]) != expected:
            got = tuple(latent.shape) if isinstance(latent, torch.Tensor) else type(latent).__name__
            raise LatentcompError(
                f"latent for space {space!r} has shape {got}; expected (N, {', '.join(map(str, expected))})"
                + self.shape_hint
            )
        if latent.is_complex() or latent.dtype == torch.bool:
            raise LatentcompError(
                f"latent for space {space!r} has dtype {latent.dtype}; expected a real number type"
            )
        if latent.is_floating_point() and not torch.isfinite(latent).all():
            raise LatentcompError(f"latent for space {space!r} contains NaN or Inf values")
        if not latent.is_floating_point() or latent.dtype == torch.float64:
            latent = latent.float()
        return latent.to(self.device)

    def forward(self, latent: torch.Tensor, space: str = "z") -> torch.Tensor:
        return self.synthesize(self.check_latent(latent, space), space)

    def features(self, latent: torch.Tensor, layer: str | int, space: str = "z") -> torch.Tensor:
        """Intermediate activation at `layer` (names from `feature_layers()`), for probing."""
        names = self.feature_layers()
        if str(layer) not in names:
            raise LatentcompError(f"unknown feature layer {layer!r}; available: {', '.join(names)}")
        module = dict(self.named_modules())[names[str(layer)]]
        captured: list[torch.Tensor] = []
        handle = module.register_forward_hook(lambda _m, _i, out: captured.append(out))
        try:
            self(latent, space=space)
        finally:
            handle.remove()
        return captured[0]

    def synthesize_from(
        self, features: torch.Tensor, layer: str | int, latent: torch.Tensor, space: str = "z"
    ) -> torch.Tensor:
        """The image G makes when the activation at `layer` is replaced by `features` (the shape that
        `features(latent, layer, space)` returns): the layers above run on `features`; the layers below
        still run from `latent` (no gradient), but their output at `layer` is dropped. Inputs that the layers
        above take directly from the latent (StyleGAN styles) or from below `layer` (StyleGAN2's RGB skip
        image) stay those of `latent`. For layer-wise inversion (optimise `features`)."""
        names = self.feature_layers()
        if str(layer) not in names:
            raise LatentcompError(f"unknown feature layer {layer!r}; available: {', '.join(names)}")
        module = dict(self.named_modules())[names[str(layer)]]
        replaced: list[bool] = []

        def hook(_m, _inp, out):
            ref = out[0] if isinstance(out, tuple) else out
            if tuple(ref.shape) != tuple(features.shape):
                raise LatentcompError(
                    f"features for layer {layer} have shape {tuple(features.shape)}; "
                    f"expected {tuple(ref.shape)}"
                )
            replaced.append(True)
            return (features, *out[1:]) if isinstance(out, tuple) else features

        handle = module.register_forward_hook(hook)
        try:
            out = self(latent.detach(), space=space)
        finally:
            handle.remove()
        if len(replaced) != 1:
            raise LatentcompError(
                f"layer {layer} ran {len(replaced)} times in one forward pass; cannot replace it"
            )
        return out

    def feature_layers(self) -> dict[str, str]:
        """Map of public layer names -> module path. Subclasses override with meaningful names."""
        return {name: name for name, m in self.named_modules() if name and not list(m.children())}

    def describe(self) -> str:
        spaces = "/".join(self.latent_spaces)
        return (
            f"{type(self).__name__}: {self.channels}x{self.resolution}x{self.resolution}, "
            f"z {tuple(self.latent_shape)} ({self.prior}), spaces {spaces}"
            + (f", {self.num_ws} ws of {self.w_dim}" if self.num_ws else "")
        )


def mean_latent(G, space: str, n: int = 4096, seed: int = 0) -> torch.Tensor:
    """The mean latent of G's prior in `space`, shape (1, ...): 0 for z; the mean mapped w for w / w+
    (a GANsformer's one w_avg is shared by its k components)."""
    if space == "z":
        return torch.zeros(1, *G.latent_shape, device=G.device)
    for name in ("w_avg", "latent_avg", "mean_latent"):
        val = getattr(G, name, None)
        if isinstance(val, torch.Tensor) and val.numel() == G.w_dim:
            w = val.reshape(1, G.w_dim).to(G.device).float().expand(1, *G.space_shape("w"))
            break
    else:
        with torch.no_grad():
            g = torch.Generator().manual_seed(seed)
            w = G.mapping(G.sample_latent(n, generator=g)).mean(0, keepdim=True)
    return (w if space == "w" else G.to_wplus(w, "w")).contiguous()
