"""`latentcomp serve` API: every endpoint, each bad input (JSON errors, right status, no stack traces),
the body / pixel limits, batching + responsiveness, and the server's security defaults."""

from __future__ import annotations

import base64
import io
import socket
import threading
import time
import warnings

import httpx
import numpy as np
import pytest
import torch
from PIL import Image

from latentcomp.web import Limits, create_app, tiny_pipeline
from latentcomp.web.images import encode_png
from latentcomp.web.server import is_all_interfaces, is_loopback, start_in_thread, url_for
from latentcomp.web.worker import Busy, InferenceWorker

with warnings.catch_warnings():  # newer Starlette warns about httpx at import time
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

LIMIT = 256 * 1024  # small body limit for the tests
MAX_PIXELS = 1_000_000


# ------------------------------------------------------------------------------------------- helpers
def png_b64(arr: np.ndarray, fmt: str = "PNG") -> str:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt)
    return base64.b64encode(buf.getvalue()).decode()


def decode(b64: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))))


def rgb(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def half_mask(res: int = 32, left: bool = True) -> str:
    m = np.zeros((res, res), np.uint8)
    if left:
        m[:, : res // 2] = 255
    else:
        m[:, res // 2 :] = 255
    return png_b64(m)


def assert_error(r, status: int, *words: str) -> str:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"error"} and isinstance(body["error"], str) and body["error"]
    for w in ("Traceback", 'File "', "site-packages"):
        assert w not in r.text
    for w in words:
        assert w.lower() in body["error"].lower(), body["error"]
    return body["error"]


@pytest.fixture(scope="module")
def pipe():
    return tiny_pipeline()


@pytest.fixture(scope="module")
def client(pipe):
    app = create_app(pipe, limits=Limits(max_body_bytes=LIMIT, max_pixels=MAX_PIXELS, max_refine=5))
    with TestClient(app) as c:
        yield c


@pytest.fixture(scope="module")
def sample(client) -> str:
    return client.get("/api/samples", params={"seed": 1, "n": 1}).json()["samples"][0]["image"]


# ------------------------------------------------------------------------------------------- info
def test_health_model_and_openapi(client):
    h = client.get("/api/health")
    assert h.status_code == 200 and h.json()["status"] == "ok" and h.json()["model"] == "tiny"
    m = client.get("/api/model").json()
    assert (m["resolution"], m["channels"], m["space"], m["name"]) == (32, 3, "z", "tiny")
    assert m["limits"]["max_body_bytes"] == LIMIT and m["limits"]["max_pixels"] == MAX_PIXELS
    spec = client.get("/api/openapi.json").json()
    for path in ("/api/health", "/api/model", "/api/samples", "/api/upload", "/api/compose", "/api/complete"):
        assert path in spec["paths"], path
    assert "ComposeRequest" in spec["components"]["schemas"]
    assert Limits().max_body_bytes == 10 * 1024 * 1024  # the default limit is 10 MB


def test_page_and_static_files(client):
    r = client.get("/")
    assert r.status_code == 200 and "collage" in r.text and "/static/app.js" in r.text
    assert "http://" not in r.text and "https://" not in r.text  # no CDN: works offline
    assert "default-src 'self'" in r.headers["content-security-policy"]
    assert r.headers["x-content-type-options"] == "nosniff"
    for name in ("app.js", "style.css"):
        s = client.get(f"/static/{name}")
        assert s.status_code == 200 and "https://" not in s.text
    assert_error(client.get("/static/..%2Fapp.py"), 404)
    assert_error(client.get("/nope"), 404, "not found")
    assert_error(client.delete("/api/compose"), 405)


# ------------------------------------------------------------------------------------------- samples
def test_samples_by_seed(client, pipe):
    r = client.get("/api/samples", params={"seed": 5, "n": 2})
    assert r.status_code == 200
    s = r.json()["samples"]
    assert [x["seed"] for x in s] == [5, 6]
    assert decode(s[0]["image"]).shape == (32, 32, 3)
    again = client.get("/api/samples", params={"seed": 6, "n": 1}).json()["samples"][0]
    assert again["image"] == s[1]["image"]  # sample i is drawn with seed + i alone
    assert s[0]["image"] == encode_png(pipe.sample(1, seed=5)[0])  # same as the Python API / CLI
    assert s[0]["image"] != s[1]["image"]


@pytest.mark.parametrize("params", [{"n": 0}, {"n": 17}, {"seed": -1}, {"seed": "abc"}, {"seed": 2**63}])
def test_samples_bad_params(client, params):
    assert_error(client.get("/api/samples", params=params), 422)


def test_seeds_reach_as_far_as_the_cli(client, pipe):
    """The CLI takes --seed up to 2^63 - 1; so does the server (it stopped at 2^31 - 1)."""
    top = 2**63 - 1
    r = client.get("/api/samples", params={"seed": top, "n": 2})
    assert r.status_code == 200, r.text
    s = r.json()["samples"]
    assert [x["seed"] for x in s] == [top]  # sample i uses seed + i: no seed past the top
    assert s[0]["image"] == encode_png(pipe.sample(1, seed=top)[0])
    r = client.post("/api/complete", json={"collage": png_b64(rgb(32, 32)), "n": 2, "seed": top})
    assert r.status_code == 200, r.text
    assert_error(client.post("/api/complete", json={"collage": png_b64(rgb(32, 32)), "seed": top + 1}), 422)


# ------------------------------------------------------------------------------------------- upload
def test_upload_resizes_and_converts(client):
    r = client.post("/api/upload", json={"image": png_b64(rgb(60, 100))})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["width"], body["height"], body["resized"]) == (100, 60, True)
    assert decode(body["image"]).shape == (32, 32, 3)
    rgba = np.dstack([rgb(32, 32), np.full((32, 32), 128, np.uint8)])  # RGBA, composited on white
    r = client.post("/api/upload", json={"image": "data:image/png;base64," + png_b64(rgba)})
    assert r.status_code == 200 and r.json()["resized"] is False
    gray = png_b64(np.full((40, 40), 7, np.uint8))
    assert decode(client.post("/api/upload", json={"image": gray}).json()["image"]).shape == (32, 32, 3)
    jpeg = png_b64(rgb(50, 50), "JPEG")
    assert client.post("/api/upload", json={"image": jpeg}).status_code == 200


def _truncated_png(size: int = 64) -> str:
    buf = io.BytesIO()
    Image.fromarray(rgb(size, size)).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()[:-200]).decode()


