"""Where outputs may go: never over the results of an earlier run, never onto the command's own inputs,
unless the user says so (`--overwrite`, `overwrite=True`).

- A run folder (regressor / GAN / analyzer training, a rendered data set) must be empty or absent; one
  holding anything is refused, unless the run resumes from the state file it holds (`--resume`) or
  `overwrite` is given. Training would otherwise replace trained weights file by file.
- An output file must not be one of the input files (resolved paths, symlinks and hard links
  included): `inpaint --image a.png --out a.png` would replace the photo with its completion.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from .errors import LatentcompError


def folder_entries(folder: str | Path) -> list[str]:
    """Names in `folder`, sorted; [] where it is absent (or not a folder: writing will say why)."""
    d = Path(folder).expanduser()
    if not d.is_dir():
        return []
    return sorted(p.name for p in d.iterdir())


def check_run_folder(
    folder: str | Path,
    *,
    state_file: str | None = None,
    resume: bool = False,
    overwrite: bool = False,
    what: str = "run folder",
) -> None:
    """Refuse to start a run in a folder that holds anything, unless it resumes or may overwrite.

    `state_file` is the file a resumable run leaves (e.g. state.pt); with `resume` and that file present
    the run continues and nothing is refused."""
    d = Path(folder).expanduser()
    names = folder_entries(d)
    if not names or overwrite or (resume and state_file and (d / state_file).is_file()):
        return
    shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
    if resume:
        raise LatentcompError(
            f"--resume: {what} {d} has no {state_file} to resume from, but holds {shown}; refusing to "
            "start a new run over it: choose another --out, or pass --overwrite to replace its files"
        )
    hint = "pass --resume to continue it, " if state_file in names else ""
    raise LatentcompError(
        f"{what} {d} is not empty (it holds {shown}); refusing to overwrite earlier results: {hint}"
        "choose another --out, or pass --overwrite to replace its files"
    )


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether two paths name the same file: equal once resolved, or the same inode (a hard link)."""
    pa, pb = Path(a).expanduser(), Path(b).expanduser()
    if pa.resolve() == pb.resolve():
        return True
    try:
        return os.path.samefile(pa, pb)
    except OSError:  # either does not exist
        return False


def check_not_inputs(
    outputs: Iterable[str | Path],
    inputs: Iterable[tuple[str, str | Path | None]],
    overwrite: bool = False,
    option: str = "--out",
) -> None:
    """Refuse an output path that is one of the inputs (`inputs`: (what, path) pairs), unless `overwrite`.

    Folders count too: an output folder that is an input folder would receive files over its inputs.
    `option` names the output in the error (the option or argument the user gave it with)."""
    if overwrite:
        return
    inputs = [(what, Path(p)) for what, p in inputs if p is not None]
    for out in outputs:
        for what, p in inputs:
            if same_file(out, p):
                raise LatentcompError(
                    f"{option} {out} is the {what} {p}; writing there would replace an input with the "
                    f"result: choose another {option}, or pass --overwrite"
                )
