"""`latentcomp serve`: the interactive collage editor (HTTP API + a static page).

    from latentcomp.web import create_app, load_pipeline
    app = create_app(load_pipeline("toyfaces"))       # a FastAPI app; run it with uvicorn

See docs/web.md for the endpoints and the security limits.
"""

from ..extras import require

require("fastapi", "the web editor (latentcomp.web)")  # before .app imports it, for a clear message
from .app import DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_PIXELS, Limits, create_app, load_pipeline, tiny_pipeline  # noqa: E402

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_MAX_PIXELS",
    "Limits",
    "create_app",
    "load_pipeline",
    "tiny_pipeline",
]
