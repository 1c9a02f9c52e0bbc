"""`latentcomp data render toyfaces`: write renders, part maps, attributes and a contact sheet."""

from __future__ import annotations

import json
from pathlib import Path

import typer

data_app = typer.Typer(help="Data sets: render the procedural toyfaces domain.", no_args_is_help=True)


@data_app.command("render")
def render(
    dataset: str = typer.Argument(..., help="Data set to render (toyfaces)."),
    out: Path = typer.Option(..., help="Output folder."),
    n: int = typer.Option(64, help="Number of images."),
    resolution: int = typer.Option(64, help="32, 64 or 128."),
    seed: int = typer.Option(0, min=0, max=2**63 - 1, help="Data set seed."),
    start: int = typer.Option(0, help="First index."),
    overwrite: bool = typer.Option(
        False, help="Render into a non-empty --out (files of the same name are replaced)."
    ),
):
    """Render N toyfaces: NNNNNN.png, NNNNNN_parts.png (indexed), attributes.jsonl, contact_sheet.png."""
    import torch
    import torchvision
    from PIL import Image

    from ..data.toyfaces import ATTRIBUTES, PARTS, ToyFaces, part_colours
    from ..errors import LatentcompError
    from ..outputs import check_run_folder

    if dataset != "toyfaces":
        raise LatentcompError(f"unknown data set {dataset!r}; available: toyfaces")
    if n < 1:
        raise LatentcompError(f"--n must be >= 1, got {n}")
    check_run_folder(out, overwrite=overwrite, what="data set folder")
    ds = ToyFaces(resolution, seed=seed)
    out.mkdir(parents=True, exist_ok=True)
    palette = [c for rgb in part_colours() for c in rgb]
    names = list(ATTRIBUTES)
    all_images = []
    with open(out / "attributes.jsonl.tmp", "w") as f:
        for lo in range(start, start + n, 256):
            idx = list(range(lo, min(lo + 256, start + n)))
            images, parts, attrs = ds.render_batch(idx)
            all_images.append(images)
            for i, img, pm, at in zip(idx, images, parts, attrs, strict=True):
                arr = ((img.permute(1, 2, 0) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()
                Image.fromarray(arr).save(out / f"{i:06d}.png")
                pim = Image.fromarray(pm.to(torch.uint8).numpy(), mode="P")
                pim.putpalette(palette)
                pim.save(out / f"{i:06d}_parts.png")
                row = {"index": i, "file": f"{i:06d}.png", "parts_file": f"{i:06d}_parts.png"}
                row.update({name: ATTRIBUTES[name][int(v)] for name, v in zip(names, at, strict=True)})
                f.write(json.dumps(row) + "\n")
    (out / "attributes.jsonl.tmp").replace(out / "attributes.jsonl")
    (out / "parts.json").write_text(json.dumps({"parts": PARTS, "colours": part_colours()}, indent=1))
    sheet = torch.cat(all_images)[:256] * 0.5 + 0.5
    torchvision.utils.save_image(sheet, out / "contact_sheet.png", nrow=16, padding=1)
    typer.echo(f"wrote {n} images, part maps, attributes.jsonl and contact_sheet.png to {out}")


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")
