"""`latentcomp compose | inpaint | edit | demo`: the applications, on files. Thin: parse, load, call the
Pipeline, write atomically, print one summary line per output."""

from __future__ import annotations

from pathlib import Path

import typer

from ..errors import LatentcompError

MODEL_HELP = (
    "Model: toyfaces, toyfaces-stylegan2, toyfaces-gansformer, builtin:NAME, or a regressor run folder / "
    ".safetensors file."
)

OVERWRITE_HELP = "Allow --out to be one of the input files (it is then replaced by the result)."
REFINE_METHOD_HELP = (
    "Refinement optimiser: adam, lbfgs, or in-domain (Adam that also keeps the latent where the regressor "
    "maps its own image, ||l - E(G(l))||; Zhu et al. 2020)."
)
DOMAIN_WEIGHT_HELP = "Weight of the in-domain term ||l - E(G(l))||^2 (--refine-method in-domain only)."

GENERATOR_HELP = (
    "Generator spec to pair with --model instead of the one the model file records (needed for a "
    "python:MODULE:FUNCTION generator, which a model file may not choose by itself)."
)


ITERATIONS_HELP = (
    "Passes of an iterative regressor (1-10; default: the number it was trained with); a plain regressor "
    "makes one."
)


def _pipe(model: str, device: str | None, generator: str | None = None, **options):
    """The model of a command; `options` are `PipelineOptions` fields (iterations, precision, compile)."""
    from ..pretrained import load_pipeline

    return load_pipeline(model, device=device, generator=generator, **options)


def split_part(spec: str) -> tuple[Path, Path | None]:
    """'a.png:mask.png' -> (a.png, mask.png); 'a.png' -> (a.png, None). A spec that names an existing file
    is that file; otherwise it splits at the last colon when the text after it names an image file."""
    from ..io import READ_SUFFIXES

    if ":" in spec and not Path(spec).is_file():
        left, right = spec.rsplit(":", 1)
        if left and right and Path(right).suffix.lower() in READ_SUFFIXES:
            return Path(left), Path(right)
    return Path(spec), None


def part_pairs(part: list[str], mask: list[str] | None) -> list[tuple[Path, Path | None]]:
    """(image, mask) per --part: from IMAGE:MASK specs, or, with --mask given, --part and --mask paired in
    order (then each --part is a plain path, colons and all; a --mask of '-' means no mask)."""
    if not mask:
        return [split_part(spec) for spec in part]
    if len(mask) != len(part):
        raise LatentcompError(
            f"--mask was given {len(mask)} time(s) for {len(part)} --part image(s); give one --mask per "
            "--part, in order ('-' for a part without a mask), or none and write --part IMAGE:MASK"
        )
    return [(Path(p), None if m == "-" else Path(m)) for p, m in zip(part, mask, strict=True)]


def _check_output(out: Path) -> None:
    from ..io import IMAGE_SUFFIXES

    if out.suffix.lower() not in IMAGE_SUFFIXES:
        raise LatentcompError(f"--out {out} must end in one of {', '.join(IMAGE_SUFFIXES)}")
    if out.is_dir():
        raise LatentcompError(f"--out {out} is a folder; give a file name such as {out / 'out.png'}")


def _check_refine(method: str, domain_weight: float) -> None:
    """Refuse a bad --refine-method / --domain-weight before any model loads."""
    from ..edit.refine import OptimConfig

    try:
        OptimConfig(method=method, domain_weight=domain_weight).check()
    except LatentcompError as e:
        raise LatentcompError(f"--refine-method / --domain-weight: {e}") from None


def _side(out: Path, tag: str) -> Path:
    return out.with_name(f"{out.stem}_{tag}{out.suffix}")


def _load_pair(image: Path, mask: Path | None, pipe, what: str, allow_empty: bool = False):
    """Load an image (and its mask) at the pipeline's size; an RGBA image without a mask gives its alpha."""
    from .. import io

    img, alpha = io.load_image(
        image, size=pipe.resolution, channels=pipe.channels, with_alpha=True, what=what
    )
    if mask is not None:
        w, h = io.image_size(image)
        m = io.load_mask(
            mask, size=pipe.resolution, image_hw=(h, w), allow_empty=allow_empty, what=f"{what} mask"
        )
        if alpha is not None:
            io.print_notice(
                f"{what} {image}: transparent pixels composited on white (the mask {mask} says which are "
                "known)"
            )
    elif alpha is not None:
        if alpha.sum() == 0:
            raise LatentcompError(f"{what} {image} is fully transparent; nothing of it can be used")
        io.print_notice(
            f"{what} {image}: no mask given, its transparency is used as the mask "
            "(transparent pixels composited on white)"
        )
        m = alpha
    else:
        m = None
    return img, m


