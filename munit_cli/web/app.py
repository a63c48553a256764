"""The `munit ui` web app (Starlette): one static page of plain JS and a small JSON API over a Studio.

API (JSON unless said; an error is {"error": message} with a 4xx/5xx status):
  GET  /api/info                     model, directions, style_dim, size, limits, examples, heads
  GET  /api/examples/NAME            an example photo's bytes
  POST /api/photos?name=N            body: image bytes -> {id, name, width, height, image}
  POST /api/render                   {photo, direction, codes | random | interpolate, heads?, client?, channel?, seq?}
                                     -> {images: [PNG data URLs], codes, head, compute_ms, wait_ms, server_ms}
  POST /api/style?direction=D&name=N&heads=1
                                     body: reference image bytes -> {code, name, note}
  POST /api/grid                     {photo, direction, codes, heads?} -> PNG (the `translate --grid` sheet)
  POST /api/bank                     {direction, codes, sources?} -> styles .safetensors (`--style-file`)

heads (true: `translate --heads`): the photo's head crop is translated and each image is the whole
photo, at full resolution, with the translation pasted back; `head` says what was found
({found, confidence, window, width, height, message}; a photo without a head is translated whole).
"""

from __future__ import annotations

import base64
import functools
import io
import json
import re
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Awaitable, Callable

import torch
from PIL import Image
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from torch import Tensor

from munit_cli.errors import MunitError
from munit_cli.images import find_images, to_uint8
from munit_cli.web.session import Studio, WebError, display_name, parse_flag

STATIC = Path(__file__).resolve().with_name("static")
DEFAULT_MAX_UPLOAD = 20 * 1024 * 1024  # bytes of one uploaded photo (--max-upload-mb)
MAX_JSON = 2 * 1024 * 1024
# The page may load only what this server serves (plus the data: and blob: URLs it makes): a
# reference to a CDN would be blocked, not fetched.
CSP = ("default-src 'self'; img-src 'self' data: blob:; script-src 'self'; style-src 'self'; "
       "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'")


def example_images() -> dict[str, Path]:
    """Example photos offered on the page: the source checkout's examples/, else the copy that
    `pip install .` puts in <prefix>/share/munit/examples."""
    for folder in (Path(__file__).resolve().parents[2] / "examples", Path(sys.prefix) / "share" / "munit" / "examples"):
        if folder.is_dir():
            found = {p.name: p for p in find_images(folder) if p.parent == folder}
            if found:
                return found
    return {}


def png_bytes(u8: Tensor) -> bytes:
    """uint8 (H, W, 3) -> PNG (lossless: the page gets translate's exact pixels; level 1 is fast)."""
    buf = io.BytesIO()
    Image.fromarray(u8.numpy(), "RGB").save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def attachment(name: str) -> dict[str, str]:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "download"
    return {"Content-Disposition": f'attachment; filename="{safe}"'}


async def read_body(request: Request, limit: int, what: str) -> bytes:
    """The request body, refused with 413 past `limit` bytes (checked on the header, then as it streams)."""
    def too_big(size: str) -> WebError:
        return WebError(f"{what} is {size}, over the limit of {limit / 2**20:.0f} MB: use a smaller file "
                        "(or start munit ui with a larger --max-upload-mb)", 413)
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise too_big(f"{int(length) / 2**20:.1f} MB")
    chunks, total = [], 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise too_big(f"over {limit / 2**20:.0f} MB")
        chunks.append(chunk)
    if not total:
        raise WebError(f"empty {what}: pick an image file")
    return b"".join(chunks)


def query_flag(request: Request, name: str) -> bool:
    """A yes/no query parameter: 1/true or 0/false (absent: no)."""
    value = request.query_params.get(name, "0").lower()
    if value not in ("0", "1", "true", "false"):
        raise WebError(f"{name} must be 1 or 0, got {value!r}")
    return value in ("1", "true")


