"""`latentcomp directions compute | list | evaluate` and `latentcomp navigate`: editing directions in latent
space, and editing real images (or collages) along them through the regressor. Thin: parse, call
`latentcomp.navigate`, write, print."""

from __future__ import annotations

from pathlib import Path

import typer

from ..errors import LatentcompError

MODEL_HELP = (
    "Model: toyfaces, toyfaces-stylegan2, builtin:NAME or a regressor run folder / .safetensors file."
)
ANALYZER_HELP = "Classifier that labels samples (supervised directions): builtin:toyfaces-analyzer or a path."

COMPUTE_METHODS = ("pca", "sefa", "supervised", "geometric", "steer", "jacobian", "unsupervised")

directions_app = typer.Typer(
    help="Editing directions: compute (PCA, SeFa, supervised, geometric, steer, Jacobian, unsupervised), "
    "list, evaluate, geometry.",
    no_args_is_help=True,
)
TRANSFORM_HELP = (
    "geometric / steer: transforms, comma-separated, from shift_x, shift_y, zoom, rotate, brightness "
    "(steer only) (default: all)."
)


def _load_analyzer(spec: str):
    from ..metrics.analyzer import load_analyzer

    return load_analyzer(spec)


def _pipeline(model: str, device: str | None = None, allow_untrained: bool = False):
    from ..pretrained import load_pipeline

    return load_pipeline(model, device=device, allow_untrained=allow_untrained)


def _generator(generator: str | None, model: str | None, device: str | None):
    from ..generators import load_generator

    if (generator is None) == (model is None):
        raise LatentcompError("give exactly one of --generator SPEC or --model MODEL")
    if generator is not None:
        return load_generator(generator, device=device)
    return _pipeline(model, device).generator