def compose(
    model: str = typer.Option("toyfaces", help=MODEL_HELP),
    generator: str = typer.Option(None, help=GENERATOR_HELP),
    part: list[str] = typer.Option(
        ...,
        help="IMAGE[:MASK], repeatable, pasted in order (later on top). Without a mask the whole image "
        "counts (or its transparency, for RGBA images). White mask pixels = the part.",
    ),
    mask: list[str] = typer.Option(
        None,
        help="Mask of the --part at the same position (repeatable, one per --part, '-' for none); with "
        "--mask, --part takes plain paths, so they may contain ':'.",
    ),
    out: Path = typer.Option(..., help="Output image (.png, .jpg, .webp)."),
    overwrite: bool = typer.Option(False, help=OVERWRITE_HELP),
    refine: int = typer.Option(0, help="Latent refinement steps after the regressor (0 = off)."),
    refine_method: str = typer.Option("adam", help=REFINE_METHOD_HELP),
    domain_weight: float = typer.Option(0.5, help=DOMAIN_WEIGHT_HELP),
    finetune: int = typer.Option(0, help="Per-input regressor fine-tuning steps first (0 = off)."),
    paste: bool = typer.Option(False, help="Paste the known pixels of the collage back onto the output."),
    save_inputs: bool = typer.Option(False, help="Also write OUT_collage and OUT_mask next to the output."),
    seed: int = typer.Option(0, min=0, max=2**63 - 1, help="Seed for fine-tuning masks."),
    iterations: int = typer.Option(None, help=ITERATIONS_HELP),
    device: str = typer.Option(None, help="Torch device, e.g. cpu or cuda [default: cpu]."),
):
    """Paste parts of several images into a collage and turn it into one coherent image."""
    from .. import io
    from ..outputs import check_not_inputs

    pairs = part_pairs(part, mask)
    outputs = [out, _side(out, "collage"), _side(out, "mask")] if save_inputs else [out]
    inputs = [
        (f"part {i + 1} {what}", p)
        for i, pair in enumerate(pairs)
        for what, p in zip(("image", "mask"), pair, strict=True)
    ]
    check_not_inputs(outputs, inputs, overwrite)
    _check_output(out)
    _check_refine(refine_method, domain_weight)
    pipe = _pipe(model, device, generator, iterations=iterations)
    imgs, masks = [], []
    for i, (path, mpath) in enumerate(pairs):
        img, m = _load_pair(path, mpath, pipe, f"part {i + 1} image")
        imgs.append(img)
        masks.append(m)
    res = pipe.compose(
        imgs,
        masks,
        refine=refine,
        refine_method=refine_method,
        finetune=finetune,
        paste=paste,
        seed=seed,
        domain_weight=domain_weight,
    )
    io.save_image(res.image[0], out)
    extra = ""
    if save_inputs:
        io.save_image(res.collage[0], _side(out, "collage"))
        io.save_mask(res.mask[0], _side(out, "mask"))
        extra = f" (+ {_side(out, 'collage').name}, {_side(out, 'mask').name})"
    print(
        f"wrote {out}{extra}: {len(part)} parts, {float(res.mask.mean()) * 100:.0f}% known, "
        f"known-pixel L1 {float(res.known_error[0]):.4f}, {res.seconds:.2f} s"
    )


