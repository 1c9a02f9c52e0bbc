"""The `latentcomp` command. Thin: each module in `commands/` parses options and calls the public API."""

from __future__ import annotations

import importlib
import sys

import typer

from .errors import LatentcompError

app = typer.Typer(
    help="latentcomp: compose, complete and edit images with a latent regressor on a frozen GAN.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _root() -> None:
    # a callback keeps `latentcomp sample ...` a sub-command even while only one command is registered
    pass


# each module defines `register(app)`; one concept per module
COMMAND_MODULES = [
    "sample",
    "data",
    "gan",
    "regressor",
    "apps",
    "evaluate",
    "serve",
    "probe",
    "metrics",
    "directions",
    "analyzer",
]

for _name in COMMAND_MODULES:
    importlib.import_module(f"latentcomp.commands.{_name}").register(app)


def main(argv: list[str] | None = None) -> None:
    try:
        app(args=argv, standalone_mode=True)
    except LatentcompError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except OSError as e:  # an unwritable output folder, a full disk, ...: one line that names the path
        where = f"{e.filename}: " if e.filename else ""
        print(f"error: {where}{e.strerror or e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