@directions_app.command("compute")
def compute(
    out: Path = typer.Option(
        ..., help="Directions folder; the set is written as OUT/NAME.safetensors + .json."
    ),
    method: str = typer.Option(
        ...,
        help="pca (GANSpace), sefa (closed form), supervised (linear boundaries), geometric (closed-form "
        "zoom / shift / rotate walks from the first layer, Spingarn-Eliezer et al.) or steer (walks "
        "optimised so that G(l + a w) matches the transformed G(l), Jahanian et al.; non-linear walks: "
        "directions geometry --method steer-mlp), jacobian (top right-singular vectors of "
        "G's Jacobian averaged over --n latents, Ramesh et al.) or unsupervised (directions learned with a "
        "reconstructor that must tell them apart, Voynov & Babenko).",
    ),
    generator: str = typer.Option(None, help="Generator spec, e.g. builtin:toyfaces-stylegan2."),
    model: str = typer.Option(None, help=MODEL_HELP + " (its generator is used)."),
    space: str = typer.Option(None, help="z, w or w+ (default: w where the generator has it, else z)."),
    layers: str = typer.Option(None, help="w+ rows the directions act on, e.g. 0-3 (implies --space w+)."),
    k: int = typer.Option(10, help="Number of PCA / SeFa / Jacobian components or unsupervised directions."),
    n: int = typer.Option(
        None, help="Samples: PCA 2000, supervised 1000 labelled samples, jacobian 16 latents by default."
    ),
    layer: str = typer.Option(
        None,
        help="PCA of this feature layer's activations, lifted back (GANSpace); "
        "'latent' = PCA of the latents (default: w, or the first layer for a normal z). "
        "geometric: the layer whose activations are transformed (default: the first).",
    ),
    transform: str = typer.Option(None, help=TRANSFORM_HELP),
    steps: int = typer.Option(200, help="steer: Adam steps per walk; unsupervised: training steps."),
    batch: int = typer.Option(8, help="steer / unsupervised: latents per step."),
    target: list[str] = typer.Option(
        None,
        help="Supervised: ATTR=VALUE (repeatable; VALUE 'any' = every "
        "value but the first, e.g. glasses=any) (default: one per attribute).",
    ),
    condition: list[str] = typer.Option(
        None,
        help="Supervised: also write NAME_cond directions with these "
        "directions projected out (repeatable ATTR=VALUE names, or 'all' = each "
        "target conditioned on every other attribute).",
    ),
    analyzer: str = typer.Option("builtin:toyfaces-analyzer", help=ANALYZER_HELP),
    boundary: str = typer.Option("svm", help="Supervised boundary: svm (LinearSVC) or logreg."),
    c: float = typer.Option(0.01, "--c", help="Supervised: inverse L2 penalty of the boundary (sklearn C)."),
    name: str = typer.Option(
        None, help="Set name (default: GENERATOR_METHOD, e.g. toyfaces-stylegan2_pca, toyfaces-dcgan_sefa)."
    ),
    seed: int = typer.Option(0, min=0, max=2**63 - 1, help="Seed of the sampled latents."),
    device: str = typer.Option(None, help="Torch device (default: cpu)."),
    overwrite: bool = typer.Option(False, help="Replace a set of the same name in --out."),
):
    """Compute a set of directions for one generator and save it in a directions folder."""
    from .. import navigate as nav
    from ..navigate.directions import format_layers

    G = _generator(generator, model, device)
    sp = space or ("w+" if layers else nav.default_space(G))
    lay = nav.parse_layers(layers, G.num_ws or None) if layers else None
    if lay is not None and sp != "w+":
        raise LatentcompError("--layers needs --space w+ (or no --space)")
    info = {
        "method": method,
        "generator": G.spec,
        "space": sp,
        "layers": list(lay) if lay else None,
        "seed": seed,
    }
    gen_tag = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in Path(G.spec.split(":")[-1]).stem)
    set_name = name or (
        f"{gen_tag}_{method}"
        + (f"-{sp}" if sp != nav.default_space(G) else "")
        + (format_layers(lay).replace(",", "_") if lay else "")
    )
    existing = Path(out) / f"{set_name}.safetensors"
    if existing.exists() and not overwrite:
        raise LatentcompError(
            f"{existing} already holds a direction set named {set_name!r}; choose another --name or --out, "
            "or pass --overwrite to replace it"
        )
    if method == "pca":
        dirs = nav.pca_directions(G, k=k, n=n or 2000, space=sp, layer=layer, layers=lay, seed=seed)
    elif method == "sefa":
        dirs = nav.sefa_directions(G, k=k, space=sp, layers=lay, seed=seed)
    elif method == "supervised":
        an = _load_analyzer(analyzer)
        samples = nav.label_samples(G, an, n or 1000, seed=seed, space=sp, progress=True)
        dirs = nav.attribute_directions(
            samples,
            an.attribute_values,
            target or None,
            method=boundary,
            C=c,
            generator=G.spec,
            layers=lay,
            seed=seed,
        )
        if condition:
            conds = None if list(condition) == ["all"] else list(condition)
            fit = dict(method=boundary, C=c, generator=G.spec, layers=lay, seed=seed)
            pool = nav.condition_pool(samples, an.attribute_values, dirs, conds, **fit)
            cond = nav.conditional_set(dirs, samples.latents, conds, pool=pool)
            if not cond:
                raise LatentcompError(
                    f"--condition {' '.join(condition)} leaves no other direction to condition "
                    f"{', '.join(d.name for d in dirs)} on; name another ATTR=VALUE or use 'all'"
                )
            dirs = dirs + cond
        info.update(analyzer=analyzer, samples=n or 1000, boundary=boundary, C=c)
    elif method == "geometric":
        from ..navigate.geometry import closed_form_directions

        dirs = closed_form_directions(
            G, transform, space=sp, layer=layer, n=n or 64, seed=seed, progress=True
        )
        info.update(samples=n or 64, layer=dirs[0].meta["layer"])
    elif method == "steer":
        import sys

        from ..navigate.geometry import steer_directions

        dirs = steer_directions(
            G,
            transform,
            space=sp,
            steps=steps,
            batch=batch,
            seed=seed,
            progress=True,
            log=lambda s: print(s, file=sys.stderr, flush=True),
        )
        info.update(steps=steps, batch=batch)
    elif method == "unsupervised":
        import sys

        from ..navigate.discovery import discover_directions

        dirs = discover_directions(
            G,
            k=k,
            space=sp,
            steps=steps,
            batch=max(batch, 2),
            seed=seed,
            progress=True,
            log=lambda s: print(s, file=sys.stderr, flush=True),
        )
        info.update(steps=steps, batch=max(batch, 2))
    elif method == "jacobian":
        from ..navigate.jacobian import jacobian_directions

        dirs = jacobian_directions(G, k=k, space=sp, n=n or 16, seed=seed, progress=True)
        info.update(samples=n or 16)
    else:
        raise LatentcompError(
            f"unknown --method {method!r}; accepted: {', '.join(COMPUTE_METHODS)}"
        )
    path = nav.save_directions(dirs, Path(out) / set_name, info=info)
    print(
        f"wrote {path} ({len(dirs)} directions, {G.spec}, space {sp}"
        + (f" layers {format_layers(lay)}" if lay else "")
        + ")"
    )
    for d in dirs:
        print("  " + d.describe())


