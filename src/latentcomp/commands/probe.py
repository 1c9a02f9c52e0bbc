"""`latentcomp probe NAME --model M [--model M2] --out DIR`: the paper's experiments as commands.

NAME: tradeoff, independence, parts, rebalance, report (all of them + one HTML page). Each writes JSON
and PNG plots into DIR. --quick runs tiny sizes (a smoke test, about a minute); the default sizes of
`report` fit about 20 minutes for two toyfaces models on 2 CPU cores.
"""

from __future__ import annotations

from pathlib import Path

import typer

from ..errors import LatentcompError

probe_app = typer.Typer(
    help="Probe compositionality: trade-off, independence, parts, rebalancing, report.", no_args_is_help=True
)

MODEL_HELP = (
    "Pipeline: toyfaces, toyfaces-stylegan2, toyfaces-gansformer (or builtin:toyfaces...), a regressor run "
    "or file; a plain generator spec gets an untrained regressor (smoke tests). Repeat for several."
)


def _setup(models, analyzer, device, quick, n, which):
    from ..probe.common import Sizes, load_domain_analyzer, load_pipeline, log

    if not models:
        raise LatentcompError("give at least one --model")
    if n is not None and n < 2:
        raise LatentcompError(f"--n must be at least 2; got {n}")
    pipes = [load_pipeline(m, device=device) for m in models]
    an, why = load_domain_analyzer(analyzer, device)
    if an is None and analyzer not in (None, "", "none"):
        log(f"notice: no toyfaces analyzer ({why}); toyfaces-specific measures are skipped")
    sizes = Sizes.quick() if quick else Sizes.default()
    if n is not None:
        for field in which:
            setattr(sizes, field, n)
    return pipes, an, sizes


def _out(out: Path) -> Path:
    from .. import io

    return io.ensure_dir(out)


_models = typer.Option(..., "--model", "-m", help=MODEL_HELP)
_out_opt = typer.Option(..., "--out", help="Output folder.")
_seed = typer.Option(0, min=0, max=2**63 - 1, help="Seed of every random choice.")
_quick = typer.Option(False, "--quick", help="Tiny sizes: a smoke test (numbers mean little).")
_analyzer = typer.Option("builtin:toyfaces-analyzer", help="Toyfaces analyzer spec or path, or 'none'.")
_device = typer.Option(None, help="Torch device [default: cpu].")


@probe_app.command("tradeoff")
def tradeoff_cmd(
    model: list[str] = _models,
    out: Path = _out_opt,
    n: int = typer.Option(None, help="Collages per generator [default: 200, quick 8]."),
    seed: int = _seed,
    quick: bool = _quick,
    methods: str = typer.Option(
        "regressor,regressor+refine,optimisation,poisson,raw", help="Comma-separated."
    ),
    collage_source: str = typer.Option("auto", help="auto, renders, samples or kmeans (any generator)."),
    features: str = typer.Option(
        "analyzer", help="Realism features: analyzer, inception[:PATH], pixels, MODULE:FN."
    ),
    refine_steps: int = typer.Option(None, help="Refinement steps [default: 30]."),
    opt_steps: int = typer.Option(None, help="Optimisation-only steps [default: 100]."),
    analyzer: str = _analyzer,
    device: str = _device,
):
    """Masked L1 to the collage vs realism (FID, density, coverage) per generator and method."""
    from ..probe.tradeoff import run_tradeoff

    pipes, an, sizes = _setup(model, analyzer, device, quick, n, ["tradeoff_n"])
    if refine_steps is not None:
        sizes.refine_steps = refine_steps
    if opt_steps is not None:
        sizes.opt_steps = opt_steps
    ms = [m.strip() for m in methods.split(",") if m.strip()]
    res = run_tradeoff(
        pipes,
        _out(out),
        an,
        sizes,
        seed,
        methods=ms,
        collage_source=collage_source,
        features=features,
        device=device,
    )
    for e in res["models"]:
        print(f"{e['model']}:")
        for m, v in e["methods"].items():
            print(
                f"  {m:18s} known L1 {v['known_l1']:.4f}  FID {v['fid']:.3f}  "
                f"density {v.get('density', 0):.3f}"
                f"  coverage {v.get('coverage', 0):.3f}"
            )
    print(f"wrote {Path(out) / 'tradeoff.json'}, {Path(out) / 'tradeoff.png'}")


