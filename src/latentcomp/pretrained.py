"""The bundled pretrained models by name, and the one resolver from a model name to a `Pipeline`.

    list_pretrained()                        # ['toyfaces', 'toyfaces-gansformer', 'toyfaces-stylegan2']
    get_pretrained("toyfaces").card          # the regressor's model card (a Markdown file)
    pipe = load_pipeline("toyfaces-stylegan2")

A bundled model is a generator, the regressor trained for it, its model card and the direction set
computed for it, all in `latentcomp/weights/`. `load_pipeline` also takes `builtin:NAME`, a regressor
run folder, a folder written by `Pipeline.save_pretrained` or a regressor `.safetensors` file; every
command's `--model` and `latentcomp serve` go through it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import LatentcompError

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


@dataclass(frozen=True)
class PretrainedModel:
    """One bundled model: specs of its parts (each loads on its own too) and its model card."""

    name: str
    generator: str  # generator spec, e.g. builtin:toyfaces-dcgan
    regressor: str  # regressor spec, e.g. builtin:toyfaces-dcgan-regressor
    directions: str  # bundled direction set (weights/NAME.json), see navigate.store.bundled_directions
    summary: str
    aliases: tuple[str, ...] = ()  # other names users write for it (bundled generator specs among them)

    def _file(self, spec: str, suffix: str) -> Path:
        return WEIGHTS_DIR / (spec.split(":", 1)[1] + suffix)

    @property
    def card(self) -> Path:
        """The regressor's model card (Markdown)."""
        return self._file(self.regressor, ".md")

    @property
    def installed(self) -> bool:
        """Whether the weights of the generator and the regressor are in this copy of latentcomp."""
        return all(self._file(s, ".safetensors").is_file() for s in (self.generator, self.regressor))


_MODELS = (
    PretrainedModel(
        "toyfaces",
        "builtin:toyfaces-dcgan",
        "builtin:toyfaces-dcgan-regressor",
        "toyfaces-dcgan-directions",
        "DCGAN on 64x64 toyfaces, z regressor",
        aliases=("toyfaces-dcgan", "builtin:toyfaces", "builtin:toyfaces-dcgan"),
    ),
    PretrainedModel(
        "toyfaces-stylegan2",
        "builtin:toyfaces-stylegan2",
        "builtin:toyfaces-stylegan2-regressor",
        "toyfaces-stylegan2-directions",
        "StyleGAN2 on 64x64 toyfaces, w+ regressor",
        aliases=("builtin:toyfaces-stylegan2",),
    ),
    PretrainedModel(
        "toyfaces-gansformer",
        "builtin:toyfaces-gansformer",
        "builtin:toyfaces-gansformer-regressor",
        "toyfaces-gansformer-directions",
        "GANsformer (8 latent components) on 64x64 toyfaces, per-component w regressor",
        aliases=("builtin:toyfaces-gansformer",),
    ),
)
PRETRAINED_MODELS = {m.name: m for m in _MODELS}
_BY_ALIAS = {a: m for m in _MODELS for a in (m.name, *m.aliases)}


def list_pretrained() -> list[str]:
    """Names of the bundled models, sorted."""
    return sorted(PRETRAINED_MODELS)


def find_pretrained(name: str) -> PretrainedModel | None:
    """The bundled model `name` (or one of its aliases) names, else None."""
    return _BY_ALIAS.get(str(name).strip())


def get_pretrained(name: str) -> PretrainedModel:
    """The bundled model called `name` (or an alias); raises naming the accepted names."""
    model = find_pretrained(name)
    if model is None:
        raise LatentcompError(f"no bundled model {name!r}; bundled: {', '.join(list_pretrained())}")
    return model


def _load_regressor(model: str):
    """(label, regressor) for a bundled name or alias, or any source `load_regressor` takes."""
    from .regressors import load_regressor

    bundled = find_pretrained(model)
    if bundled is None:
        return str(model), load_regressor(str(model))
    try:
        return bundled.name, load_regressor(bundled.regressor)
    except LatentcompError as e:
        raise LatentcompError(
            f"the bundled model {bundled.name!r} ({bundled.regressor}) is not installed in this copy of "
            "latentcomp; load a trained regressor (a run folder or .safetensors file) instead"
        ) from e


def model_generator_spec(model: str, trust_code: bool = False) -> str:
    """The generator spec a model records (a bundled name, builtin:NAME, a regressor run folder or file).
    A recorded `python:` spec is refused unless `trust_code`."""
    from .regressors.model import check_recorded_spec

    bundled = find_pretrained(model)
    if bundled is not None:
        return bundled.generator
    _, E = _load_regressor(model)
    if not E.generator_spec:
        raise LatentcompError(f"model {model} records no generator spec; name the generator explicitly")
    check_recorded_spec(E.generator_spec, trust_code, str(model))
    return E.generator_spec


def load_pipeline(
    model: str = "toyfaces",
    device=None,
    generator=None,
    trust_code: bool = False,
    allow_untrained: bool = False,
    **options,
):
    """A `Pipeline` for `model`: a bundled name (see `list_pretrained`) or alias, builtin:NAME (a bundled
    regressor), a regressor run folder, a folder written by `save_pretrained`, or a regressor .safetensors
    file.

    The generator is the one the regressor records, unless `generator` (a spec, or a loaded Generator)
    names it; a recorded `python:` spec runs code chosen by the model file and is refused unless
    `trust_code`. With `allow_untrained`, a plain generator spec (e.g. builtin:tiny-random) that names no
    regressor gets a fresh, untrained one, with a notice: for smoke tests only (`pipe.untrained` is True).
    `options` are `PipelineOptions` fields (precision, compile, iterations, ...)."""
    from .devices import parse_device
    from .edit.pipeline import Pipeline
    from .generators import load_generator

    parse_device(device)  # a bad device is refused before any model loads
    try:
        label, E = _load_regressor(model)
    except LatentcompError as first:
        if not allow_untrained:
            raise
        return _untrained_pipeline(str(model), device, first, **options)
    if generator is None:
        G = E.load_generator(trust_code=trust_code)
    elif isinstance(generator, str):
        G = load_generator(generator)  # named by the caller, not by the model file
    else:
        G = generator
    return Pipeline(G, E, device=device, source=label, **options)


def _untrained_pipeline(spec: str, device, first: LatentcompError, **options):
    import torch

    from .edit.pipeline import Pipeline
    from .generators import load_generator
    from .io import print_notice
    from .regressors import build_regressor

    try:
        G = load_generator(spec, device=device)
    except (LatentcompError, ImportError, ValueError):
        raise first from None  # neither a model nor a generator: the model's error says more
    torch.manual_seed(0)
    E = build_regressor(G)
    print_notice(f"{spec} is a generator without a regressor; using an UNTRAINED regressor (smoke test only)")
    return Pipeline(G, E, device=device, source=spec, untrained=True, **options)