def inpaint(
    model: str = typer.Option("toyfaces", help=MODEL_HELP),
    generator: str = typer.Option(None, help=GENERATOR_HELP),
    image: Path = typer.Option(..., help="Image file, or a folder of images (batch mode)."),
    mask: Path = typer.Option(
        ..., help="Mask file (white = keep, black = fill in), or a folder of masks matched by file name."
    ),
    out: Path = typer.Option(..., help="Output file (single image) or folder (batch mode; names are kept)."),
    overwrite: bool = typer.Option(
        False, help=OVERWRITE_HELP + " In batch mode: --out may be the --image folder."
    ),
    n: int = typer.Option(1, help="Completions per image; with n > 1 outputs are NAME_k0 ... NAME_k{n-1}."),
    seed: int = typer.Option(0, min=0, max=2**63 - 1, help="Seed of the completions."),
    method: str = typer.Option("auto", help="Multimodal method: auto, fill or style (w+ models)."),
    paste: bool = typer.Option(False, help="Keep the known pixels exactly (paste them back)."),
    refine: int = typer.Option(0, help="Latent refinement steps (0 = off)."),
    refine_method: str = typer.Option("adam", help=REFINE_METHOD_HELP),
    domain_weight: float = typer.Option(0.5, help=DOMAIN_WEIGHT_HELP),
    batch: int = typer.Option(32, help="Images per forward pass in batch mode."),
    compile: bool = typer.Option(
        False, "--compile", help="torch.compile E and G first: slower start, faster on large folders."
    ),
    regressor_precision: str = typer.Option(
        "fp32", help="Precision of the regressor E: fp32, bf16 or int8 (CPU; faster; G stays fp32)."
    ),
    iterations: int = typer.Option(None, help=ITERATIONS_HELP),
    device: str = typer.Option(None, help="Torch device [default: cpu]."),
):
    """Complete the hidden region of an image (or of every image in a folder); several samples with --n."""
    import torch

    from .. import io
    from ..outputs import check_not_inputs

    if n < 1:
        raise LatentcompError(f"--n must be at least 1; got {n}")
    if batch < 1:
        raise LatentcompError(f"--batch must be at least 1; got {batch}")
    pairs = io.match_images_masks(image, mask)
    folder_mode = image.is_dir()
    targets = [_inpaint_target(out, p, k, n, folder_mode) for p, _ in pairs for k in range(n)]
    inputs = [(w, p) for pair in pairs for w, p in zip(("image", "mask"), pair, strict=True)]
    if folder_mode:  # --out DIR that is the --image DIR: even new names would land among the inputs
        inputs += [("image folder", image)] + ([("mask folder", mask)] if mask.is_dir() else [])
    check_not_inputs([out, *targets] if folder_mode else targets, inputs, overwrite)
    if folder_mode:
        if out.exists() and not out.is_dir():
            raise LatentcompError(f"--out {out} must be a folder when --image is a folder")
    else:
        _check_output(out)
    _check_refine(refine_method, domain_weight)
    options = {"iterations": iterations, "precision": regressor_precision, "compile": compile}
    pipe = _pipe(model, device, generator, **options)
    loaded = []
    for img_path, mask_path in pairs:
        img, m = _load_pair(img_path, mask_path, pipe, "image")
        if m is not None and bool((m == 1).all()):
            io.print_notice(f"mask {mask_path} keeps every pixel; the output is a reconstruction")
        loaded.append((img_path, img, m))
    written, divs, errs, gan_errs = 0, [], [], []
    for start in range(0, len(loaded), max(1, batch)):
        chunk = loaded[start : start + batch]
        x = torch.cat([c[1] for c in chunk])
        m = torch.cat([c[2] if c[2] is not None else torch.ones_like(c[1][:, :1]) for c in chunk])
        res = pipe.inpaint(
            x,
            m,
            n=n,
            seed=seed,
            method=method,
            paste=paste,
            refine=refine,
            refine_method=refine_method,
            domain_weight=domain_weight,
        )
        for i, (path, _, _) in enumerate(chunk):
            for k in range(n):
                io.save_image(res.images[i, k], _inpaint_target(out, path, k, n, folder_mode))
                written += 1
        divs += [float(v) for v in res.diversity]
        errs += [float(v) for v in res.output_known_error.mean(1)]
        gan_errs += [float(v) for v in res.known_error.mean(1)]
    where = out if folder_mode or n == 1 else f"{_side(out, 'k0')} ... {_side(out, f'k{n - 1}').name}"
    msg = f"wrote {written} image(s) to {where}: known-pixel L1 {sum(errs) / len(errs):.4f}"
    if paste:
        msg += f" (pasted; the generator's output before pasting: {sum(gan_errs) / len(gan_errs):.4f})"
    if n > 1:
        msg += f", diversity (pairwise L1 in the hidden region) {sum(divs) / len(divs):.4f}"
    print(msg)