@probe_app.command("independence")
def independence_cmd(
    model: list[str] = _models,
    out: Path = _out_opt,
    n: int = typer.Option(None, help="Image pairs per part [default: 40, quick 4]."),
    seed: int = _seed,
    quick: bool = _quick,
    parts: str = typer.Option(None, help="Comma-separated part names [default: all but background]."),
    analyzer: str = _analyzer,
    device: str = _device,
):
    """Change one part: outside change vs inside follow, regression vs latent interpolation, per part."""
    from ..probe.independence import run_independence

    pipes, an, sizes = _setup(model, analyzer, device, quick, n, ["independence_pairs"])
    want = [p.strip() for p in parts.split(",")] if parts else None
    res = run_independence(pipes, _out(out), an, sizes, seed, parts=want)
    for e in res["models"]:
        print(
            f"{e['model']}: median locality gain {e['median_locality_gain']:.3f} "
            f"({e['parts_more_local_with_regression']}/{e['parts_measured']} parts more local with "
            "regression)"
        )
    print(f"wrote {Path(out) / 'independence.json'}")


@probe_app.command("parts")
def parts_cmd(
    model: list[str] = _models,
    out: Path = _out_opt,
    n: int = typer.Option(None, help="Samples to cluster [default: 200, quick 12]."),
    seed: int = _seed,
    quick: bool = _quick,
    k: int = typer.Option(None, help="Clusters [default: number of toyfaces parts, or 8]."),
    layer: list[str] = typer.Option(
        None,
        help="Feature layer(s) [default: the one nearest a quarter of the "
        "image size]; repeat to concatenate.",
    ),
    analyzer: str = _analyzer,
    device: str = _device,
):
    """Unsupervised part maps from k-means on generator features; mIoU vs analyzer part maps on toyfaces."""
    from ..probe.parts import run_parts

    pipes, an, sizes = _setup(model, analyzer, device, quick, n, ["parts_fit"])
    res = run_parts(pipes, _out(out), an, sizes, seed, k=k, layers=list(layer) if layer else None)
    for e in res["models"]:
        miou = e.get("miou_hungarian")
        print(
            f"{e['model']}: layers {', '.join(e['layers'])}, k {e['k']}"
            + (
                f", mIoU {miou:.3f} (Hungarian), {e['miou_many_to_one']:.3f} (many-to-one)"
                if miou is not None
                else ""
            )
        )
    print(f"wrote {Path(out) / 'parts.json'}")


@probe_app.command("rebalance")
def rebalance_cmd(
    model: list[str] = _models,
    out: Path = _out_opt,
    n: int = typer.Option(None, help="Generated images in the set [default: 400, quick 24]."),
    seed: int = _seed,
    quick: bool = _quick,
    attribute: str = typer.Option("glasses", help="Toyfaces attribute to rebalance."),
    rare: str = typer.Option(
        None,
        help="Comma-separated rare values [default: those the generator makes less often than the data].",
    ),
    target: float = typer.Option(
        None, help="Target share of the rare values [default: their share in the data]."
    ),
    analyzer: str = _analyzer,
    device: str = _device,
):
    """Raise a rare attribute's share by pasting its part from examples and regressing; share and FID cost."""
    from ..probe.rebalance import run_rebalance

    pipes, an, sizes = _setup(model, analyzer, device, quick, n, ["rebalance_n"])
    if an is None:
        raise LatentcompError("rebalance reads attributes with the toyfaces analyzer; give --analyzer SPEC")
    rare_list = [v.strip() for v in rare.split(",")] if rare else None
    res = run_rebalance(
        pipes, _out(out), an, sizes, seed, attribute=attribute, rare=rare_list, target_share=target
    )
    for e in res["models"]:
        if "regression" in e:
            print(
                f"{e['model']}: share {e['share_before']:.3f} -> {e['regression']['share_after']:.3f}; FID "
                f"{e['realism_before']['fid']:.3f} -> {e['regression']['realism']['fid']:.3f}"
            )
        else:
            print(f"{e['model']}: {e.get('skipped') or e.get('note')}")
    print(f"wrote {Path(out) / 'rebalance.json'}")


