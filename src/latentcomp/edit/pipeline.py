"""`Pipeline`: one object for every application (compose, inpaint, edit by example, refine, baselines).

    pipe = Pipeline.from_pretrained("toyfaces")            # bundled DCGAN + its regressor
    out = pipe.compose([a, b], [mask_a, None])              # collage -> coherent image
    res = pipe.inpaint(img, mask, n=4, seed=0)              # 4 completions + diversity / fidelity
    out = pipe.edit(target, example, region)                # take `region` from `example`

Everything works on batched tensors: images (N, C, H, W) in [-1, 1], masks (N, 1, H, W) in {0, 1}
(1 = known). Single images (C, H, W) are accepted and become a batch of one. The CLI, the web app and
notebooks all call these methods; file handling lives in `latentcomp.io`.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace

import torch

from ..devices import parse_device
from ..errors import LatentcompError
from ..generators.base import mean_latent
from . import baselines, multimodal
from .collage import as_image_batch, as_mask_batch, make_collage, paste_back
from .refine import (
    DOMAIN_WEIGHT,
    OptimConfig,
    OptimResult,
    domain_gap,
    finetune_regressor,
    masked_l1,
    optimise_latent,
)

REGRESSOR_PRECISIONS = ("fp32", "bf16", "int8")
INT8_CALIBRATION_SEED = 0


@dataclass(frozen=True)
class PipelineOptions:
    """How a pipeline runs E and G; chosen at construction (`Pipeline(G, E, precision="bf16")`,
    `from_pretrained(name, compile=True)`). Results depend on them only up to floating-point precision.

    precision: E in "fp32", under bf16 autocast ("bf16") or as an int8 copy ("int8", CPU only; calibrated
    on `calibration` of G's samples), see `Pipeline.set_regressor_precision`. compile / freeze /
    compile_options: `torch.compile` of E and G, see `Pipeline.compile`. iterations: passes of an
    iterative regressor (None = the number it was trained with)."""

    precision: str = "fp32"
    calibration: int = 256
    compile: bool = False
    freeze: bool = False
    compile_options: dict = field(default_factory=dict)
    iterations: int | None = None

    def check(self) -> PipelineOptions:
        if self.precision not in REGRESSOR_PRECISIONS:
            raise LatentcompError(
                f"unknown regressor precision {self.precision!r}; accepted: {', '.join(REGRESSOR_PRECISIONS)}"
            )
        if self.calibration < 1:
            raise LatentcompError(f"calibration must be at least 1 image; got {self.calibration}")
        return self


@dataclass
class ComposeResult:
    """Output of compose / edit / reconstruct. All tensors are batches on the CPU."""

    image: torch.Tensor  # (N, C, H, W) the output G(latent) (known pixels pasted back if asked)
    collage: torch.Tensor  # (N, C, H, W) the regressor's input; hidden pixels 0
    mask: torch.Tensor  # (N, 1, H, W) known region
    latent: torch.Tensor  # (N, ...) in `space`
    space: str
    known_error: torch.Tensor  # (N,) masked L1 between output (before paste-back) and collage, known pixels
    seconds: float  # wall time of the whole call
    parts: list[torch.Tensor] = field(default_factory=list)  # visible mask of each part
    raw: torch.Tensor | None = None  # G(latent) before paste-back


@dataclass
class InpaintResult:
    images: torch.Tensor  # (N, K, C, H, W) completions; [:, 0] is the regressor's own (deterministic)
    latents: torch.Tensor  # (N, K, ...)
    input: torch.Tensor  # (N, C, H, W) image with hidden pixels 0
    mask: torch.Tensor  # (N, 1, H, W)
    known_error: torch.Tensor  # (N, K) masked L1 on known pixels of G's output (fidelity; lower is better)
    diversity: torch.Tensor  # (N,) mean pairwise L1 inside the hidden region (NaN for K = 1)
    method: str
    seconds: float

    @property
    def image(self) -> torch.Tensor:
        return self.images[:, 0]

    @property
    def fidelity(self) -> torch.Tensor:
        return self.known_error

    @property
    def output_known_error(self) -> torch.Tensor:
        """(N, K) masked L1 on the known pixels of `images` as returned: equal to `known_error`, or 0 where
        the known pixels were pasted back (`paste=True`)."""
        n, k = self.images.shape[:2]
        x = self.input.unsqueeze(1).expand_as(self.images).flatten(0, 1)
        m = self.mask.unsqueeze(1).expand(n, k, *self.mask.shape[1:]).flatten(0, 1)
        return masked_l1(self.images.flatten(0, 1), x, m).view(n, k)


class Pipeline:
    """A frozen generator G and a regressor E trained for it: every application in one object.

        pipe = Pipeline.from_pretrained("toyfaces-stylegan2")   # or a run folder, a saved folder
        res = pipe.compose([a, b], [None, mask_b])               # collage -> res.image
        res = pipe.inpaint(img, mask, n=4)                       # res.images: 4 completions
        res = pipe.edit(target, example, region)                 # edit by example

    Images are float32 (N, C, H, W) in [-1, 1] (a single (C, H, W) is a batch of one); masks (N, 1, H, W)
    in {0, 1}, 1 = known. Results come back on the CPU. Bad inputs raise `LatentcompError`.
    `Pipeline(generator, regressor, device)` pairs any generator with a regressor trained for it."""

    def __init__(
        self,
        generator,
        regressor,
        device: str | torch.device | None = None,
        *,
        source: str | None = None,
        untrained: bool = False,
        options: PipelineOptions | None = None,
        **overrides,
    ):
        """`options` (or single fields of `PipelineOptions` as keywords: precision, calibration, compile,
        freeze, compile_options, iterations) say how E and G run. `source` names the model in reports
        (default: where the regressor was loaded from); `untrained` marks a regressor that was never
        trained (smoke tests)."""
        G, E = generator, regressor
        for name in ("space", "resolution", "channels"):
            if not hasattr(E, name):
                raise LatentcompError(f"regressor {type(E).__name__} lacks the attribute {name!r}")
        if E.space not in G.latent_spaces:
            raise LatentcompError(
                f"regressor outputs space {E.space!r} but the generator offers {', '.join(G.latent_spaces)}"
            )
        if int(E.resolution) != int(G.resolution) or int(E.channels) != int(G.channels):
            raise LatentcompError(
                f"regressor expects {E.channels}x{E.resolution}px images but the generator makes "
                f"{G.channels}x{G.resolution}px; they do not belong together"
            )
        dev = parse_device(device)
        self.device = dev if dev is not None else G.device
        self.generator = G.to(self.device).eval()
        self.regressor = E.to(self.device).eval()
        for p in self.regressor.parameters():
            p.requires_grad_(False)
        if hasattr(E, "bind_generator"):
            E.bind_generator(self.generator)  # an iterative regressor calls G between its passes
        self._mean_latent: torch.Tensor | None = None
        self.source = str(source if source is not None else getattr(E, "source", ""))
        self.untrained = bool(untrained)
        unknown = set(overrides) - {f.name for f in fields(PipelineOptions)}
        if unknown:
            raise LatentcompError(
                f"unknown pipeline option(s) {', '.join(sorted(unknown))}; accepted: "
                + ", ".join(f.name for f in fields(PipelineOptions))
            )
        opts = replace(options or PipelineOptions(), **overrides).check()
        self.options = PipelineOptions()
        self.int8_regressor = None  # E's int8 copy where options.precision is "int8"
        self.set_iterations(opts.iterations)
        self.set_regressor_precision(opts.precision, opts.calibration)
        if opts.compile:
            self.compile(freeze=opts.freeze, **opts.compile_options)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_pretrained(
        cls,
        name: str = "toyfaces",
        device: str | torch.device | None = None,
        generator=None,
        trust_code: bool = False,
        **options,
    ) -> Pipeline:
        """Load by name: a bundled model (`latentcomp.pretrained.list_pretrained()`: toyfaces,
        toyfaces-stylegan2, toyfaces-gansformer), builtin:NAME, a regressor run folder, a folder written by
        `save_pretrained`, or a regressor .safetensors file (`latentcomp.pretrained.load_pipeline` resolves
        the name).

        The generator is the one the regressor records, unless `generator` (a spec such as
        `python:my_pkg.gen:build`, or a loaded Generator) names it. A recorded `python:` spec would run
        code chosen by the model file and is refused unless `trust_code=True`. `options` are
        `PipelineOptions` fields, e.g. `from_pretrained("toyfaces", precision="bf16", compile=True)`."""
        from ..pretrained import load_pipeline

        return load_pipeline(name, device=device, generator=generator, trust_code=trust_code, **options)

    def save_pretrained(self, folder, generator_spec: str | None = None, half: bool = False):
        """Write this pipeline as a folder that `from_pretrained(folder)` and every command's `--model
        FOLDER` load: FOLDER/regressor.safetensors (E's weights) + FOLDER/regressor.json (its config, with
        the generator's spec). Returns the folder.

        The generator is recorded by its spec (`builtin:NAME`, `stylegan2:PATH`, ...; `generator_spec`
        overrides it), not copied: a path in it is used as written, and a `python:` spec is refused at load
        unless the user names the generator again (see `from_pretrained`). `half` stores float16 weights."""
        from pathlib import Path

        from ..regressors.io import SAVED_WEIGHT_FILE, save_regressor

        spec = generator_spec or getattr(self.generator, "spec", "") or ""
        if not spec:
            raise LatentcompError(
                "this pipeline's generator has no spec (it was built in Python); pass save_pretrained("
                "folder, generator_spec=...) naming how to load it, e.g. python:my_gen.py:build"
            )
        folder = Path(folder).expanduser()
        if folder.exists() and not folder.is_dir():
            raise LatentcompError(f"{folder} exists and is not a folder")
        folder.mkdir(parents=True, exist_ok=True)
        save_regressor(self.regressor, folder / SAVED_WEIGHT_FILE, extra={"generator_spec": spec}, half=half)
        return folder

    def compile(self, freeze: bool = False, **options) -> Pipeline:
        """Compile the forward passes of G and E with `torch.compile` (in place; returns self).

        Worth it for batch jobs: each new input shape or grad mode compiles once on first use (about
        25 s per graph on a 2-core CPU), after which E + G and the refinement / optimisation steps run
        faster (figures in benchmarks/). Outputs match the eager ones to about 1e-5. `options` go to
        `torch.compile` (e.g. mode="max-autotune").

        `freeze=True` is for low latency at small batches (a server answering one image at a time): the
        pipeline's calls without grad (invert, generate, sample, compose's regressor pass) then compile with
        inductor's freezing, which folds the weights into the graph as constants and lays conv weights out
        ahead of time. On a CPU that halved the one-image E + G time of the bundled StyleGAN2 pipeline, while
        batches of 64 of the DCGAN one ran slower in one run and faster in another (figures in
        docs/benchmarks.md); with no clear batch gain and stale weights as its risk, it is off by default.
        Graphs that need grad (refinement, optimisation) cannot be frozen and are unchanged. A frozen graph
        keeps the weights it was compiled with: do not change E's or G's weights in place afterwards
        (`finetune` returns a new pipeline, which is fine)."""
        self.generator.compile(**options)
        self.regressor.compile(**options)
        self.options = replace(self.options, compile=True, freeze=bool(freeze), compile_options=dict(options))
        return self

    @property
    def compiled(self) -> bool:
        return self.options.compile

    @property
    def frozen(self) -> bool:
        return self.options.freeze

    @property
    def regressor_precision(self) -> str:
        return self.options.precision

    @property
    def iterations(self) -> int | None:
        return self.options.iterations

    def inference_context(self):
        """Context for E and G calls: with `compile(freeze=True)`, graphs compiled without grad are frozen.
        Freezing is an inductor setting read while dynamo traces, so it is switched on around the call
        (`torch.compile`'s `options` reach inductor only after tracing)."""
        if not (self.compiled and self.frozen) or torch.is_grad_enabled():
            return contextlib.nullcontext()
        import torch._inductor.config as inductor_config

        return inductor_config.patch(freezing=True)

    def set_regressor_precision(self, precision: str, calibration: int = 256) -> Pipeline:
        """Run E in "fp32" (default), under bf16 autocast ("bf16") or as an int8 copy ("int8"); returns self.
        G always runs in fp32.

        E only has to land near the right latent. On the bundled pipelines bf16 moves its latents by ~0.04
        and leaves the known-pixel error unchanged, while E runs 1.4-2.8x faster on CPUs with bf16 units.
        "int8" (CPU only) quantizes E's convolutions, calibrated on `calibration` of G's samples under the
        paper's masks (a quarter unmasked). On the bundled pipelines E then ran 1.5-1.9x faster than
        compiled fp32 on an AVX2 CPU (E + G about 10%), and the known-pixel error rose by 1-5%. The int8
        copy serves the calls without grad (invert, compose, inpaint, the anchor of refinement); calls that
        need E's gradient (refinement's latent term) use the fp32 E. Figures in docs/benchmarks.md; check
        your own regressor with benchmarks/bench_regressor_vs_optimisation.py."""
        opts = replace(self.options, precision=precision, calibration=calibration).check()
        if precision == "int8" and (getattr(self.regressor, "iterative", False)
                                    or getattr(self.regressor, "head_kind", "pool") != "pool"):  # fmt: skip
            raise LatentcompError(
                "regressor precision int8 quantizes plain regressors with the pooled head only; this one is "
                "iterative or has the pyramid head (use fp32 or bf16)"
            )
        self.int8_regressor = self._quantized_regressor(calibration) if precision == "int8" else None
        self.options = opts
        return self

    def _quantized_regressor(self, calibration: int):
        from ..masks import MaskSampler
        from ..regressors.quantize import quantize_regressor

        if self.device.type != "cpu":
            raise LatentcompError(
                f"regressor precision int8 runs on the CPU only; this pipeline is on {self.device} "
                "(use bf16 there)"
            )
        g = torch.Generator().manual_seed(INT8_CALIBRATION_SEED)
        x = self.sample(calibration, seed=INT8_CALIBRATION_SEED)
        m = MaskSampler("noise", unmasked_fraction=0.25)(calibration, self.resolution, generator=g)
        return quantize_regressor(self.regressor, x, m)

    # ------------------------------------------------------------------ properties
    @property
    def space(self) -> str:
        return self.regressor.space

    @property
    def resolution(self) -> int:
        return int(self.generator.resolution)

    @property
    def channels(self) -> int:
        return int(self.generator.channels)

    def describe(self) -> str:
        return f"{self.generator.describe()}; regressor space {self.space}"

    @property
    def iterative(self) -> bool:
        return bool(getattr(self.regressor, "iterative", False))

    def set_iterations(self, iterations: int | None) -> Pipeline:
        """Passes of an iterative regressor for the calls that follow (None = its recorded default); returns
        self. A plain regressor accepts only 1 or None."""
        check = getattr(self.regressor, "check_iterations", None)
        if iterations is not None:
            if check is not None:
                check(iterations)
            elif iterations != 1:
                raise LatentcompError(f"iterations {iterations}: this regressor makes one pass only")
        self.options = replace(self.options, iterations=iterations)
        return self

    @contextlib.contextmanager
    def iterations_scope(self, iterations: int | None):
        """`iterations` for the calls inside the block (None: the pipeline's setting)."""
        if iterations is None:
            yield
            return
        old = self.iterations
        self.set_iterations(iterations)
        try:
            yield
        finally:
            self.options = replace(self.options, iterations=old)

    def _images(self, x, name="image") -> torch.Tensor:
        return as_image_batch(x, name, self.channels, self.resolution).to(self.device)

    def _mask(self, m, like, name="mask", allow_empty=False) -> torch.Tensor:
        if m is None:
            return torch.ones_like(like[:, :1])
        m = as_mask_batch(m, name, like=like, allow_empty=allow_empty).to(self.device)
        if m.shape[0] == 1 and like.shape[0] > 1:
            m = m.expand(like.shape[0], -1, -1, -1).contiguous()
        return m

    def _prepare(self, x, mask, name="image") -> tuple[torch.Tensor, torch.Tensor]:
        """The regressor's input from user images and masks: (x * m, m) on the device, a batch of one image
        repeated to the masks' batch."""
        x = self._images(x, name)
        m = self._mask(mask, x)
        if x.shape[0] == 1 and m.shape[0] > 1:
            x = x.expand(m.shape[0], -1, -1, -1)
        return x * m, m

    def mean_latent(self) -> torch.Tensor:
        if self._mean_latent is None:
            self._mean_latent = mean_latent(self.generator, self.space)
        return self._mean_latent

    # ------------------------------------------------------------------ primitives
    @torch.no_grad()
    def invert(self, x, mask=None) -> torch.Tensor:
        """E(x, mask) -> latent (N, ...) in `self.space`."""
        return self.run_regressor(*self._prepare(x, mask))

    def run_regressor(self, x: torch.Tensor, m: torch.Tensor, regressor=None) -> torch.Tensor:
        """E(x, m) (or another regressor's, e.g. a fine-tuned copy) in the pipeline's regressor precision;
        the latent comes back as fp32. The optimisation objective's latent term calls E through this too,
        so refinement and the optimisation-only baseline run E exactly as the regressor's pass does; with
        precision int8, calls under grad (that term) run the fp32 E, as int8 kernels have no backward."""
        E = self.regressor if regressor is None else regressor
        if E is self.regressor and self.int8_regressor is not None and not torch.is_grad_enabled():
            return self.int8_regressor(x, m)
        kw = {"iterations": self.iterations} if getattr(E, "iterative", False) else {}
        with self.inference_context():
            if self.regressor_precision == "bf16":
                with torch.autocast(self.device.type, dtype=torch.bfloat16):
                    return E(x, m, **kw).float()
            return E(x, m, **kw)

    @torch.no_grad()
    def generate(self, latent: torch.Tensor) -> torch.Tensor:
        """G(latent) in the regressor's space -> images (N, C, H, W) in [-1, 1] (on the pipeline's device)."""
        with self.inference_context():
            return self.generator(latent.to(self.device), space=self.space).clamp(-1, 1)

    @torch.no_grad()
    def sample(self, n: int = 1, seed: int = 0, return_latent: bool = False):
        """n random images from G's prior (same seed -> same images)."""
        if n < 1:
            raise LatentcompError(f"n must be at least 1; got {n}")
        g = torch.Generator().manual_seed(int(seed))
        z = self.generator.sample_latent(n, generator=g).to(self.device)
        with self.inference_context():
            img = self.generator(z, space="z").clamp(-1, 1)
        return (img, z) if return_latent else img

    def reconstruct(self, x, mask=None) -> torch.Tensor:
        return self.generate(self.invert(x, mask))

    @torch.no_grad()
    def domain_gap(self, latent: torch.Tensor) -> torch.Tensor:
        """(N,) RMS distance between each latent and E(G(latent)): 0 where the regressor maps the latent's
        image back to it (in-domain); plain refinement drifts away from where E lands."""
        return domain_gap(self.generator, self.run_regressor, self.space, latent.to(self.device)).cpu()

    # ------------------------------------------------------------------ operations
    def compose(
        self,
        images: Sequence[torch.Tensor] | torch.Tensor,
        masks: Sequence[torch.Tensor | None] | None = None,
        refine: int = 0,
        refine_method: str = "adam",
        refine_lr: float | None = None,
        finetune: int = 0,
        paste: bool = False,
        seed: int = 0,
        domain_weight: float = DOMAIN_WEIGHT,
        iterations: int | None = None,
    ) -> ComposeResult:
        """Paste parts in order (later on top; a part without a mask contributes its whole image), regress
        the collage with its known region, generate. Options: `refine` steps of latent optimisation
        (`refine_method` adam, lbfgs or in-domain: Adam with the regressor as a domain regulariser of weight
        `domain_weight`, see refine.py), `finetune` steps of per-input regressor tuning first, `paste` the
        known pixels back, `iterations` passes of an iterative regressor."""
        t0 = time.perf_counter()
        if isinstance(images, torch.Tensor):
            images = [images]
        cfg = OptimConfig(steps=refine, method=refine_method, lr=refine_lr, domain_weight=domain_weight)
        cfg.check()
        with self.iterations_scope(iterations):
            parts = [self._images(x, f"part {i} image") for i, x in enumerate(images)]
            collage, known, visible = make_collage(parts, masks, self.channels, self.resolution)
            return self._run(collage, known, visible, cfg, finetune=finetune, paste=paste, seed=seed, t0=t0)

    def _run(self, collage, known, parts, cfg: OptimConfig, *, finetune: int, paste: bool, seed: int, t0):
        """Regress the collage (after `finetune` steps of tuning a copy of E on it), refine, generate."""
        E = self.regressor
        if finetune:
            E = finetune_regressor(self.generator, E, collage, known, steps=finetune, seed=seed)
        with torch.no_grad():
            latent = self.run_regressor(collage, known, E)
        if cfg.steps:
            E_call = functools.partial(self.run_regressor, regressor=E)
            latent = optimise_latent(self.generator, E_call, self.space, collage, known, latent, cfg).latent
        raw = self.generate(latent)
        err = masked_l1(raw, collage, known)
        out = paste_back(raw, collage, known) if paste else raw
        return ComposeResult(
            image=out.cpu(),
            collage=collage.cpu(),
            mask=known.cpu(),
            latent=latent.cpu(),
            space=self.space,
            known_error=err.cpu(),
            seconds=time.perf_counter() - t0,
            parts=[p.cpu() for p in parts],
            raw=raw.cpu(),
        )

    def inpaint(
        self,
        image: torch.Tensor,
        mask: torch.Tensor,
        n: int = 1,
        seed: int = 0,
        method: str = "auto",
        paste: bool = False,
        refine: int = 0,
        refine_method: str = "adam",
        domain_weight: float = DOMAIN_WEIGHT,
        iterations: int | None = None,
    ) -> InpaintResult:
        """n completions of the hidden region (mask 0) that keep the known region (mask 1).

        Completion 0 is the regressor's own answer; the others come from `method`: "fill" (hidden region
        filled with a random sample of G, then regressed as a whole), "style" (w+ only: fine-layer styles
        resampled, then re-projected) or "auto" (see multimodal.py). Diversity = mean pairwise L1 inside
        the hidden region; known_error = L1 on the known pixels. `refine` steps of `refine_method` (adam,
        lbfgs, in-domain) optimise every completion's latent on the known pixels. `iterations`: passes of
        an iterative regressor.
        """
        t0 = time.perf_counter()
        cfg = OptimConfig(steps=refine, method=refine_method, domain_weight=domain_weight).check()
        if n < 1:
            raise LatentcompError(f"n must be at least 1; got {n}")
        with self.iterations_scope(iterations):
            x, m = self._prepare(image, mask)
            return self._complete(x, m, cfg, n=n, seed=seed, method=method, paste=paste, t0=t0)

    def _complete(self, x, m, cfg: OptimConfig, *, n: int, seed: int, method: str, paste: bool, t0: float):
        """n completions of the prepared input (x * m, m)."""
        latents = multimodal.completion_latents(self, x, m, n, seed, method)  # (N, K, ...)
        if cfg.steps:
            flat = latents.flatten(0, 1)
            xs, ms = x.repeat_interleave(n, 0), m.repeat_interleave(n, 0)
            flat = optimise_latent(self.generator, self.run_regressor, self.space, xs, ms, flat, cfg).latent
            latents = flat.view_as(latents)
        imgs = self.generate(latents.flatten(0, 1)).view(x.shape[0], n, *x.shape[1:])
        err = torch.stack([masked_l1(imgs[:, k], x, m) for k in range(n)], 1)
        div = multimodal.diversity(imgs, 1 - m)
        if paste:
            imgs = paste_back(imgs, x.unsqueeze(1), m.unsqueeze(1))
        return InpaintResult(
            images=imgs.cpu(),
            latents=latents.cpu(),
            input=x.cpu(),
            mask=m.cpu(),
            known_error=err.cpu(),
            diversity=div.cpu(),
            method=multimodal.resolve_method(self, method),
            seconds=time.perf_counter() - t0,
        )

    def edit(
        self,
        target: torch.Tensor,
        example: torch.Tensor,
        region: torch.Tensor,
        refine: int = 0,
        paste: bool = False,
        seed: int = 0,
        refine_method: str = "adam",
        domain_weight: float = DOMAIN_WEIGHT,
        iterations: int | None = None,
    ) -> ComposeResult:
        """Edit by example: the collage is `target` outside `region` and `example` inside (region = 1
        where the example's content is wanted, e.g. its glasses or mouth); regress it whole, generate.
        `paste` keeps the target's pixels outside the region exactly."""
        t0 = time.perf_counter()
        cfg = OptimConfig(steps=refine, method=refine_method, domain_weight=domain_weight).check()
        tgt = self._images(target, "target")
        ex = self._images(example, "example")
        r = as_mask_batch(region, "region", like=tgt).to(self.device)
        collage, known, parts = make_collage([tgt, ex], [None, r])
        with self.iterations_scope(iterations):
            res = self._run(collage, known, parts, cfg, finetune=0, paste=False, seed=seed, t0=t0)
        if paste:
            keep = (1 - r).expand_as(res.mask).cpu()
            res.image = paste_back(res.image, collage.cpu(), keep)
        return res

    # ------------------------------------------------------------------ optimisation
    def refine(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None = None,
        latent: torch.Tensor | None = None,
        steps: int = 30,
        method: str = "adam",
        lr: float | None = None,
        track: bool = False,
        **weights,
    ) -> OptimResult:
        """Optimise the latent from `latent` (default: the regressor's output); objective in refine.py."""
        x, m = self._prepare(x, mask)
        with torch.no_grad():
            anchor = self.run_regressor(x, m)
        init = anchor if latent is None else latent.to(self.device)
        cfg = OptimConfig(steps=steps, method=method, lr=lr, **weights)
        E = self.run_regressor
        return optimise_latent(self.generator, E, self.space, x, m, init, cfg, anchor=anchor, track=track)

    def optimize(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None = None,
        steps: int = 200,
        method: str = "adam",
        lr: float | None = None,
        track: bool = False,
        **weights,
    ) -> OptimResult:
        """Optimisation-only baseline: the same objective, starting from the generator's mean latent."""
        x, m = self._prepare(x, mask)
        init = self.mean_latent().expand(x.shape[0], *self.mean_latent().shape[1:]).clone()
        cfg = OptimConfig(steps=steps, method=method, lr=lr, **weights)
        E = self.run_regressor
        return optimise_latent(self.generator, E, self.space, x, m, init, cfg, track=track, default_lr=0.05)

    optimise = optimize

    def finetune(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None = None,
        steps: int = 30,
        lr: float = 1e-4,
        seed: int = 0,
    ) -> Pipeline:
        """A new Pipeline whose regressor copy was tuned for `steps` Adam steps on x (random masks)."""
        x, m = self._prepare(x, mask)
        E2 = finetune_regressor(self.generator, self.regressor, x, m, steps=steps, lr=lr, seed=seed)
        opts = replace(self.options, compile=False, freeze=False, compile_options={})  # G and E2 run eager
        return Pipeline(self.generator, E2, self.device, source=self.source, options=opts)

    # ------------------------------------------------------------------ baselines
    def poisson(self, images, masks) -> torch.Tensor:
        """Poisson blending of the parts (OpenCV seamlessClone, parts < 10% skipped)."""
        imgs = [self._images(x, f"part {i} image") for i, x in enumerate(images)]
        return baselines.poisson_blend(imgs, list(masks)).cpu()

    def raw_collage(self, images, masks=None) -> torch.Tensor:
        collage, _, _ = make_collage(images, masks, self.channels, self.resolution)
        return collage.cpu()