def _gif() -> str:
    buf = io.BytesIO()
    Image.fromarray(rgb(8, 8)).save(buf, format="GIF")
    return base64.b64encode(buf.getvalue()).decode()


def _bomb() -> str:
    # 1200 x 1000 = 1.2 M pixels > MAX_PIXELS, but only a few kB of PNG
    return png_b64(np.zeros((1000, 1200), np.uint8))


@pytest.mark.parametrize(
    ("image", "status", "words"),
    [
        (base64.b64encode(b"hello, not an image").decode(), 400, ["not a readable image"]),
        (_truncated_png(), 400, ["truncated"]),
        ("@@not base64@@", 400, ["base64"]),
        ("data:image/png,abc", 400, ["base64"]),
        ("", 400, ["empty"]),
        (_gif(), 400, ["GIF"]),
        (_bomb(), 413, ["1200x1000", "limit"]),
    ],
    ids=["non-image", "truncated", "bad-base64", "data-url-no-base64", "empty", "gif", "too-many-pixels"],
)
def test_upload_bad_images(client, image, status, words):
    assert_error(client.post("/api/upload", json={"image": image}), status, *words)


def test_bad_json_and_schema(client):
    headers = {"content-type": "application/json"}
    assert_error(client.post("/api/upload", content=b'{"image": ', headers=headers), 400, "not valid JSON")
    assert_error(client.post("/api/upload", content=b"[1, 2]", headers=headers), 422)
    assert_error(client.post("/api/upload", json={}), 422, "image")
    assert_error(client.post("/api/upload", json={"image": 12}), 422, "image")
    assert_error(client.post("/api/compose", content=b"not json", headers=headers), 400, "JSON")


