"""`latentcomp serve`: the interactive collage editor in the browser (see latentcomp.web, docs/web.md)."""

from __future__ import annotations

import sys

import typer

from ..errors import LatentcompError

MODEL_HELP = (
    "Model: toyfaces (= builtin:toyfaces), toyfaces-stylegan2, builtin:NAME, a regressor run folder or "
    ".safetensors file; tiny = random untrained 32x32 models for development."
)


def serve(
    model: str = typer.Option("builtin:toyfaces", help=MODEL_HELP),
    generator: str = typer.Option(
        None, help="Generator spec to pair with --model instead of the recorded one (e.g. python:MODULE:FN)."
    ),
    host: str = typer.Option(
        "127.0.0.1", help="Address to bind. 0.0.0.0 exposes the editor to your network."
    ),
    port: int = typer.Option(8000, help="TCP port (0 = any free port)."),
    device: str = typer.Option(None, help="Torch device, e.g. cpu or cuda [default: the model's]."),
    threads: int = typer.Option(0, help="Torch CPU threads for inference (0 = torch's default)."),
    max_body_mb: float = typer.Option(10.0, help="Request body limit in MB (larger requests get 413)."),
    max_pixels: int = typer.Option(
        4096 * 4096, help="Largest accepted image, in pixels (decompression bombs)."
    ),
    max_refine: int = typer.Option(200, help="Most refinement steps a request may ask for."),
    cors_origin: list[str] = typer.Option(
        [], help="Origin allowed to call the API from another page (repeatable). Default: none (same origin)."
    ),
    allow_host: list[str] = typer.Option(
        [],
        help="Extra Host header name to accept (repeatable; '*' = any). Loopback names are always accepted "
        "when bound to loopback; other binds accept any host unless this is given.",
    ),
    log_level: str = typer.Option(
        "warning", help="uvicorn log level: critical, error, warning, info, debug."
    ),
):
    """Serve the collage editor: paste parts of samples and uploads, see the coherent image live."""
    import torch

    from ..web import Limits, create_app, load_pipeline
    from ..web.server import LOOPBACK_NAMES, bind, is_all_interfaces, is_loopback, run, url_for

    if not 0 <= port <= 65535:
        raise LatentcompError(f"--port must be in 0..65535; got {port}")
    if max_body_mb <= 0 or max_pixels <= 0 or max_refine < 0:
        raise LatentcompError("--max-body-mb and --max-pixels must be positive, --max-refine at least 0")
    if threads < 0:
        raise LatentcompError(f"--threads must be at least 0; got {threads}")
    if threads:
        torch.set_num_threads(threads)
    pipe = load_pipeline(model, device=device, generator=generator)
    limits = Limits(
        max_body_bytes=int(max_body_mb * 1024 * 1024), max_pixels=max_pixels, max_refine=max_refine
    )
    if is_loopback(host):
        hosts = [*LOOPBACK_NAMES, *allow_host]
    else:
        hosts = list(allow_host) or None
    if is_all_interfaces(host):
        print(
            f"warning: --host {host} exposes the editor (and its compute) to every machine that can reach "
            "this one; there is no authentication. Use 127.0.0.1 unless you mean it.",
            file=sys.stderr,
        )
    app = create_app(
        pipe, model_name=str(model), limits=limits, cors_origins=cors_origin, allowed_hosts=hosts
    )
    sock = bind(host, port)
    url = url_for(host, sock.getsockname()[1])
    print(f"latentcomp serve: {model} ({pipe.describe()})")
    print(f"open {url} in a browser (Ctrl+C to stop); API schema: {url}api/openapi.json", flush=True)
    run(app, sock, log_level=log_level)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