@probe_app.command("omissions")
def omissions_cmd(
    model: list[str] = _models,
    out: Path = _out_opt,
    n: int = typer.Option(32, help="toyfaces renders per model."),
    layer: str = typer.Option(
        "auto",
        help="Layer to invert into (a spatial feature layer of the generator; auto = the first at least 1/8 "
        "of the image size, e.g. layer2 of the DCGAN, convs.0 of StyleGAN2, b8.conv0 of GANsformer).",
    ),
    steps: int = typer.Option(100, help="Adam steps of both the layer-wise and the latent reconstruction."),
    batch: int = typer.Option(16, help="Renders per optimisation batch."),
    seed: int = _seed,
    analyzer: str = _analyzer,
    device: str = _device,
):
    """What each GAN cannot draw (Bau et al.): per toyfaces part, how much better a layer-wise inversion
    (optimise an intermediate layer's activation) draws it than a latent inversion of the same budget."""
    import json

    from .. import io
    from ..navigate.store import _jsonable
    from ..probe.common import log
    from ..probe.omissions import figure, markdown, omissions, summary_rows

    pipes, an, _ = _setup(model, analyzer, device, False, None, [])
    if an is None:
        raise LatentcompError("probe omissions needs the toyfaces analyzer (--analyzer) to read part maps")
    if n < 1:
        raise LatentcompError(f"--n must be at least 1; got {n}")
    if steps < 0:
        raise LatentcompError(f"--steps must be >= 0; got {steps}")
    out = _out(out)
    results = []
    for pipe in pipes:
        lay = None if layer == "auto" else layer
        results.append(omissions(pipe, an, n=n, layer=lay, steps=steps, seed=seed, batch=batch, log=log))
    md = "\n".join(markdown(r) for r in results)
    md += "\n| model | layer | parts omitted most (recall gap) |\n|---|---|---|\n"
    md += "\n".join(summary_rows(results)) + "\n"
    io.write_text(out / "omissions.md", md)
    clean = [{k: v for k, v in r.items() if not k.startswith("_")} for r in results]
    io.write_text(out / "omissions.json", json.dumps(_jsonable(clean), indent=2) + "\n")
    figure(results, out / "omissions.png")
    print(md)
    print(f"wrote {out / 'omissions.md'}, {out / 'omissions.json'} and {out / 'omissions.png'}")


@probe_app.command("report")
def report_cmd(
    model: list[str] = _models,
    out: Path = _out_opt,
    seed: int = _seed,
    quick: bool = _quick,
    features: str = typer.Option(
        "analyzer", help="Realism features of the trade-off (see `probe tradeoff`)."
    ),
    skip: str = typer.Option("", help="Comma-separated experiments to leave out."),
    analyzer: str = _analyzer,
    device: str = _device,
):
    """Run every experiment and write one self-contained HTML page (report.html) with plots and grids."""
    from ..probe.report import EXPERIMENTS, run_report

    pipes, an, sizes = _setup(model, analyzer, device, quick, None, [])
    skipped = {s.strip() for s in skip.split(",") if s.strip()}
    bad = skipped - set(EXPERIMENTS)
    if bad:
        raise LatentcompError(
            f"unknown experiment(s) in --skip: {', '.join(sorted(bad))}; accepted: {', '.join(EXPERIMENTS)}"
        )
    exps = [e for e in EXPERIMENTS if e not in skipped]
    if an is None and "rebalance" in exps:
        exps.remove("rebalance")
    if an is None and features == "analyzer":
        from ..probe.common import log

        features = "pixels:16"
        log(
            "notice: no analyzer, so the trade-off's realism uses --features pixels:16 (give --features "
            "inception or MODULE:FN for a better feature space)"
        )
    res = run_report(
        pipes,
        out,
        an,
        analyzer if an is not None else "none",
        sizes,
        seed,
        quick,
        exps,
        features=features,
        device=device,
    )
    for row in res["headline"]:
        print(row["model"])
        for k, v in row.items():
            if k != "model":
                print(f"  {k}: {v:.4g}" if isinstance(v, float) else f"  {k}: {v}")
    print(f"wrote {Path(out) / 'report.html'} ({res['meta']['seconds']:.0f} s)")


def register(app) -> None:
    app.add_typer(probe_app, name="probe")
