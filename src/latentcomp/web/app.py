"""The FastAPI app behind `latentcomp serve`: a JSON API over one `Pipeline` plus the static editor page.

    app = create_app(Pipeline.from_pretrained("toyfaces"))
    uvicorn.run(app, host="127.0.0.1", port=8000)

Endpoints (OpenAPI schema at /api/openapi.json; images are base64 PNG text, inputs may also be JPEG/WEBP
and may carry a `data:` URL prefix):

    GET  /api/health     liveness, queue length, batching counters
    GET  /api/model      name, resolution, channels, latent space, limits
    GET  /api/samples    ?seed=S&n=N -> N generator samples, sample i drawn with seed S+i
    POST /api/upload     {image} -> the image centre-cropped and resized to the model's resolution
    POST /api/compose    {collage, mask?, refine, paste} -> G(E(collage, mask)) (+ optional refinement)
    POST /api/complete   {collage, mask?, n, seed, refine} -> n completions of the unknown region

The model is fixed when the app is created: no request can name a model, a path or a pickle. Inference
runs on one worker thread (see worker.py), never on the event loop; compose requests waiting together
are batched into one forward pass. Bodies over `max_body_bytes` get 413 (Content-Length and the
streamed size are both checked), images over `max_pixels` get 413 before they are decoded, and every
error is `{"error": message}` with a 4xx/5xx status, never a stack trace.
"""

from __future__ import annotations

import asyncio
import json
import logging
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from fastapi import FastAPI, Query
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import LatentcompError
from ..io import DEFAULT_MAX_PIXELS
from .images import ApiError, encode_png, load_exact, load_mask, load_upload
from .worker import Busy, InferenceWorker

log = logging.getLogger("latentcomp.web")

STATIC_DIR = Path(__file__).resolve().parent / "static"
DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024
MAX_SEED = 2**63 - 1  # the CLI's --seed limit too: a seed means the same image in both
INLINE_DECODE_CHARS = 64 * 1024  # base64 inputs up to this size are decoded on the event loop

CSP = (
    "default-src 'self'; img-src 'self' data: blob:; script-src 'self'; style-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'none'"
)
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"content-security-policy", CSP.encode()),
]


@dataclass
class Limits:
    """Server-side limits; every one is enforced per request."""

    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES  # request body (413 above)
    max_pixels: int = DEFAULT_MAX_PIXELS  # decoded image size (413 above, checked before decoding)
    max_refine: int = 200  # refinement steps per compose / complete request
    max_complete: int = 8  # completions per complete request
    max_samples: int = 16  # samples per samples request
    max_batch: int = 16  # compose requests merged into one forward pass
    max_queue: int = 64  # waiting inference jobs (503 above)


# ---------------------------------------------------------------------------------------------- schemas
class ErrorResponse(BaseModel):
    error: str = Field(description="What was wrong with the request, in one line.")


class HealthResponse(BaseModel):
    status: str
    model: str
    queued: int = Field(description="Inference jobs waiting.")
    jobs: int = Field(description="Inference jobs done since start.")
    batches: int = Field(description="Forward passes those jobs took (jobs / batches = mean batch size).")
    largest_batch: int


class ModelInfo(BaseModel):
    name: str
    resolution: int = Field(description="Width = height of every image the model reads and writes.")
    channels: int
    space: str = Field(description="Latent space the regressor predicts.")
    latent_spaces: list[str]
    generator: str
    refine_default: int
    limits: dict[str, int]
    iterative: bool = Field(False, description="The regressor is iterative: `iterations` sets its passes.")
    iterations_default: int = Field(1, description="Passes the regressor makes when a request names none.")


class Sample(BaseModel):
    seed: int
    image: str = Field(description="base64 PNG")


class SamplesResponse(BaseModel):
    samples: list[Sample]


class UploadRequest(BaseModel):
    image: str = Field(description="base64 PNG, JPEG or WEBP (a data: URL prefix is accepted)")


class UploadResponse(BaseModel):
    image: str = Field(description="base64 PNG at the model's resolution (centre-cropped square, resized)")
    width: int = Field(description="Original width.")
    height: int = Field(description="Original height.")
    resized: bool


