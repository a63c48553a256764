"""`munit ui`: serve the style-exploring web page (munit_cli/web) on this machine until Ctrl-C."""

from __future__ import annotations

import ipaddress
import socket
import tempfile
from pathlib import Path
from typing import Optional

import typer

from munit_cli.checkpoint import load_generators
from munit_cli.errors import MunitError
from munit_cli.images import DEFAULT_MAX_PIXELS
from munit_cli.runtime import DEVICE_HELP, PRECISION_HELP, resolve_device
from munit_cli.ui import err_console, friendly, pick_precision, warn
from munit_cli.web.session import PREVIEW_SIDE
from munit_cli.weights import DEFAULT_DETECTOR, resolve_detector, resolve_model

INSTALL_HINT = "pip install 'munit-cli[ui]'"
LOOPBACK_NAMES = ["localhost", "127.0.0.1"]


def _require_web() -> None:
    """Refuse, with one line, when the [ui] extra (Starlette, uvicorn) is not installed."""
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as e:
        raise MunitError(f"munit ui needs the [ui] extra ({e.name or 'starlette/uvicorn'} is not installed): "
                         f"{INSTALL_HINT}") from None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def listen(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (port 0: any free port), or one clear error line."""
    try:
        infos = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise MunitError(f"cannot resolve --host {host!r} ({e.strerror}): use an address such as 127.0.0.1", exit_code=2)
    family, kind, proto, _, addr = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(128)
    except OSError as e:
        sock.close()
        hint = "pass another --port (or --port 0 for any free one)" if e.errno in (98, 48, 10048) else "check --host and --port"
        raise MunitError(f"cannot listen on {host}:{port} ({e.strerror or e}): {hint}")
    return sock


def head_detector(spec: str | None, dev, precision: str):
    """(the detector for the heads switch, on `dev` like translate --heads's; or None and why).
    A --detector that cannot be used is an error; a missing or unusable default only turns the
    switch off: the page works without it."""
    from munit_cli.heads.detector import open_detector

    try:
        return open_detector(spec, dev, precision), ""
    except MunitError as e:
        if spec is not None:
            raise
        return None, str(e).replace("pass --detector FILE", "start munit ui with --detector FILE")


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/"


@friendly
def ui_cmd(
    model: Optional[str] = typer.Option(None, "--model", "-m", metavar="MODEL", help="Checkpoint .safetensors, run directory, or model name in weights/ (default: the shipped model)."),
    host: str = typer.Option("127.0.0.1", "--host", metavar="ADDR", help="Address to listen on (0.0.0.0: every network interface; anyone who can reach it can use the page)."),
    port: int = typer.Option(7860, "--port", min=0, max=65535, metavar="N", help="Port to listen on (0: any free port)."),
    size: Optional[int] = typer.Option(None, "--size", min=16, metavar="PX", help="Resize photos' shorter side to this, like translate --size (default: the model's image size)."),
    device: str = typer.Option("auto", "--device", metavar="DEVICE", help=DEVICE_HELP),
    precision: str = typer.Option("auto", "--precision", metavar="NAME", help=PRECISION_HELP + "."),
    raw_weights: bool = typer.Option(False, "--raw-weights", metavar="", help="Use the raw weights even if the checkpoint has EMA weights."),
    max_upload_mb: float = typer.Option(20.0, "--max-upload-mb", min=0.1, metavar="MB", help="Refuse larger uploaded photos."),
    max_pixels: int = typer.Option(DEFAULT_MAX_PIXELS, "--max-pixels", min=0, metavar="N", help="Refuse larger images (decompression-bomb guard; 0: no limit)."),
    detector: Optional[str] = typer.Option(None, "--detector", metavar="FILE", help=f"Head detector for the page's heads switch, as translate --heads (default: {DEFAULT_DETECTOR} from weights/; without one the switch is off)."),
    preview_side: int = typer.Option(PREVIEW_SIDE, "--preview-side", min=0, metavar="PX", help="With heads on, show photos longer than this scaled to it (fast previews; Download image renders full size). 0: always full size."),
) -> None:
    """Explore a model's styles on a local web page, live: random grids, sliders, references.

    Pick or drop a photo and a direction; a grid of N random styles appears (seed and N are on the page). Click an output to keep its style code, then move the sliders over the code's dimensions: the image re-renders as they move. Add the style of a reference photo, walk between two kept styles, download an image or the grid, and save the kept styles as a styles file for `munit translate --style-file`. The pixels are those `munit translate` writes for the same model, photo, style code and precision.

    The heads switch does what `munit translate --heads` does: the photo's head is found once, its crop translated, and every image is the whole photo with the translated head pasted back (on by default for a model trained on head crops; off, with the reason on the page, when no head detector is installed). Photos longer than --preview-side are shown scaled down; Download image fetches the full-size picture.

    The page and its scripts come from this server alone (nothing from the internet). Uploads stay in memory and a temporary folder that is removed on exit. Ctrl-C stops the server. Needs Starlette and uvicorn: the ui extra of munit-cli.

    Examples:

      munit ui                                   # the shipped model, http://127.0.0.1:7860/

      munit ui --model runs/d2c --port 8000 --device cuda

      munit ui --model runs/heads --detector det.safetensors
    """
    _require_web()
    import uvicorn

    from munit_cli.web.app import create_app
    from munit_cli.web.session import Studio

    if not is_loopback(host):
        warn(f"listening on {host}: anyone who can reach this machine on port {port} can use the page")
    dev = resolve_device(device)
    precision = pick_precision(precision, dev)
    model_path = resolve_model(model)
    if detector is not None:
        resolve_detector(detector)  # a wrong --detector is reported before anything starts
    sock = listen(host, port)  # before loading the model: a busy port is reported at once
    with sock, tempfile.TemporaryDirectory(prefix="munit-ui-") as tmp:
        bundle = load_generators(model_path, prefer_ema=not raw_weights)
        det, no_detector = head_detector(detector, dev, precision)
        if det is None and bundle.info.meta.get("framing") == "heads":
            warn(f"this model was trained on head crops, but the heads switch is off: {no_detector}")
        studio = Studio(bundle, dev, precision, Path(tmp), size=size, max_pixels=max_pixels, model_name=model_path.name,
                        detector=det, no_detector=no_detector, preview_side=preview_side)
        # a DNS-rebinding guard (answer only to local names) where it cannot hurt: Starlette's check
        # cannot read an IPv6 Host header, and a LAN address has names we cannot know
        allowed = [*LOOPBACK_NAMES, host] if is_loopback(host) and ":" not in host else None
        app = create_app(studio, max_upload=int(max_upload_mb * 2**20), allowed_hosts=allowed)
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                                               timeout_graceful_shutdown=3))
        domains = bundle.info.domains
        heads = (f"heads: {det.path.name}{' (on)' if studio.heads_default else ''}" if det is not None
                 else "no head detector")
        err_console.print(f"munit ui: {model_path.name} ({domains[0]} <-> {domains[1]}) on {dev}, {precision}, "
                          f"{studio.size} px, {heads}; Ctrl-C stops it", highlight=False, soft_wrap=True)
        print(url_of(sock), flush=True)
        try:
            server.run(sockets=[sock])
        except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it handled: the normal way to stop
            pass
    err_console.print("munit ui: stopped", highlight=False)