@directions_app.command("list")
def list_(
    folder: Path = typer.Argument(
        None, help="Directions folder (default: ./directions if it exists, and the bundled sets)."
    ),
):
    """List the direction sets of a folder and the directions in each."""
    from ..navigate import bundled_directions, list_directions

    sets = list_directions(folder or Path("directions")) if folder or Path("directions").is_dir() else {}
    if folder is None:
        sets.update({f"{k} (bundled)": v for k, v in bundled_directions().items()})
    if not sets:
        print(f"no direction sets in {folder}")
        return
    for set_name, dirs in sets.items():
        gens = sorted({d.generator for d in dirs})
        print(f"{set_name} ({len(dirs)} directions; {', '.join(gens)})")
        for d in dirs:
            print("  " + d.describe())


@directions_app.command("evaluate")
def evaluate(
    model: list[str] = typer.Option(["toyfaces", "toyfaces-stylegan2"], help=MODEL_HELP + " Repeatable."),
    out: Path = typer.Option(
        ..., help="Output folder: MODEL.json, MODEL.md, strips/, directions/, strips.png, results.md."
    ),
    strength: float = typer.Option(3.0, help="Edit strength (std of the latents along the direction)."),
    n_train: int = typer.Option(None, help="Labelled samples for the boundaries (400)."),
    n_eval: int = typer.Option(None, help="Fresh samples per edit (64)."),
    n_compare: int = typer.Option(None, help="Renders for the side-by-side with edit by example (48)."),
    k: int = typer.Option(None, help="PCA / SeFa components considered for the best match (5)."),
    target: list[str] = typer.Option(
        None, help="ATTR=VALUE targets (repeatable) (default: one per attribute)."
    ),
    space: str = typer.Option(None, help="Space of the directions (w where the generator has it, else z)."),
    analyzer: str = typer.Option("builtin:toyfaces-analyzer", help=ANALYZER_HELP),
    boundary: str = typer.Option("svm", help="svm or logreg."),
    compare: bool = typer.Option(True, help="Side by side with edit by example (toyfaces only)."),
    geometry: bool = typer.Option(
        False,
        "--geometry",
        help="Also compute zoom / shift / rotate / brightness walks (closed form + steer) and measure them "
        "against the toyfaces ground truth (as `directions geometry`; adds 1-4 min per model).",
    ),
    geometry_steps: int = typer.Option(100, help="--geometry: Adam steps per steer walk."),
    unsupervised: str = typer.Option(
        "pca,sefa",
        help="Unsupervised methods that compete for the best match per target, comma-separated, from pca, "
        "sefa, jacobian, unsupervised; with several, each method's own best matches are reported too.",
    ),
    quick: bool = typer.Option(False, help="Tiny sizes (a smoke test; the numbers mean little)."),
    figure_attributes: str = typer.Option(
        "hair_style,mouth_expression,glasses,skin_tone",
        help="Attributes shown in strips.png (comma-separated; strips-all.png shows every target).",
    ),
    seed: int = typer.Option(0, min=0, max=2**63 - 1, help="Seed."),
    device: str = typer.Option(None, help="Torch device (default: cpu)."),
):
    """Flip rate and interference of supervised / conditional / unsupervised directions on toyfaces, and
    locality versus edit by example. Writes JSON, markdown tables and strips."""
    import sys

    from .. import io
    from ..navigate.evaluate import (
        UNSUPERVISED_METHODS,
        EvalSizes,
        evaluate_navigation,
        markdown_tables,
        save_results,
        strip_figure,
    )

    methods = [m.strip() for m in unsupervised.split(",") if m.strip()]
    bad = [m for m in methods if m not in UNSUPERVISED_METHODS]
    if bad or not methods:
        raise LatentcompError(
            f"--unsupervised {unsupervised!r}: unknown {', '.join(bad) or '(none given)'}; accepted: "
            + ", ".join(UNSUPERVISED_METHODS)
        )
    sizes = EvalSizes.quick() if quick else EvalSizes()
    for attr, v in (
        ("n_train", n_train),
        ("n_eval", n_eval),
        ("n_compare", n_compare),
        ("unsupervised_k", k),
    ):
        if v is not None:
            if v < 1:
                raise LatentcompError(f"--{attr.replace('_', '-')} must be at least 1; got {v}")
            setattr(sizes, attr, v)
    an = _load_analyzer(analyzer)
    results = []
    for m in model:
        print(f"evaluating {m} ...", file=sys.stderr, flush=True)
        pipe = _pipeline(m, device, allow_untrained=True)
        res = evaluate_navigation(
            pipe,
            an,
            strength=strength,
            sizes=sizes,
            targets=target or None,
            space=space,
            boundary=boundary,
            seed=seed,
            compare=compare,
            log=lambda s: print(s, file=sys.stderr, flush=True),
            geometry=geometry,
            geometry_steps=geometry_steps,
            unsupervised_methods=methods,
        )
        written = save_results(res, out)
        results.append(res)
        sm = res["summary"]
        line = ", ".join(
            f"{k.replace('_', ' ')}: flip {v['flip_rate'] * 100:.0f}% others unchanged "
            f"{v['others_unchanged'] * 100:.0f}%"
            for k, v in sm.items()
            if v["flip_rate"] == v["flip_rate"]
        )
        print(f"{m}: {line} ({res['seconds']:.0f} s) -> {written['markdown']}")
        for meth, v in res.get("unsupervised_by_method", {}).items():
            print(
                f"  best {meth} directions: flip {v['flip_rate'] * 100:.0f}% others unchanged "
                f"{v['others_unchanged'] * 100:.0f}%"
            )
    io.write_text(Path(out) / "results.md", "\n".join(markdown_tables(r) for r in results))
    attrs = [a.strip() for a in figure_attributes.split(",") if a.strip()] if figure_attributes else None
    try:
        strip_figure(
            results,
            Path(out) / "strips.png",
            kinds=("plain", "conditional", "unsupervised"),
            attributes=attrs,
        )
    except LatentcompError:  # none of the figure's attributes was evaluated: draw them all
        strip_figure(results, Path(out) / "strips.png", kinds=("plain", "conditional", "unsupervised"))
    strip_figure(results, Path(out) / "strips-all.png")
    print(f"wrote {Path(out) / 'results.md'}, {Path(out) / 'strips.png'} and {Path(out) / 'strips-all.png'}")