class ComposeRequest(BaseModel):
    collage: str = Field(
        description="base64 PNG of the collage at the model's resolution; unknown pixels any colour"
    )
    mask: str | None = Field(
        None,
        description="base64 PNG, same size, white = known pixel. Without it, the collage's alpha is the mask "
        "(fully known when it has none).",
    )
    refine: int = Field(0, ge=0, description="Latent refinement steps after the regressor (0 = off).")
    paste: bool = Field(False, description="Paste the known pixels back onto the output.")
    iterations: int | None = Field(
        None, ge=1, le=10, description="Passes of an iterative regressor (default: its own); plain ones: 1."
    )


class ComposeResponse(BaseModel):
    image: str = Field(description="base64 PNG output")
    known_fraction: float
    known_error: float = Field(description="Mean L1 between output and collage on the known pixels.")
    refine: int
    seconds: float = Field(description="Inference time of the batch this request ran in.")
    batch: int = Field(description="Requests served by the same forward pass.")


class CompleteRequest(BaseModel):
    collage: str = Field(description="base64 PNG at the model's resolution")
    mask: str | None = Field(None, description="base64 PNG, white = known; default: the collage's alpha")
    n: int = Field(4, ge=1, description="Number of completions.")
    seed: int = Field(0, ge=0, le=MAX_SEED)
    refine: int = Field(0, ge=0)
    iterations: int | None = Field(None, ge=1, le=10, description="Passes of an iterative regressor.")


class CompleteResponse(BaseModel):
    images: list[str] = Field(description="base64 PNGs; the first is the regressor's own answer")
    known_error: list[float]
    diversity: float | None = Field(description="Mean pairwise L1 inside the unknown region.")
    method: str
    seconds: float


ERRORS: dict[int | str, dict[str, Any]] = {c: {"model": ErrorResponse} for c in (400, 413, 422, 500, 503)}


# ---------------------------------------------------------------------------------------------- models
def tiny_pipeline(seed: int = 0, device: str | None = None):
    """Random, untrained models for development and tests (3x32x32): `builtin:tiny-random-stylegan2` and a
    random small regressor in z whose output is rescaled to the prior's scale (mean 0, std 1 over a few
    samples), so that different collages give visibly different outputs. Not meant for results."""
    from ..edit.pipeline import Pipeline
    from ..generators import load_generator
    from ..regressors import build_regressor

    with torch.random.fork_rng(devices=[]), torch.no_grad():
        G = load_generator("builtin:tiny-random-stylegan2", seed=seed)
        torch.manual_seed(seed)
        E = build_regressor(G, space="z", backbone="small")
        x = G(G.sample_latent(64, generator=torch.Generator().manual_seed(seed + 1)), space="z")
        z = E(x)
        mean, std = z.mean(0), z.std(0).mean()
        E.head.weight.div_(std)
        E.head.bias.sub_(mean).div_(std)
    return Pipeline(G, E, device=device, source="tiny", untrained=True)


def load_pipeline(spec: str = "toyfaces", device: str | None = None, generator: str | None = None):
    """A model for `latentcomp serve`: tiny (random models, for development) or anything
    `latentcomp.pretrained.load_pipeline` accepts (a bundled name, builtin:NAME, a regressor run folder or
    .safetensors file). `generator` overrides the generator spec the model records."""
    from ..pretrained import load_pipeline as load

    if str(spec).strip() in ("tiny", "builtin:tiny"):
        return tiny_pipeline(device=device)
    return load(spec, device=device, generator=generator)


# ---------------------------------------------------------------------------------------------- inference
@dataclass
class _ComposeJob:
    collage: torch.Tensor  # (1, C, H, W)
    mask: torch.Tensor  # (1, 1, H, W)
    refine: int
    paste: bool
    iterations: int | None = None