def test_oversized_body_413(client):
    big = {"image": "A" * (LIMIT + 10)}
    assert_error(client.post("/api/upload", json=big), 413, "too large", str(LIMIT))

    def chunks():  # no Content-Length: the streamed size is counted
        for _ in range(LIMIT // 4096 + 4):
            yield b"A" * 4096

    r = client.post("/api/upload", content=chunks(), headers={"content-type": "application/json"})
    assert_error(r, 413, "too large")
    # below the limit still works
    assert client.post("/api/upload", json={"image": png_b64(rgb(32, 32))}).status_code == 200


# ------------------------------------------------------------------------------------------- compose
def test_compose(client, pipe, sample):
    r = client.post("/api/compose", json={"collage": sample, "mask": half_mask()})
    assert r.status_code == 200, r.text
    body = r.json()
    out = decode(body["image"])
    assert out.shape == (32, 32, 3) and body["known_fraction"] == pytest.approx(0.5)
    assert body["refine"] == 0 and body["batch"] >= 1 and body["known_error"] >= 0
    again = client.post("/api/compose", json={"collage": sample, "mask": half_mask()}).json()
    assert again["image"] == body["image"]  # deterministic
    other = client.post("/api/compose", json={"collage": sample, "mask": half_mask(left=False)}).json()
    assert other["image"] != body["image"]
    # the same call through the Python API (what `latentcomp compose --part collage.png:mask.png` runs)
    x = torch.from_numpy(decode(sample).copy()).permute(2, 0, 1).float() / 127.5 - 1
    m = torch.zeros(1, 32, 32)
    m[:, :, :16] = 1
    ref = pipe.compose([x], [m])
    assert np.abs(out.astype(int) - decode(encode_png(ref.image[0])).astype(int)).max() <= 1
    refined = client.post("/api/compose", json={"collage": sample, "mask": half_mask(), "refine": 2})
    assert refined.status_code == 200 and refined.json()["refine"] == 2
    pasted = client.post("/api/compose", json={"collage": sample, "mask": half_mask(), "paste": True}).json()
    assert (decode(pasted["image"])[:, :16] == decode(sample)[:, :16]).all()


def test_compose_alpha_is_the_mask(client):
    rgba = np.dstack([rgb(32, 32), np.zeros((32, 32), np.uint8)])
    rgba[:8, :, 3] = 255
    r = client.post("/api/compose", json={"collage": png_b64(rgba)})
    assert r.status_code == 200 and r.json()["known_fraction"] == pytest.approx(0.25)
    r = client.post("/api/compose", json={"collage": png_b64(rgb(32, 32))})  # opaque, no mask: all known
    assert r.json()["known_fraction"] == 1.0


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"collage": "S", "mask": png_b64(rgb(32, 16))}, 422, ["mask", "16x32", "32x32"]),
        ({"collage": png_b64(rgb(16, 16))}, 422, ["collage", "16x16", "32x32"]),
        ({"collage": "S", "mask": png_b64(np.zeros((32, 32), np.uint8))}, 422, ["no known pixels"]),
        ({"collage": "S", "refine": 6}, 422, ["refine", "at most 5"]),
        ({"collage": "S", "refine": -1}, 422, ["refine"]),
        ({"collage": "S", "mask": "%%%"}, 400, ["mask", "base64"]),
        ({"collage": base64.b64encode(b"GIF89a....").decode()}, 400, ["collage", "not a readable image"]),
        ({"mask": "S"}, 422, ["collage", "required"]),
        ({"collage": _truncated_png(32)}, 400, ["truncated"]),
        ({"collage": _bomb()}, 413, ["pixels"]),
    ],
    ids=[
        "mask-size",
        "collage-size",
        "empty-mask",
        "refine-limit",
        "refine-negative",
        "bad-b64-mask",
        "non-image",
        "missing-collage",
        "truncated",
        "too-many-pixels",
    ],  # fmt: skip
)
def test_compose_bad_inputs(client, sample, body, status, words):
    body = {k: (sample if v == "S" else v) for k, v in body.items()}
    assert_error(client.post("/api/compose", json=body), status, *words)


# ------------------------------------------------------------------------------------------- complete
def test_complete(client, sample):
    r = client.post("/api/complete", json={"collage": sample, "mask": half_mask(), "n": 3, "seed": 1})
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["images"]) == 3 and len(body["known_error"]) == 3 and body["method"]
    assert all(decode(b).shape == (32, 32, 3) for b in body["images"])
    assert len(set(body["images"])) > 1  # several different completions
    assert_error(client.post("/api/complete", json={"collage": sample, "n": 9}), 422, "at most 8")
    assert_error(client.post("/api/complete", json={"collage": sample, "n": 0}), 422, "n")
    assert_error(client.post("/api/complete", json={"collage": png_b64(rgb(8, 8))}), 422, "32x32")


# ------------------------------------------------------------------------------------------- failures
class _Broken:
    """A pipeline whose inference crashes with a message that must not reach the client."""

    resolution, channels, source = 32, 3, "broken"

    def compose(self, *a, **k):
        raise RuntimeError("secret internal detail /home/user/model.pt")

    def sample(self, *a, **k):
        raise RuntimeError("secret internal detail")


def test_internal_errors_are_opaque(caplog):
    with TestClient(create_app(_Broken())) as c:
        r = c.post("/api/compose", json={"collage": png_b64(rgb(32, 32))})
        msg = assert_error(r, 500, "internal server error")
        assert "secret" not in msg
        assert_error(c.get("/api/samples"), 500)
    assert any("secret internal detail" in rec.getMessage() or rec.exc_info for rec in caplog.records)


def test_security_defaults(pipe):
    app = create_app(pipe, allowed_hosts=["127.0.0.1", "localhost"])
    with TestClient(app, base_url="http://127.0.0.1:8000") as c:
        assert c.get("/api/health").status_code == 200
        pre = c.options("/api/compose", headers={"origin": "http://evil.example",
                                                 "access-control-request-method": "POST"})  # fmt: skip
        assert "access-control-allow-origin" not in pre.headers  # CORS closed by default
    with TestClient(app, base_url="http://evil.example") as c:  # DNS rebinding: foreign Host header
        assert_error(c.get("/api/health"), 400, "host")
    app2 = create_app(pipe, cors_origins=["http://localhost:3000"])
    with TestClient(app2) as c:
        r = c.get("/api/health", headers={"origin": "http://localhost:3000"})
        assert r.headers["access-control-allow-origin"] == "http://localhost:3000"
    assert is_loopback("127.0.0.1") and is_loopback("::1") and not is_loopback("0.0.0.0")
    assert is_all_interfaces("0.0.0.0") and url_for("0.0.0.0", 80) == "http://127.0.0.1:80/"