@directions_app.command("geometry")
def geometry(
    out: Path = typer.Option(
        ..., help="Output folder: geometry.json, geometry.md, geometry.png, directions/."
    ),
    generator: str = typer.Option(None, help="Generator spec, e.g. builtin:toyfaces-dcgan."),
    model: str = typer.Option(None, help=MODEL_HELP + " (its generator is used)."),
    walks: list[Path] = typer.Option(
        None,
        help="Direction set(s) with walks to evaluate (.safetensors from compute --method geometric/steer).",
    ),
    method: str = typer.Option(
        "geometric,steer",
        help="Without --walks: compute these walks first (geometric = closed form, steer = optimised linear "
        "walk, steer-mlp = optimised non-linear walk: a network step applied repeatedly).",
    ),
    transform: str = typer.Option(None, help=TRANSFORM_HELP),
    space: str = typer.Option(None, help="z or w (default: w where the generator has it, else z)."),
    n: int = typer.Option(32, help="Fresh samples each walk is measured on."),
    steps: int = typer.Option(200, help="steer: Adam steps per walk."),
    batch: int = typer.Option(8, help="steer: latents per step."),
    reference: bool = typer.Option(True, help="Also read the image transforms themselves (a perfect edit)."),
    analyzer: str = typer.Option("builtin:toyfaces-analyzer", help="Part-map analyzer (toyfaces)."),
    seed: int = typer.Option(0, min=0, max=2**63 - 1, help="Seed."),
    device: str = typer.Option(None, help="Torch device (default: cpu)."),
):
    """Zoom / shift / rotate / brightness walks measured against the toyfaces ground truth: the face's
    centre, size and angle read from the analyzer's part maps, per amount asked; how far each edit can be
    pushed before the face or its attributes are lost; interference on the other attributes."""
    import json
    import sys

    from .. import io
    from ..navigate import load_directions, save_directions
    from ..navigate.edit import strip_grid
    from ..navigate.geometry import (
        closed_form_directions,
        evaluate_geometry,
        geometry_markdown,
        geometry_strips,
        steer_directions,
    )
    from ..navigate.store import _jsonable

    if n < 2:
        raise LatentcompError(f"--n must be at least 2; got {n}")
    G = _generator(generator, model, device)
    an = _load_analyzer(analyzer)
    sets: dict[str, list] = {}
    if walks:
        for w in walks:
            sets[Path(w).stem] = load_directions(w)
    else:
        methods = [m.strip() for m in method.split(",") if m.strip()]
        bad = [m for m in methods if m not in ("geometric", "steer", "steer-mlp")]
        if bad or not methods:
            raise LatentcompError(
                f"unknown --method {', '.join(bad) or '(none)'}; accepted: geometric, steer, steer-mlp"
            )
        log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
        for m in methods:
            if m == "geometric":
                tf = transform
                if tf is None or tf.strip().lower() == "all":
                    tf = "shift_x,shift_y,zoom,rotate"
                else:
                    tf = ",".join(t for t in tf.split(",") if t.strip() != "brightness") or None
                if tf is None:
                    continue
                sets["geometric"] = closed_form_directions(G, tf, space=space, seed=seed, progress=True)
            elif m == "steer-mlp":
                from ..navigate.nonlinear import steer_mlp_walks

                sets["steer-mlp"] = steer_mlp_walks(
                    G, transform, space=space, steps=steps, batch=batch, seed=seed, progress=True, log=log
                )
            else:
                sets["steer"] = steer_directions(
                    G, transform, space=space, steps=steps, batch=batch, seed=seed, progress=True, log=log
                )
        dd = io.ensure_dir(Path(out) / "directions")
        for name, ds in sets.items():
            if name == "steer-mlp":  # networks, not vectors: a direction file would keep only their mean
                continue
            save_directions(ds, dd / name, info={"method": name, "generator": G.spec, "seed": seed})
    all_walks = []
    for name, ds in sets.items():
        for d in ds:
            if d.meta.get("transform"):
                d.name = f"{d.name} ({name})" if len(sets) > 1 else d.name
                all_walks.append(d)
    res = evaluate_geometry(G, an, all_walks, n=n, seed=seed, reference=reference, progress=True)
    out = io.ensure_dir(out)
    io.write_text(out / "geometry.json", json.dumps(_jsonable(res), indent=2) + "\n")
    md = geometry_markdown(res, title=str(model or G.spec))
    io.write_text(out / "geometry.md", md)
    io.save_image(strip_grid(geometry_strips(G, all_walks, n=1, seed=seed)), out / "geometry.png")
    print(md)
    print(f"wrote {out / 'geometry.md'}, {out / 'geometry.json'} and {out / 'geometry.png'}")