def _handlers(pipe) -> dict[str, Any]:
    def iters(n):  # only passed when asked for, so pipelines without the option keep working
        return {} if n is None else {"iterations": n}

    def compose(jobs: list[_ComposeJob]):
        if len(jobs) == 1:
            j = jobs[0]
            res = pipe.compose([j.collage], [j.mask], refine=j.refine, paste=j.paste, **iters(j.iterations))
        else:  # same batch key: refine 0, same paste flag, same iterations
            x = torch.cat([j.collage for j in jobs])
            m = torch.cat([j.mask for j in jobs])
            res = pipe.compose([x], [m], paste=jobs[0].paste, **iters(jobs[0].iterations))
        return [(res.image[i], float(res.known_error[i]), res.seconds) for i in range(len(jobs))]

    def complete(jobs: list[dict]):
        out = []
        for j in jobs:
            r = pipe.inpaint(j["collage"], j["mask"], n=j["n"], seed=j["seed"], refine=j["refine"],
                             **iters(j.get("iterations")))  # fmt: skip
            div = float(r.diversity[0])
            out.append((r.images[0], [float(e) for e in r.known_error[0]], None if div != div else div,
                        r.method, r.seconds))  # fmt: skip
        return out

    def samples(jobs: list[list[int]]):
        return [[pipe.sample(1, seed=s)[0].cpu() for s in seeds] for seeds in jobs]

    return {"compose": compose, "complete": complete, "samples": samples}