def _inpaint_target(out: Path, image: Path, k: int, n: int, folder_mode: bool) -> Path:
    """Where completion k of `image` goes: OUT/NAME (batch mode) or OUT; _kK before the suffix if n > 1."""
    if folder_mode:
        return out / (image.name if n == 1 else f"{image.stem}_k{k}{image.suffix}")
    return out if n == 1 else _side(out, f"k{k}")


def edit(
    model: str = typer.Option("toyfaces", help=MODEL_HELP),
    generator: str = typer.Option(None, help=GENERATOR_HELP),
    image: Path = typer.Option(..., help="Target image to edit."),
    example: Path = typer.Option(..., help="Example image showing the wanted content."),
    region: Path = typer.Option(..., help="Mask: white where the example's content should go."),
    out: Path = typer.Option(..., help="Output image."),
    overwrite: bool = typer.Option(False, help=OVERWRITE_HELP),
    refine: int = typer.Option(0, help="Latent refinement steps (0 = off)."),
    refine_method: str = typer.Option("adam", help=REFINE_METHOD_HELP),
    domain_weight: float = typer.Option(0.5, help=DOMAIN_WEIGHT_HELP),
    paste: bool = typer.Option(False, help="Keep the target's pixels outside the region exactly."),
    save_inputs: bool = typer.Option(False, help="Also write OUT_collage next to the output."),
    iterations: int = typer.Option(None, help=ITERATIONS_HELP),
    device: str = typer.Option(None, help="Torch device [default: cpu]."),
):
    """Edit by example: transfer what the example shows inside the region onto the target."""
    from .. import io
    from ..outputs import check_not_inputs

    outputs = [out, _side(out, "collage")] if save_inputs else [out]
    inputs = [("target image", image), ("example image", example), ("region mask", region)]
    check_not_inputs(outputs, inputs, overwrite)
    _check_output(out)
    _check_refine(refine_method, domain_weight)
    pipe = _pipe(model, device, generator, iterations=iterations)
    tgt = io.load_image(image, size=pipe.resolution, channels=pipe.channels, what="target image")
    ex = io.load_image(example, size=pipe.resolution, channels=pipe.channels, what="example image")
    w, h = io.image_size(image)
    r = io.load_mask(region, size=pipe.resolution, image_hw=(h, w), what="region mask")
    res = pipe.edit(
        tgt, ex, r, refine=refine, paste=paste, refine_method=refine_method, domain_weight=domain_weight
    )
    io.save_image(res.image[0], out)
    if save_inputs:
        io.save_image(res.collage[0], _side(out, "collage"))
    print(f"wrote {out}: region {float(r.mean()) * 100:.0f}% of the image, {res.seconds:.2f} s")