def navigate(
    model: str = typer.Option("toyfaces", help=MODEL_HELP),
    image: Path = typer.Option(None, help="Image to edit (or use --part for a collage)."),
    mask: Path = typer.Option(None, help="Known-pixel mask of --image (white = keep)."),
    part: list[str] = typer.Option(
        None, help="IMAGE[:MASK], repeatable: compose a collage first, then move."
    ),
    direction: str = typer.Option(
        ..., help="NAME, SET:NAME or FILE.safetensors:NAME (see directions list); ATTR for ATTR=VALUE."
    ),
    directions: Path = typer.Option(
        None, help="Directions folder to look NAME up in (default: ./directions, then the bundled sets)."
    ),
    strength: float = typer.Option(3.0, help="Strength in std of the latents along the direction."),
    strip: str = typer.Option(
        None, help="Strengths for a strip, e.g. -3,-1.5,0,1.5,3 (OUT is then the strip)."
    ),
    layers: str = typer.Option(None, help="Only move these w+ rows, e.g. 0-3 (w / w+ directions)."),
    refine: int = typer.Option(0, help="Latent refinement steps after the regressor (0 = off)."),
    refine_method: str = typer.Option(
        "adam", help="adam, lbfgs or in-domain (keeps the latent where the regressor lands; for editing)."
    ),
    raw: bool = typer.Option(False, help="Strength in latent units instead of std."),
    amount: float = typer.Option(
        None,
        help="Walks (compute --method geometric / steer): move by this amount of the walk's transform "
        "instead of --strength, e.g. 0.1 = a tenth of the width for shift_x, 0.5 = 2^0.5 larger for zoom.",
    ),
    out: Path = typer.Option(..., help="Output image (.png, .jpg, .webp)."),
    device: str = typer.Option(None, help="Torch device (default: cpu)."),
    overwrite: bool = typer.Option(False, help="Allow --out to be one of the input files."),
):
    """Edit an image (or a collage) along a latent direction: invert with the regressor, move, generate."""
    from .. import io
    from ..navigate import find_direction, parse_strengths, strip_grid
    from ..navigate import navigate as nav_fn
    from ..outputs import check_not_inputs

    if out.suffix.lower() not in io.IMAGE_SUFFIXES:
        raise LatentcompError(f"--out {out} must end in one of {', '.join(io.IMAGE_SUFFIXES)}")
    if (image is None) == (not part):
        raise LatentcompError("give --image IMG (optionally with --mask) or one or more --part IMG[:MASK]")
    if part and mask is not None:
        raise LatentcompError("--mask goes with --image; give each part its mask as --part IMG:MASK")
    specs = [(image, mask)] if image is not None else [_split_part(p) for p in part]
    inputs = [(w, p) for pair in specs for w, p in zip(("image", "mask"), pair, strict=True)]
    check_not_inputs([out], inputs, overwrite)
    pipe = _pipeline(model, device)
    if directions is not None and not directions.is_dir():
        raise LatentcompError(f"--directions {directions} is not a folder")
    d = find_direction(direction, directions or Path("directions"), generator=pipe.generator.spec)
    imgs, masks = [], []
    for i, (ip, mp) in enumerate(specs):
        what = "image" if image is not None else f"part {i + 1} image"
        img = io.load_image(ip, size=pipe.resolution, channels=pipe.channels, what=what)
        m = None
        if mp is not None:
            w, h = io.image_size(ip)
            m = io.load_mask(mp, size=pipe.resolution, image_hw=(h, w), what=f"{what} mask")
        imgs.append(img)
        masks.append(m)
    strengths = parse_strengths(strip) if strip else [strength]
    if amount is not None:
        if strip or raw:
            raise LatentcompError("--amount moves by one amount of the walk; leave out --strip and --raw")
        if not d.meta.get("per_unit"):
            raise LatentcompError(
                f"direction {d.name!r} is not a walk (no transform scale); --amount needs one made by "
                "directions compute --method geometric or steer"
            )
        strengths, raw = [amount * float(d.meta["per_unit"])], True
    res = nav_fn(
        pipe,
        imgs,
        masks,
        d,
        strengths,
        layers=layers,
        refine=refine,
        units="raw" if raw else "std",
        refine_method=refine_method,
    )
    if strip:
        io.save_image(strip_grid(res.images[:1]), out)
        what = f"strip of {len(strengths)} strengths ({', '.join(f'{s:g}' for s in strengths)})"
    else:
        io.save_image(res.images[0, 0], out)
        what = (
            f"{d.meta.get('transform')} amount {amount:g}" if amount is not None else f"strength {strength:g}"
        )
    print(
        f"wrote {out}: {d.name} ({d.method}, {d.space}"
        + (f", layers {layers}" if layers else "")
        + f"), {what}, {res.seconds:.2f} s"
    )


def _split_part(spec: str) -> tuple[Path, Path | None]:
    from ..io import IMAGE_SUFFIXES

    if ":" in spec and not Path(spec).is_file():
        left, right = spec.rsplit(":", 1)
        if left and right and Path(right).suffix.lower() in IMAGE_SUFFIXES:
            return Path(left), Path(right)
    return Path(spec), None


def register(app) -> None:
    app.add_typer(directions_app, name="directions")
    app.command("navigate")(navigate)