async def read_json(request: Request) -> dict:
    try:
        req = json.loads(await read_body(request, MAX_JSON, "request"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise WebError(f"the request is not valid JSON ({e})") from None
    if not isinstance(req, dict):
        raise WebError("the request must be a JSON object")
    return req


def endpoint(fn: Callable[..., Awaitable[Response]]) -> Callable[..., Awaitable[Response]]:
    """Every failure becomes a JSON {"error": ...} response; none stops the server."""

    @functools.wraps(fn)
    async def wrapper(*args: Any) -> Response:  # (self, request) on Api
        try:
            return await fn(*args)
        except WebError as e:
            return JSONResponse({"error": str(e)}, status_code=e.status)
        except MunitError as e:
            return JSONResponse({"error": str(e)}, status_code=400)
        except ClientDisconnect:
            return Response(status_code=400)
        except torch.OutOfMemoryError:
            return JSONResponse({"error": "out of memory: restart munit ui with a smaller --size, or use fewer styles"},
                                status_code=507)
        except Exception as e:  # a bug: say so on the page and in the terminal, keep serving
            traceback.print_exc()
            return JSONResponse({"error": f"internal error ({type(e).__name__}: {e}): see the terminal running munit ui"},
                                status_code=500)
    return wrapper


class Api:
    """The endpoints, over one Studio."""

    def __init__(self, studio: Studio, max_upload: int, examples: dict[str, Path]):
        self.studio, self.max_upload, self.examples = studio, max_upload, examples

    def _claim(self, req: dict) -> Callable[[], None]:
        """The supersede check of a request that names its client and sequence number."""
        client, seq = req.get("client"), req.get("seq")
        if client is None and seq is None:
            return lambda: None
        channel = req.get("channel", "")
        if not (isinstance(client, str) and len(client) <= 64 and isinstance(channel, str) and len(channel) <= 32
                and isinstance(seq, int) and not isinstance(seq, bool) and seq >= 0):
            raise WebError("client (text), channel (text) and seq (integer >= 0) name a request to supersede")
        return self.studio.latest.claim(client, channel, seq)

    @endpoint
    async def index(self, request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache", "Content-Security-Policy": CSP})

    @endpoint
    async def favicon(self, request: Request) -> Response:
        return FileResponse(STATIC / "favicon.svg", media_type="image/svg+xml")

    @endpoint
    async def info(self, request: Request) -> Response:
        return JSONResponse({**self.studio.describe(), "max_upload": self.max_upload, "examples": sorted(self.examples)})

    @endpoint
    async def example(self, request: Request) -> Response:
        path = self.examples.get(request.path_params["name"])
        if path is None:
            raise WebError(f"no example named {request.path_params['name']!r}", 404)
        return FileResponse(path)

    @endpoint
    async def add_photo(self, request: Request) -> Response:
        name = display_name(request.query_params.get("name"))
        data = await read_body(request, self.max_upload, "the photo")
        photo = await run_in_threadpool(self.studio.add_photo, data, name)
        h, w = photo.hw
        return JSONResponse({"id": photo.id, "name": photo.name, "width": w, "height": h,
                             "image": data_url(png_bytes(to_uint8(photo.x)))})

    @endpoint
    async def render(self, request: Request) -> Response:
        t0 = time.perf_counter()
        req = await read_json(request)
        studio = self.studio
        photo, direction, s_b = studio.photo(req.get("photo")), studio.direction(req.get("direction")), studio.codes(req)
        heads = studio.heads(req.get("heads"))
        full = parse_flag(req.get("full", False), "full")
        check = self._claim(req)

        started: list[float] = []

        def begin() -> None:  # runs once the compute is ours (and again before a paste-back)
            if not started:
                started.append(time.perf_counter())
            check()

        def work() -> tuple[list[str], bool, float]:
            x_ab, preview = studio.render(photo, direction, s_b, begin, heads=heads, full=full)  # (N, H, W, 3) uint8
            compute = time.perf_counter() - started[0]
            check()  # superseded during the compute: skip the encoding, nobody will show it
            return [data_url(png_bytes(x)) for x in x_ab], preview, compute

        images, preview, compute = await run_in_threadpool(work)
        return JSONResponse({"images": images, "codes": s_b.flatten(1).tolist(), "seq": req.get("seq"),
                             "preview": preview,  # scaled down (heads on, a large photo): ask again with full
                             "head": studio.head_info(photo) if heads else None,
                             "compute_ms": round(compute * 1000, 1),  # the model, content code included if new
                             "wait_ms": round((started[0] - t0) * 1000, 1),  # behind other computations
                             "server_ms": round((time.perf_counter() - t0) * 1000, 1)})

    @endpoint
    async def style(self, request: Request) -> Response:
        direction = self.studio.direction(request.query_params.get("direction"))
        name = display_name(request.query_params.get("name"), "reference")
        heads = self.studio.heads(query_flag(request, "heads"))
        data = await read_body(request, self.max_upload, "the reference photo")
        s, note = await run_in_threadpool(self.studio.style_of, data, name, direction, heads)
        return JSONResponse({"code": s.flatten().tolist(), "name": name, "note": note})

    @endpoint
    async def grid(self, request: Request) -> Response:
        req = await read_json(request)
        studio = self.studio
        photo, direction, s_b = studio.photo(req.get("photo")), studio.direction(req.get("direction")), studio.codes(req)
        sheet = await run_in_threadpool(studio.grid, photo, direction, s_b, studio.heads(req.get("heads")))
        buf = io.BytesIO()
        sheet.save(buf, format="PNG")
        stem = Path(photo.name).stem or "photo"
        return Response(buf.getvalue(), media_type="image/png",
                        headers=attachment(f"{stem}_{studio.domain(direction[-1])}_grid.png"))

    @endpoint
    async def bank(self, request: Request) -> Response:
        req = await read_json(request)
        studio = self.studio
        direction, s_b = studio.direction(req.get("direction")), studio.codes({"codes": req.get("codes")})
        sources = req.get("sources") or ["ui"] * s_b.shape[0]
        if not (isinstance(sources, list) and len(sources) == s_b.shape[0]
                and all(isinstance(s, str) and len(s) <= 200 for s in sources)):
            raise WebError("sources must be a list of short texts, one per code")
        data = await run_in_threadpool(studio.bank, direction, s_b, sources)
        return Response(data, media_type="application/octet-stream",
                        headers=attachment(f"{studio.domain(direction[-1])}-styles.safetensors"))


def create_app(studio: Studio, *, max_upload: int = DEFAULT_MAX_UPLOAD, examples: dict[str, Path] | None = None,
               allowed_hosts: list[str] | None = None) -> Starlette:
    """The ASGI app. `allowed_hosts` (Host header names) guards a localhost server against DNS
    rebinding: a web page elsewhere cannot read its answers."""
    api = Api(studio, max_upload, example_images() if examples is None else examples)
    routes = [
        Route("/", api.index),
        Route("/favicon.ico", api.favicon),
        Route("/api/info", api.info),
        Route("/api/examples/{name}", api.example),
        Route("/api/photos", api.add_photo, methods=["POST"]),
        Route("/api/render", api.render, methods=["POST"]),
        Route("/api/style", api.style, methods=["POST"]),
        Route("/api/grid", api.grid, methods=["POST"]),
        Route("/api/bank", api.bank, methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    middleware = [Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts)] if allowed_hosts else []
    return Starlette(routes=routes, middleware=middleware)