def invert(
    model: str = typer.Option("toyfaces", help=MODEL_HELP),
    generator: str = typer.Option(None, help=GENERATOR_HELP),
    image: Path = typer.Option(..., help="Image to invert."),
    mask: Path = typer.Option(None, help="Known-pixel mask (white = keep); default: every pixel known."),
    out: Path = typer.Option(..., help="Output image: the reconstruction."),
    layer: str = typer.Option(
        None,
        help="Invert into this feature layer's activation instead of the latent (Bau et al.; 'auto' = the "
        "first spatial layer at least 1/8 of the image size). Also writes OUT_latent (the latent "
        "reconstruction of the same budget) and OUT_gap (where the two differ: what the GAN cannot draw).",
    ),
    steps: int = typer.Option(100, help="Optimisation steps (layer-wise, and the latent's refinement)."),
    refine_method: str = typer.Option("adam", help=REFINE_METHOD_HELP + " Without --layer only."),
    codes: int = typer.Option(
        None,
        help="Multi-code GAN prior (Gu et al.): optimise this many codes whose --layer features are mixed "
        "with learned per-channel importance. Also writes OUT_single (one code, same loss and steps).",
    ),
    task: str = typer.Option(
        "invert",
        help="With --codes: invert, inpaint (needs --mask), colorize (grey input; the loss sees the grey of "
        "the output) or superres (low-res input; the loss sees the output averaged down by --factor).",
    ),
    factor: int = typer.Option(4, help="superres: the low-res input is this many times smaller."),
    device: str = typer.Option(None, help="Torch device [default: cpu]."),
):
    """Reconstruct an image through the GAN: regressor (+ refinement) into the latent, into an
    intermediate layer with --layer (layer-wise inversion), or with several codes mixed at --layer
    (--codes N, multi-code GAN prior; --task inpaint / colorize / superres)."""
    from .. import io

    _check_output(out)
    if steps < 0:
        raise LatentcompError(f"--steps must be >= 0; got {steps}")
    _check_refine(refine_method, 0.5)
    if codes is not None:
        args = (model, generator, image, mask, out, layer, steps, codes, task, factor, device)
        return _invert_multicode(*args)
    if task != "invert":
        raise LatentcompError(f"--task {task} needs --codes N (the multi-code GAN prior; 1 = a single code)")
    pipe = _pipe(model, device, generator)
    img, m = _load_pair(image, mask, pipe, "image")
    if layer is None:
        res = pipe.compose([img], [m], refine=steps, refine_method=refine_method)
        io.save_image(res.image[0], out)
        print(
            f"wrote {out}: latent inversion, known-pixel L1 {float(res.known_error[0]):.4f}, "
            f"{res.seconds:.2f} s"
        )
        return
    from ..edit.layerwise import invert_layer

    res = invert_layer(pipe, img, m, layer=layer, steps=steps, progress=True)
    gap = (res.image - res.latent_image).abs().mean(1, keepdim=True)
    gap = (gap / gap.max().clamp(min=1e-6)) * 2 - 1
    io.save_image(res.image[0], out)
    io.save_image(res.latent_image[0], _side(out, "latent"))
    io.save_image(gap[0].expand(3, -1, -1).contiguous() if pipe.channels == 3 else gap[0], _side(out, "gap"))
    print(
        f"wrote {out} (+ {_side(out, 'latent').name}, {_side(out, 'gap').name}): layer-wise inversion into "
        f"{res.layer}, known-pixel L1 {float(res.known_l1[0]):.4f} vs {float(res.latent_known_l1[0]):.4f} "
        f"for the latent, {res.seconds:.2f} s"
    )


def _invert_multicode(model, generator, image, mask, out, layer, steps, codes, task, factor, device):
    from .. import io
    from ..edit.multicode import check_task, invert_multicode_pipe

    if codes < 1:
        raise LatentcompError(f"--codes must be at least 1; got {codes}")
    pipe = _pipe(model, device, generator)
    check_task(task, factor, pipe.resolution, mask is not None)
    img, m = _load_pair(image, mask, pipe, "image")
    res = invert_multicode_pipe(
        pipe, img, m, codes=codes, layer=layer, task=task, factor=factor, steps=steps, progress=True
    )
    io.save_image(res.image[0], out)
    io.save_image(res.single_image[0], _side(out, "single"))
    print(
        f"wrote {out} (+ {_side(out, 'single').name}): {task} with {codes} codes at {res.layer}, observed L1 "
        f"{float(res.observed_l1[0]):.4f} vs {float(res.single_observed_l1[0]):.4f} for one code, "
        f"{res.seconds + res.single_seconds:.2f} s"
    )


def demo(
    out: Path = typer.Option(Path("out/demo"), help="Output folder for index.html and its images."),
    quick: bool = typer.Option(False, help="A smaller, faster page (one model, fewer images)."),
    model: list[str] = typer.Option(
        None, help="Model(s) to show instead of the bundled toyfaces-dcgan and toyfaces-stylegan2."
    ),
    seed: int = typer.Option(0, min=0, max=2**63 - 1, help="Seed of every random choice."),
):
    """Write an HTML page that shows collages, completions and edits on the bundled models."""
    import sys
    import time

    from ..edit.demo import run_demo

    t0 = time.perf_counter()
    page = run_demo(
        out, quick=quick, models=model or None, seed=seed, log=lambda s: print(s, file=sys.stderr)
    )
    print(f"demo page: {page} ({time.perf_counter() - t0:.1f} s)")


def register(app) -> None:
    app.command("compose")(compose)
    app.command("inpaint")(inpaint)
    app.command("edit")(edit)
    app.command("invert")(invert)
    app.command("demo")(demo)
