"""`latentcomp mask`: write a black/white mask PNG (white = known / the part) from a toyfaces part map and
part names, a rectangle, or a threshold of an image."""

from __future__ import annotations

from pathlib import Path

import typer

from ..errors import LatentcompError


def mask(
    out: Path = typer.Option(..., help="Output mask (.png); white = known pixel (or: the part)."),
    part_map: Path = typer.Option(
        None, help="Part map (indexed PNG, e.g. NNNNNN_parts.png from `latentcomp data render`)."
    ),
    part: list[str] = typer.Option(
        None, help="With --part-map: part name, repeatable or comma-separated (hair, eyes, glasses, ...)."
    ),
    rect: str = typer.Option(None, help="LEFT,TOP,RIGHT,BOTTOM in pixels (right and bottom exclusive)."),
    size: int = typer.Option(64, help="With --rect: the mask's width and height."),
    like: Path = typer.Option(None, help="With --rect: take the size of this image instead of --size."),
    threshold: Path = typer.Option(
        None, help="Image to threshold: white where it is at least --level bright (paint what to keep)."
    ),
    level: float = typer.Option(0.5, help="With --threshold: brightness level in [0, 1]."),
    invert: bool = typer.Option(False, "--invert", help="Swap white and black (keep everything else)."),
):
    """Make a mask: from a toyfaces part map and part names, a rectangle, or a threshold of an image."""
    from .. import io, masks
    from ..data.toyfaces import PARTS

    given = [o for o, v in (("--part-map", part_map), ("--rect", rect), ("--threshold", threshold)) if v]
    if len(given) != 1:
        raise LatentcompError(
            "give exactly one of --part-map MAP --part NAME, --rect LEFT,TOP,RIGHT,BOTTOM or "
            "--threshold IMAGE"
            + (f" (got {', '.join(given)})" if given else "")
        )
    if part and part_map is None:
        raise LatentcompError("--part goes with --part-map (a part map says where each part is)")
    if part_map is not None:
        names = [p.strip() for spec in part or [] for p in spec.split(",") if p.strip()]
        if not names:
            raise LatentcompError(f"--part-map needs one or more --part NAME; accepted: {', '.join(PARTS)}")
        m = masks.parts_mask(io.load_part_map(part_map, len(PARTS)), names, PARTS)
        what = f"part(s) {', '.join(names)} of {part_map}"
    elif rect is not None:
        try:
            box = tuple(int(v) for v in rect.split(","))
        except ValueError:
            box = ()
        if len(box) != 4:
            raise LatentcompError(
                f"--rect {rect!r} must be four integers LEFT,TOP,RIGHT,BOTTOM, e.g. 16,8,48,40"
            )
        hw = (size, size)
        if like is not None:
            w, h = io.image_size(like)
            hw = (h, w)
        elif size < 1:
            raise LatentcompError(f"--size must be at least 1; got {size}")
        m = masks.box_mask(hw, box)
        what = f"rectangle {rect}"
    else:
        img = io.load_image(threshold, size=None, what="--threshold image")
        m = masks.threshold_mask(img, level)
        what = f"{threshold} at level {level:g}"
    if invert:
        m = 1 - m
    if m.sum() == 0:
        inverted = " after --invert" if invert else ""
        raise LatentcompError(f"the mask from {what} has no white pixel{inverted}")
    path = io.save_mask(m, out)
    h, w = m.shape[-2:]
    inverted = " inverted" if invert else ""
    print(f"wrote {path}: {w}x{h}, {float(m.mean()) * 100:.0f}% white, from {what}{inverted}")


def register(app) -> None:
    app.command("mask")(mask)