# ---------------------------------------------------------------------------------------------- middleware
class GuardMiddleware:
    """Outermost layer (pure ASGI): Host check, request body limit, security headers, and a last-resort
    handler that turns any unhandled exception into a JSON 500 without details (logged server-side)."""

    def __init__(self, app, max_body_bytes: int, allowed_hosts: list[str] | None = None):
        self.app = app
        self.max_body = int(max_body_bytes)
        self.allowed_hosts = (
            None if not allowed_hosts or "*" in allowed_hosts else {h.lower() for h in allowed_hosts}
        )

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_wrapper(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                headers += [(k, v) for k, v in SECURITY_HEADERS if k not in names]
                if scope.get("path", "").startswith("/api/"):
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if self.allowed_hosts is not None:
            host = headers.get("host", "").rsplit("]", 1)
            hostname = (host[0] + "]") if len(host) == 2 else host[0].split(":", 1)[0]
            if hostname.lower() not in self.allowed_hosts:
                await _send_error(
                    send_wrapper, 400, f"Host {hostname!r} is not served here (pass --allow-host)"
                )
                return
        cl = headers.get("content-length")
        if cl is not None:
            if not cl.strip().isdigit():
                await _send_error(send_wrapper, 400, "invalid Content-Length header")
                return
            if int(cl) > self.max_body:
                await _send_error(send_wrapper, 413, self._too_large(int(cl)))
                return
        # read the whole body first (bounded), then replay it: the app never sees more than max_body bytes
        body = b""
        if scope.get("method", "GET") not in ("GET", "HEAD", "OPTIONS") or cl is not None:
            chunks, total = [], 0
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                chunk = message.get("body", b"")
                total += len(chunk)
                if total > self.max_body:
                    await _send_error(send_wrapper, 413, self._too_large(None))
                    return
                chunks.append(chunk)
                if not message.get("more_body", False):
                    break
            body = b"".join(chunks)
        replayed = False

        async def receive_replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        try:
            await self.app(scope, receive_replay, send_wrapper)
        except Exception:  # noqa: BLE001 - last resort: log the traceback here, tell the client nothing more
            log.exception("unhandled error in %s %s", scope.get("method"), scope.get("path"))
            if not started:
                await _send_error(send_wrapper, 500, "internal server error")

    def _too_large(self, n: int | None) -> str:
        got = f" ({n} bytes)" if n is not None else ""
        return f"request body too large{got}; the limit is {self.max_body} bytes"


async def _send_error(send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    await send({
        "type": "http.response.start", "status": status,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
    })  # fmt: skip
    await send({"type": "http.response.body", "body": body})


def _validation_error(exc: RequestValidationError) -> tuple[int, str]:
    errors = list(exc.errors())
    for e in errors:
        if e.get("type") == "json_invalid":
            detail = (e.get("ctx") or {}).get("error", "")
            return 400, f"request body is not valid JSON{': ' + str(detail) if detail else ''}"
    parts = []
    for e in errors[:5]:
        loc = [str(x) for x in e.get("loc", ()) if x not in ("body", "query", "path")]
        parts.append(f"{'.'.join(loc) or 'request body'}: {e.get('msg', 'invalid')}")
    more = f" (+{len(errors) - 5} more)" if len(errors) > 5 else ""
    return 422, "; ".join(parts) + more


# ---------------------------------------------------------------------------------------------- app
def create_app(
    pipeline,
    *,
    model_name: str | None = None,
    limits: Limits | None = None,
    cors_origins: list[str] | tuple[str, ...] = (),
    allowed_hosts: list[str] | None = None,
    refine_default: int = 20,
) -> FastAPI:
    """The web app for one pipeline (`Pipeline` or anything with its compose / inpaint / sample API).

    cors_origins: origins allowed to call the API from other pages (none by default: same origin only).
    allowed_hosts: accepted Host header names (None = any); `latentcomp serve` passes the loopback names
    when it binds to loopback, which blocks DNS-rebinding pages from reaching the API.
    """
    limits = limits or Limits()
    pipe = pipeline
    name = str(model_name or getattr(pipe, "source", "") or type(pipe).__name__)
    if "/" in name or "\\" in name:  # a run folder or file: show its name, not the server's directory layout
        name = Path(name.rstrip("/\\")).name or name
    res, ch = int(pipe.resolution), int(pipe.channels)
    worker = InferenceWorker(_handlers(pipe), max_batch=limits.max_batch, max_queue=limits.max_queue)

    @asynccontextmanager
    async def lifespan(app):
        yield
        worker.close()

    app = FastAPI(
        title="latentcomp serve",
        version="1",
        summary="Compose and complete images with a latent regressor on a frozen GAN.",
        openapi_url="/api/openapi.json",
        docs_url=None,  # the Swagger / ReDoc pages load scripts from a CDN; the schema alone works offline
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.pipeline = pipe
    app.state.worker = worker
    app.state.limits = limits

    # -------------------------------------------------------------- errors: always {"error": message}
    @app.exception_handler(ApiError)
    async def _api_error(request, exc: ApiError):
        return JSONResponse({"error": exc.message}, status_code=exc.status)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request, exc: StarletteHTTPException):
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request, exc: RequestValidationError):
        status, msg = _validation_error(exc)
        return JSONResponse({"error": msg}, status_code=status)

    @app.exception_handler(LatentcompError)
    async def _latentcomp_error(request, exc: LatentcompError):
        return JSONResponse({"error": str(exc)}, status_code=422)

    async def infer(kind: str, payload, key=None):
        try:
            fut = worker.submit(kind, payload, key)
        except Busy:
            raise ApiError(503, "the server is busy (too many requests waiting); try again shortly") from None
        try:
            return await asyncio.wrap_future(fut)
        except LatentcompError as e:
            raise ApiError(422, str(e)) from None

    def decode_pair(collage: str, mask: str | None):
        x, alpha = load_exact(collage, "collage", res, ch, limits.max_pixels)
        if mask is not None:
            m = load_mask(mask, "mask", res, limits.max_pixels)
        elif alpha is not None:
            m = (alpha >= 0.5).float()
        else:
            m = torch.ones(1, 1, res, res)
        if float(m.sum()) == 0:
            raise ApiError(422, "mask has no known pixels: paste part of a source first (white = known)")
        return x * m, m

    async def decode(collage: str, mask: str | None):
        # small images (the page sends model-sized PNGs) decode in well under a millisecond: do it on the
        # event loop and save two thread hops; anything larger goes to the thread pool
        if len(collage) + len(mask or "") <= INLINE_DECODE_CHARS:
            return decode_pair(collage, mask)
        return await run_in_threadpool(decode_pair, collage, mask)

    def check_refine(refine: int) -> None:
        if refine > limits.max_refine:
            raise ApiError(422, f"refine: at most {limits.max_refine} steps; got {refine}")

    # -------------------------------------------------------------- API
    @app.get("/api/health", response_model=HealthResponse, tags=["info"])
    async def health():
        s = worker.stats
        return HealthResponse(status="ok", model=name, queued=worker.queued(), jobs=s.jobs, batches=s.batches,
                              largest_batch=s.largest_batch)  # fmt: skip

    @app.get("/api/model", response_model=ModelInfo, tags=["info"])
    async def model_info():
        G = getattr(pipe, "generator", None)
        describe = getattr(G, "describe", None)
        return ModelInfo(
            name=name, resolution=res, channels=ch, space=str(getattr(pipe, "space", "z")),
            latent_spaces=[str(s) for s in getattr(G, "latent_spaces", ("z",))],
            generator=str(describe()) if callable(describe) else type(G).__name__,
            refine_default=min(refine_default, limits.max_refine), limits=asdict(limits),
            iterative=bool(getattr(pipe, "iterative", False)),
            iterations_default=int(getattr(pipe, "iterations", None)
                                   or getattr(getattr(pipe, "regressor", None), "iterations", 1) or 1),
        )  # fmt: skip

    @app.get("/api/samples", response_model=SamplesResponse, responses=ERRORS, tags=["images"])
    async def samples(
        seed: int = Query(
            0, ge=0, le=MAX_SEED, description="Seed of the first sample; sample i uses seed + i."
        ),
        n: int = Query(4, ge=1, description="Number of samples."),
    ):
        """Generator samples by seed (each as `latentcomp sample --n 1 --seed S` draws it)."""
        if n > limits.max_samples:
            raise ApiError(422, f"n: at most {limits.max_samples} samples per request; got {n}")
        seeds = [s for s in range(seed, seed + n) if s <= MAX_SEED]
        imgs, _ = await infer("samples", seeds)
        pngs = await run_in_threadpool(lambda: [encode_png(x) for x in imgs])
        return SamplesResponse(samples=[Sample(seed=s, image=p) for s, p in zip(seeds, pngs, strict=True)])

    @app.post("/api/upload", response_model=UploadResponse, responses=ERRORS, tags=["images"])
    async def upload(req: UploadRequest):
        """Validate an image and resize it to the model's resolution (centre crop). Nothing is stored: the
        page keeps the returned PNG as a source."""

        def work():
            img, (w, h) = load_upload(req.image, res, ch, limits.max_pixels)
            return UploadResponse(image=encode_png(img), width=w, height=h, resized=(w, h) != (res, res))

        return await run_in_threadpool(work)

    @app.post("/api/compose", response_model=ComposeResponse, responses=ERRORS, tags=["inference"])
    async def compose(req: ComposeRequest):
        """Collage + mask -> one coherent image, G(E(collage, mask)) (+ `refine` optimisation steps)."""
        check_refine(req.refine)
        x, m = await decode(req.collage, req.mask)
        job = _ComposeJob(x, m, req.refine, req.paste, req.iterations)
        key = None if req.refine else ("paste", req.paste, req.iterations)
        (img, err, secs), batch = await infer("compose", job, key)
        png = encode_png(img) if res <= 256 else await run_in_threadpool(encode_png, img)  # big: off the loop
        return ComposeResponse(image=png, known_fraction=float(m.mean()), known_error=err,
                               refine=req.refine, seconds=secs, batch=batch)  # fmt: skip

    @app.post("/api/complete", response_model=CompleteResponse, responses=ERRORS, tags=["inference"])
    async def complete(req: CompleteRequest):
        """Several completions of the unknown region (the first is the regressor's own)."""
        check_refine(req.refine)
        if req.n > limits.max_complete:
            raise ApiError(422, f"n: at most {limits.max_complete} completions per request; got {req.n}")
        x, m = await decode(req.collage, req.mask)
        job = {"collage": x, "mask": m, "n": req.n, "seed": req.seed, "refine": req.refine,
               "iterations": req.iterations}  # fmt: skip
        (imgs, errs, div, method, secs), _ = await infer("complete", job)
        pngs = await run_in_threadpool(lambda: [encode_png(im) for im in imgs])
        return CompleteResponse(images=pngs, known_error=errs, diversity=div, method=method, seconds=secs)

    # -------------------------------------------------------------- page
    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    async def index():
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon():
        return FileResponse(STATIC_DIR / "favicon.svg", media_type="image/svg+xml")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    if cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["content-type"])  # fmt: skip
    app.add_middleware(GuardMiddleware, max_body_bytes=limits.max_body_bytes, allowed_hosts=allowed_hosts)
    return app