# ------------------------------------------------------------------------------------------- concurrency
class _Slow:
    """Delegates to the tiny pipeline, 0.25 s per call: long enough to see queueing and batching."""

    def __init__(self, pipe):
        self.pipe, self.resolution, self.channels, self.source = pipe, 32, 3, "slow"
        self.calls = []

    def compose(self, images, masks, **kw):
        time.sleep(0.25)
        self.calls.append(images[0].shape[0])
        return self.pipe.compose(images, masks, **kw)


def test_requests_are_batched_and_server_stays_responsive(pipe):
    slow = _Slow(pipe)
    app = create_app(slow)
    body = {"collage": png_b64(rgb(32, 32)), "mask": half_mask()}
    with start_in_thread(app) as srv, httpx.Client(base_url=srv.url, timeout=30) as c:
        results = []

        def post():
            results.append(c.post("/api/compose", json=body))

        threads = [threading.Thread(target=post) for _ in range(6)]
        for t in threads:
            t.start()
        time.sleep(0.05)
        t0 = time.perf_counter()
        assert c.get("/api/health").status_code == 200
        assert time.perf_counter() - t0 < 0.2  # the event loop is free while inference runs
        for t in threads:
            t.join()
        assert [r.status_code for r in results] == [200] * 6
        assert len({r.json()["image"] for r in results}) == 1
        assert sum(slow.calls) == 6 and max(slow.calls) > 1  # later requests shared one forward pass
        assert c.get("/api/health").json()["largest_batch"] > 1


def test_worker_isolates_bad_jobs_and_bounds_its_queue():
    seen = []

    def handler(payloads):
        seen.append(len(payloads))
        if "bad" in payloads:
            raise ValueError("bad input")
        return [p.upper() for p in payloads]

    w = InferenceWorker({"up": handler}, max_batch=8, max_queue=8)
    gate = threading.Event()
    w.handlers["wait"] = lambda ps: [gate.wait(5)] * len(ps)
    first = w.submit("wait", None)
    futs = [w.submit("up", p, batch_key=1) for p in ("a", "bad", "c")]
    gate.set()
    first.result(5)
    assert futs[0].result(5) == ("A", 1) and futs[2].result(5) == ("C", 1)
    with pytest.raises(ValueError):
        futs[1].result(5)
    assert seen[0] == 3  # tried as one batch first, then one by one
    gate.clear()
    blocker = w.submit("wait", None)
    time.sleep(0.05)
    [w.submit("up", "x") for _ in range(8)]
    with pytest.raises(Busy):
        w.submit("up", "y")
    gate.set()
    blocker.result(5)
    w.close()


# ------------------------------------------------------------------------------------------- CLI
def test_serve_cli_reports_port_in_use(capsys):
    from latentcomp.cli import main

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        with pytest.raises(SystemExit) as e:
            main(["serve", "--model", "tiny", "--port", str(port)])
    assert e.value.code == 2
    assert "cannot listen on 127.0.0.1" in capsys.readouterr().err


def test_serve_cli_unknown_model(capsys):
    from latentcomp.cli import main

    with pytest.raises(SystemExit) as e:
        main(["serve", "--model", "/nonexistent/run"])
    assert e.value.code == 2 and "error:" in capsys.readouterr().err


def test_serve_cli_prints_address_and_warns_for_all_interfaces(monkeypatch, capsys):
    import latentcomp.web.server as server
    from latentcomp.cli import main

    calls = []

    def fake_run(app, sock, log_level="warning"):
        calls.append((app, sock.getsockname()))
        sock.close()

    monkeypatch.setattr(server, "run", fake_run)
    with pytest.raises(SystemExit) as e:
        main(["serve", "--model", "tiny", "--host", "0.0.0.0", "--port", "0"])
    assert e.value.code == 0
    out, err = capsys.readouterr()
    assert "warning: --host 0.0.0.0" in err
    assert f"open http://127.0.0.1:{calls[0][1][1]}/" in out
    with pytest.raises(SystemExit):
        main(["serve", "--model", "tiny", "--port", "0"])
    out, err = capsys.readouterr()
    assert "warning" not in err and "open http://127.0.0.1:" in out
    with TestClient(calls[1][0], base_url="http://evil.example") as c:  # loopback bind: Host checked
        assert_error(c.get("/api/health"), 400, "host")
