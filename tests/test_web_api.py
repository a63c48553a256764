"""`munit ui`'s API through Starlette's test client: the same pixels as `munit translate` (and,
with the heads switch, as `munit translate --heads`), bad uploads answered with a message while
the server goes on, stale requests dropped; the command itself (address, Ctrl-C, the missing
extra, --detector)."""

from __future__ import annotations

import base64
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

pytest.importorskip("starlette", reason="munit ui needs the [ui] extra: pip install -e '.[ui,dev]'")
pytest.importorskip("uvicorn", reason="munit ui needs the [ui] extra: pip install -e '.[ui,dev]'")
from starlette.testclient import TestClient  # noqa: E402

from conftest import make_image  # noqa: E402
from munit_cli import weights  # noqa: E402
from munit_cli.checkpoint import load_generators, read_header, save_generators  # noqa: E402
from munit_cli.cli import app  # noqa: E402
from munit_cli.heads.detector import load_detector  # noqa: E402
from munit_cli.images import to_uint8  # noqa: E402
from munit_cli.inference import load_input  # noqa: E402
from munit_cli.models import build_generator, random_styles  # noqa: E402
from munit_cli.styles import interpolate_styles, load_style_bank  # noqa: E402
from munit_cli.web.app import STATIC, create_app  # noqa: E402
from munit_cli.web.session import Latest, Studio, Superseded  # noqa: E402
from test_heads import TINY, random_detector  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()
MAX_UPLOAD = 300_000


@pytest.fixture
def studio(tmp_path, tiny_gen_ckpt, one_thread) -> Studio:
    work = tmp_path / "work"
    work.mkdir()
    return Studio(load_generators(tiny_gen_ckpt), torch.device("cpu"), "fp32", work, model_name="tiny.safetensors")


@pytest.fixture
def client(studio) -> TestClient:
    return TestClient(create_app(studio, max_upload=MAX_UPLOAD, examples={"cat.png": ROOT / "examples" / "cat.png"}))


@pytest.fixture
def photo(tmp_path) -> Path:
    return make_image(tmp_path / "in" / "photo.png", size=(48, 40), seed=11)  # 38x32 at the tiny size: padded to 40


def upload(client: TestClient, path: Path) -> dict:
    r = client.post(f"/api/photos?name={path.name}", content=path.read_bytes())
    assert r.status_code == 200, r.text
    return r.json()


def pixels(data_url: str) -> np.ndarray:
    head, b64 = data_url.split(",", 1)
    assert head == "data:image/png;base64"
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB"))


def png(path_or_bytes) -> np.ndarray:
    src = io.BytesIO(path_or_bytes) if isinstance(path_or_bytes, bytes) else path_or_bytes
    return np.asarray(Image.open(src).convert("RGB"))


def translate(ckpt: Path, photo: Path, outdir: Path, *args) -> list[Path]:
    r = runner.invoke(app, ["translate", str(photo), "-m", str(ckpt), "--outdir", str(outdir), "--device", "cpu",
                            "--precision", "fp32", "--workers", "0", *map(str, args)])
    assert r.exit_code == 0, r.output
    return sorted(outdir.glob("photo_[0-9]*.png"))


def render(client: TestClient, **req) -> dict:
    r = client.post("/api/render", json=req)
    assert r.status_code == 200, r.text
    return r.json()


def bank(client: TestClient, direction: str, codes: list, path: Path) -> Path:
    r = client.post("/api/bank", json={"direction": direction, "codes": codes,
                                       "sources": [f"test:{k}" for k in range(len(codes))]})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/octet-stream"
    assert "attachment" in r.headers["content-disposition"]
    path.write_bytes(r.content)
    return path


# --- same pixels as the CLI ------------------------------------------------------------

@pytest.mark.parametrize("direction", ["a2b", "b2a"])
def test_random_grid_and_grid_sheet_equal_translate(tmp_path, client, studio, tiny_gen_ckpt, photo, direction):
    p = upload(client, photo)
    assert (p["width"], p["height"]) == (38, 32) and p["name"] == "photo.png"
    assert np.array_equal(pixels(p["image"]), to_uint8(load_input(photo, 32)).numpy())  # the photo as translate sees it
    got = render(client, photo=p["id"], direction=direction, random={"n": 3, "seed": 5, "truncation": 0.8})
    assert torch.equal(torch.tensor(got["codes"]), random_styles(3, 8, 5, 0.8).flatten(1))
    want = translate(tiny_gen_ckpt, photo, tmp_path / "cli", "-n", 3, "--seed", 5, "--truncation", 0.8,
                     "--direction", direction, "--grid")
    assert len(want) == 3 and len(got["images"]) == 3
    for image, path in zip(got["images"], want):
        assert pixels(image).shape == (32, 38, 3)
        assert np.array_equal(pixels(image), png(path))
    sheet = client.post("/api/grid", json={"photo": p["id"], "direction": direction, "codes": got["codes"]})
    assert sheet.status_code == 200 and sheet.headers["content-type"] == "image/png"
    target = "cat" if direction == "a2b" else "dog"
    assert f'filename="photo_{target}_grid.png"' in sheet.headers["content-disposition"]
    assert np.array_equal(png(sheet.content), png(tmp_path / "cli" / "photo_grid.png"))


def test_slider_edit_and_style_bank_equal_translate_style_file(tmp_path, client, studio, tiny_gen_ckpt, photo):
    p = upload(client, photo)
    codes = render(client, photo=p["id"], direction="a2b", random={"n": 2, "seed": 1})["codes"]
    edited = list(codes[1])
    shown = []
    for value in (0.5, 1.37, -2.21):  # a slider over dimension 3, moving
        edited[3] = value
        shown.append(pixels(render(client, photo=p["id"], direction="a2b", codes=[edited])["images"][0]))
    assert not np.array_equal(shown[0], shown[1])  # the image follows the slider
    assert studio.encodes == 1  # the content code was computed once, never on a slider move

    one = bank(client, "a2b", [edited], tmp_path / "one.safetensors")
    loaded = load_style_bank(one, 8)
    assert loaded.domain == "cat" and torch.equal(loaded.codes.flatten(1), torch.tensor([edited], dtype=torch.float32))
    [want] = translate(tiny_gen_ckpt, photo, tmp_path / "cli1", "--style-file", one)
    assert np.array_equal(shown[-1], png(want))

    kept = [codes[0], edited]
    two = bank(client, "a2b", kept, tmp_path / "two.safetensors")
    meta, _ = read_header(two)
    assert meta["kind"] == "styles" and meta["domain"] == "cat" and meta["model"] == "tiny.safetensors"
    assert meta["source"] == "ui" and '"test:1"' in meta["sources"]
    batch = render(client, photo=p["id"], direction="a2b", codes=kept)["images"]
    want = translate(tiny_gen_ckpt, photo, tmp_path / "cli2", "--style-file", two)
    assert [np.array_equal(pixels(a), png(b)) for a, b in zip(batch, want)] == [True, True]
    assert studio.encodes == 1
    render(client, photo=p["id"], direction="b2a", codes=kept)  # a new direction: one more content code
    assert studio.encodes == 2


def test_style_from_photo_and_interpolation_equal_the_cli(tmp_path, client, studio, tiny_gen_ckpt, photo):
    refs = [make_image(tmp_path / f"ref{k}.png", size=(44, 36), seed=20 + k) for k in (1, 2)]
    p = upload(client, photo)
    codes = []
    for ref in refs:
        r = client.post(f"/api/style?direction=a2b&name={ref.name}", content=ref.read_bytes())
        assert r.status_code == 200, r.text
        assert r.json()["name"] == ref.name
        codes.append(r.json()["code"])
    got = render(client, photo=p["id"], direction="a2b", codes=[codes[0]])["images"][0]
    [want] = translate(tiny_gen_ckpt, photo, tmp_path / "cli", "--style-from", refs[0])
    assert np.array_equal(pixels(got), png(want))

    walk = render(client, photo=p["id"], direction="a2b", interpolate={"from": codes[0], "to": codes[1], "steps": 4})
    r = runner.invoke(app, ["sample-styles", "-m", str(tiny_gen_ckpt), "--domain", "cat", "--from", str(refs[0]),
                            "--from", str(refs[1]), "--interpolate", "--steps", "4", "--out", str(tmp_path / "walk.safetensors"),
                            "--device", "cpu", "--precision", "fp32"])
    assert r.exit_code == 0, r.output
    assert torch.equal(torch.tensor(walk["codes"]), load_style_bank(tmp_path / "walk.safetensors", 8).codes.flatten(1))
    assert torch.equal(torch.tensor(walk["codes"]),
                       interpolate_styles(torch.tensor(codes[0]), torch.tensor(codes[1]), 4).flatten(1))
    want = translate(tiny_gen_ckpt, photo, tmp_path / "cli-walk", "--style-file", tmp_path / "walk.safetensors")
    assert [np.array_equal(pixels(a), png(b)) for a, b in zip(walk["images"], want)] == [True] * 4


# --- bad requests ------------------------------------------------------------------------

def test_bad_uploads_get_a_message_and_the_server_goes_on(tmp_path, client, studio, photo):
    good = photo.read_bytes()
    tiny = make_image(tmp_path / "tiny.png", size=(10, 10))
    cases = [
        (b"not an image at all", 400, "cannot read 'x.png' as an image"),
        (good[: len(good) // 2], 400, "corrupt or truncated"),
        (tiny.read_bytes(), 400, "smaller than 16 px"),
        (b"", 400, "empty"),
        (b"\x89PNG" + bytes(MAX_UPLOAD), 413, "over the limit of"),
    ]
    for data, status, message in cases:
        r = client.post("/api/photos?name=../../x.png", content=data)
        assert r.status_code == status, (message, r.text)
        assert message in r.json()["error"]
        r = client.post("/api/style?direction=a2b&name=x.png", content=data)
        assert r.status_code == status and message in r.json()["error"]
    r = client.post("/api/photos?name=x.png", content=iter([bytes(MAX_UPLOAD // 2)] * 3))  # chunked: no length given
    assert r.status_code == 413 and "over the limit of" in r.json()["error"]
    studio.max_pixels = 1000  # the decompression-bomb guard of translate
    r = client.post("/api/photos?name=big.png", content=good)
    assert r.status_code == 400 and "over the limit of 1,000" in r.json()["error"]
    studio.max_pixels = 50_000_000

    p = upload(client, photo)
    bad_renders = [
        ({"photo": "nope", "direction": "a2b", "codes": [[0] * 8]}, 404, "pick it again"),
        ({"photo": p["id"], "direction": "sideways", "codes": [[0] * 8]}, 400, "unknown direction"),
        ({"photo": p["id"], "direction": "a2b", "codes": [[0] * 7]}, 400, "list of 8 numbers"),
        ({"photo": p["id"], "direction": "a2b", "codes": [["x"] * 8]}, 400, "must be a number"),
        ({"photo": p["id"], "direction": "a2b", "codes": [[0] * 8] * 65}, 400, "1 to 64"),
        ({"photo": p["id"], "direction": "a2b"}, 400, "exactly one of"),
        ({"photo": p["id"], "direction": "a2b", "random": {"n": 0}}, 400, "n must be an integer from 1"),
        ({"photo": p["id"], "direction": "a2b", "random": {"seed": -1}}, 400, "seed"),
        ({"photo": p["id"], "direction": "a2b", "interpolate": {"from": [0] * 8, "to": [1] * 8, "steps": 1}}, 400, "steps"),
        ({"photo": p["id"], "direction": "a2b", "codes": [[0] * 8], "client": "c", "seq": "1"}, 400, "seq"),
    ]
    for req, status, message in bad_renders:
        r = client.post("/api/render", json=req)
        assert r.status_code == status, (req, r.text)
        assert message in r.json()["error"], r.json()
    for body in (b"{not json", b"[1, 2]"):
        r = client.post("/api/render", content=body)
        assert r.status_code == 400 and "JSON" in r.json()["error"]
    nan = json.dumps({"photo": p["id"], "direction": "a2b", "codes": [[float("nan")] * 8]})  # Python's json reads NaN
    r = client.post("/api/render", content=nan, headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and "must be a number" in r.json()["error"]
    r = client.post("/api/bank", json={"direction": "a2b", "codes": [[0] * 8], "sources": [1]})
    assert r.status_code == 400 and "sources" in r.json()["error"]
    assert client.get("/api/examples/../../README.md").status_code == 404
    # after all that the server still translates, and nothing was left in its temporary folder
    assert len(render(client, photo=p["id"], direction="a2b", random={"n": 2})["images"]) == 2
    assert list(studio.workdir.iterdir()) == []


def test_a_failing_computation_is_an_error_message_not_a_dead_server(client, studio, photo, monkeypatch, capsys):
    p = upload(client, photo)
    tr = studio.translators["a2b"]

    def broken(*a, **k):
        raise RuntimeError("boom")

    monkeypatch.setattr(tr, "decode", broken)
    r = client.post("/api/render", json={"photo": p["id"], "direction": "a2b", "random": {"n": 1}})
    assert r.status_code == 500 and "boom" in r.json()["error"] and "terminal" in r.json()["error"]
    assert "RuntimeError: boom" in capsys.readouterr().err
    monkeypatch.undo()
    assert len(render(client, photo=p["id"], direction="a2b", random={"n": 1})["images"]) == 1


# --- supersede, don't queue -------------------------------------------------------------

def test_latest_supersedes_older_requests_per_client_and_channel():
    latest = Latest(max_keys=3)
    first = latest.claim("c1", "editor", 1)
    first()
    second = latest.claim("c1", "editor", 2)
    with pytest.raises(Superseded):
        first()
    second()
    with pytest.raises(Superseded):
        latest.claim("c1", "editor", 2)  # not newer: refused at once
    other = latest.claim("c1", "grid", 1)  # channels and clients are independent
    latest.claim("c2", "editor", 1)
    second()
    other()


def test_requests_that_wait_are_superseded_not_queued(client, studio, photo):
    p = upload(client, photo)
    calls = []
    tr = studio.translators["a2b"]
    real = tr.decode
    tr.decode = lambda *a, **k: (calls.append(1), real(*a, **k))[1]
    results = {}

    def slide(seq: int) -> None:
        results[seq] = client.post("/api/render", json={"photo": p["id"], "direction": "a2b", "codes": [[seq / 10] * 8],
                                                        "client": "page", "channel": "editor", "seq": seq})

    with studio.lock:  # a computation is running: the slider moves three times meanwhile
        threads = []
        for seq in (1, 2, 3):
            threads.append(threading.Thread(target=slide, args=(seq,)))
            threads[-1].start()
            deadline = time.monotonic() + 20
            while studio.latest._newest.get(("page", "editor")) != seq and time.monotonic() < deadline:
                time.sleep(0.01)
    for t in threads:
        t.join(30)
    assert {seq: r.status_code for seq, r in results.items()} == {1: 409, 2: 409, 3: 200}
    assert results[1].json()["error"] == "superseded by a newer request"
    assert len(calls) == 1  # only the newest was computed
    r = client.post("/api/render", json={"photo": p["id"], "direction": "a2b", "codes": [[0] * 8],
                                         "client": "page", "channel": "editor", "seq": 2})
    assert r.status_code == 409  # an old request arriving late


# --- the page --------------------------------------------------------------------------

def test_page_is_served_and_self_contained(client):
    r = client.get("/")
    assert r.status_code == 200 and "<title>munit ui</title>" in r.text
    assert "default-src 'self'" in r.headers["content-security-policy"]
    for name in ("app.js", "style.css", "index.html"):
        text = (STATIC / name).read_text()
        assert "http://" not in text and "https://" not in text and "//cdn" not in text, name
        assert client.get(f"/static/{name}").status_code == 200
    info = client.get("/api/info").json()
    assert info["domains"] == {"a": "dog", "b": "cat"} and info["style_dim"] == 8 and info["size"] == 32
    assert [d["key"] for d in info["directions"]] == ["a2b", "b2a"]
    assert info["examples"] == ["cat.png"] and info["max_upload"] == MAX_UPLOAD
    assert client.get("/api/examples/cat.png").content == (ROOT / "examples" / "cat.png").read_bytes()


def test_static_files_ship_in_the_wheel():
    text = (ROOT / "pyproject.toml").read_text()
    assert '"web/static/*"' in text  # package data: the page must install with the code
    assert {p.name for p in STATIC.iterdir()} >= {"index.html", "app.js", "style.css"}


# --- the command --------------------------------------------------------------------------

def test_ui_serves_until_ctrl_c_and_cleans_up(tmp_path, tiny_gen_ckpt):
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TMPDIR": str(tmpdir), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "munit_cli", "ui", "-m", str(tiny_gen_ckpt), "--port", "0",
                             "--device", "cpu", "--precision", "fp32"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/"), (url, proc.stderr.read() if proc.poll() else "")
        assert len(list(tmpdir.iterdir())) == 1  # its temporary folder
        with urllib.request.urlopen(url + "api/info", timeout=120) as r:
            assert b'"style_dim": 8' in r.read().replace(b'"style_dim":8', b'"style_dim": 8')
        req = urllib.request.Request(url + "api/info", headers={"Host": "evil.example"})
        with pytest.raises(urllib.error.HTTPError) as e:  # DNS rebinding: another site's name is refused
            urllib.request.urlopen(req, timeout=120)
        assert e.value.code == 400
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "Ctrl-C stops it" in err and "munit ui: stopped" in err and "Traceback" not in err
    assert list(tmpdir.iterdir()) == []  # nothing left behind


def test_ui_without_the_extra_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # import uvicorn -> ImportError
    r = runner.invoke(app, ["ui"])
    assert r.exit_code == 1
    assert "pip install 'munit-cli[ui]'" in r.stderr and "Traceback" not in r.output


def test_ui_refuses_a_busy_port(tiny_gen_ckpt, monkeypatch):
    import uvicorn

    monkeypatch.setattr(uvicorn.Server, "run", lambda *a, **k: pytest.fail("must not serve"))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        r = runner.invoke(app, ["ui", "-m", str(tiny_gen_ckpt), "--port", str(port), "--device", "cpu"])
    assert r.exit_code == 1
    assert f"cannot listen on 127.0.0.1:{port}" in r.stderr and "--port" in r.stderr


# --- heads: translate --heads's pixels --------------------------------------------------

@pytest.fixture
def det(tmp_path) -> Path:
    """A random-weights detector that finds a head in every photo (threshold 0)."""
    return random_detector(tmp_path / "det.safetensors", threshold=0.0, recipe=TINY)


@pytest.fixture
def no_head_det(tmp_path) -> Path:
    """One that finds none (no confidence reaches 1.5)."""
    return random_detector(tmp_path / "blind.safetensors", threshold=1.5, recipe=TINY)


def heads_client(tmp_path, ckpt: Path, det: Path | None, **kw) -> tuple[Studio, TestClient]:
    work = tmp_path / f"work-{det.stem if det else 'none'}"
    work.mkdir()
    detector = load_detector(det).to(torch.device("cpu"), "fp32") if det else None
    studio = Studio(load_generators(ckpt), torch.device("cpu"), "fp32", work, model_name=ckpt.name,
                    detector=detector, **kw)
    return studio, TestClient(create_app(studio, max_upload=MAX_UPLOAD, examples={}))


@pytest.fixture
def whole_photo(tmp_path) -> Path:
    return make_image(tmp_path / "in" / "photo.png", size=(100, 80), seed=3)  # a head crop of 53 px, translated at 32


def test_heads_grid_slider_and_sheet_equal_translate_heads(tmp_path, tiny_gen_ckpt, det, whole_photo, one_thread):
    studio, client = heads_client(tmp_path, tiny_gen_ckpt, det)
    info = client.get("/api/info").json()["heads"]
    assert info == {"available": True, "default": False, "detector": "det.safetensors", "why": ""}
    p = upload(client, whole_photo)
    got = render(client, photo=p["id"], direction="a2b", heads=True, random={"n": 3, "seed": 5})
    head = got["head"]
    assert head["found"] and (head["width"], head["height"]) == (100, 80) and "head found in 'photo.png'" in head["message"]
    l, t, r, b = head["window"]
    want = translate(tiny_gen_ckpt, whole_photo, tmp_path / "cli", "--heads", "--detector", det, "-n", 3, "--seed", 5,
                     "--grid")
    assert len(want) == 3
    photo_px = png(whole_photo)
    outside = np.ones(photo_px.shape[:2], bool)
    outside[t:b, l:r] = False
    for image, path in zip(got["images"], want):
        shown = pixels(image)
        assert shown.shape == (80, 100, 3)  # the whole photo, at its own size
        assert np.array_equal(shown, png(path))  # exactly what translate --heads writes
        assert np.array_equal(shown[outside], photo_px[outside]) and not np.array_equal(shown, photo_px)
    sheet = client.post("/api/grid", json={"photo": p["id"], "direction": "a2b", "codes": got["codes"], "heads": True})
    assert sheet.status_code == 200, sheet.text
    assert np.array_equal(png(sheet.content), png(tmp_path / "cli" / "photo_grid.png"))

    edited = list(got["codes"][1])
    for seq, value in enumerate((0.5, -1.7)):  # slider moves: no detector, no encoder, only a decode and a paste
        edited[2] = value
        r = client.post("/api/render", json={"photo": p["id"], "direction": "a2b", "heads": True, "codes": [edited],
                                             "client": "page", "channel": "editor", "seq": seq})
        assert r.status_code == 200, r.text
        shown = pixels(r.json()["images"][0])
    assert studio.detections == 1 and studio.encodes == 1
    [want] = translate(tiny_gen_ckpt, whole_photo, tmp_path / "cli1", "--heads", "--detector", det,
                       "--style-file", bank(client, "a2b", [edited], tmp_path / "one.safetensors"))
    assert np.array_equal(shown, png(want))
    walk = render(client, photo=p["id"], direction="a2b", heads=True,
                  interpolate={"from": got["codes"][0], "to": edited, "steps": 3})["images"]
    assert [pixels(x).shape for x in walk] == [(80, 100, 3)] * 3

    plain = render(client, photo=p["id"], direction="a2b", codes=[edited])  # the switch off: as before
    assert plain["head"] is None and pixels(plain["images"][0]).shape == (32, 40, 3)
    assert studio.encodes == 2 and studio.detections == 1  # one content code per framing; the head is remembered


def test_heads_large_photo_shows_a_preview_and_renders_full_size_on_request(tmp_path, tiny_gen_ckpt, det, whole_photo,
                                                                         monkeypatch, one_thread):
    from munit_cli.web import session

    monkeypatch.setattr(session, "PREVIEW_SIDE", 50)  # the 100 x 80 photo counts as large
    studio, client = heads_client(tmp_path, tiny_gen_ckpt, det)
    p = upload(client, whole_photo)
    got = render(client, photo=p["id"], direction="a2b", heads=True, random={"n": 2, "seed": 5})
    assert got["preview"] is True and [pixels(x).shape for x in got["images"]] == [(40, 50, 3)] * 2
    full = render(client, photo=p["id"], direction="a2b", heads=True, codes=got["codes"], full=True)
    assert full["preview"] is False and studio.encodes == 1  # the same content code
    want = translate(tiny_gen_ckpt, whole_photo, tmp_path / "cli", "--heads", "--detector", det, "-n", 2, "--seed", 5)
    for small, big, path in zip(got["images"], full["images"], want):
        assert np.array_equal(pixels(big), png(path))  # full size: exactly what translate --heads writes
        shrunk = np.asarray(Image.fromarray(png(path).astype(np.uint8)).resize((50, 40), Image.BILINEAR), dtype=float)
        assert np.abs(pixels(small).astype(float) - shrunk).mean() < 8  # the preview is that picture, smaller
    plain = render(client, photo=p["id"], direction="a2b", codes=got["codes"][:1])
    assert plain["preview"] is False  # heads off: the model's output as it is
    r = client.post("/api/render", json={"photo": p["id"], "direction": "a2b", "heads": True, "codes": got["codes"],
                                         "full": "yes"})
    assert r.status_code == 400 and "full must be true or false" in r.json()["error"]


def test_heads_style_from_a_photo_uses_the_references_head(tmp_path, tiny_gen_ckpt, det, whole_photo, one_thread):
    studio, client = heads_client(tmp_path, tiny_gen_ckpt, det)
    ref = make_image(tmp_path / "ref.png", size=(90, 110), seed=21)
    r = client.post(f"/api/style?direction=a2b&name={ref.name}&heads=1", content=ref.read_bytes())
    assert r.status_code == 200, r.text
    code, note = r.json()["code"], r.json()["note"]
    assert note is None
    whole = client.post(f"/api/style?direction=a2b&name={ref.name}", content=ref.read_bytes()).json()["code"]
    assert code != whole  # the head crop's style, not the whole photo's
    p = upload(client, whole_photo)
    got = render(client, photo=p["id"], direction="a2b", heads=True, codes=[code])["images"][0]
    [want] = translate(tiny_gen_ckpt, whole_photo, tmp_path / "cli", "--heads", "--detector", det, "--style-from", ref)
    assert np.array_equal(pixels(got), png(want))
    assert client.post("/api/style?direction=a2b&heads=maybe", content=ref.read_bytes()).status_code == 400


def test_heads_photo_without_a_head_says_so_and_shows_the_whole_photo(tmp_path, tiny_gen_ckpt, no_head_det,
                                                                      whole_photo, one_thread):
    studio, client = heads_client(tmp_path, tiny_gen_ckpt, no_head_det)
    p = upload(client, whole_photo)
    got = render(client, photo=p["id"], direction="b2a", heads=True, random={"n": 2, "seed": 1})
    assert got["head"]["found"] is False and got["head"]["window"] is None
    assert "no head found in 'photo.png' (confidence" in got["head"]["message"]
    assert "the whole photo is translated instead" in got["head"]["message"]
    want = translate(tiny_gen_ckpt, whole_photo, tmp_path / "cli", "--heads", "--detector", no_head_det,
                     "--no-head", "whole", "-n", 2, "--seed", 1, "--direction", "b2a")
    assert [np.array_equal(pixels(a), png(b)) for a, b in zip(got["images"], want)] == [True, True]
    off = render(client, photo=p["id"], direction="b2a", random={"n": 2, "seed": 1})
    assert off["images"] == got["images"] and studio.encodes == 1  # the same content code as with the switch off
    render(client, photo=p["id"], direction="b2a", heads=True, codes=[[0.0] * 8])
    assert studio.detections == 1
    r = client.post("/api/style?direction=b2a&name=ref.png&heads=1", content=whole_photo.read_bytes())
    assert r.status_code == 200 and "no head found in 'ref.png'" in r.json()["note"]
    assert "its whole photo gives the style" in r.json()["note"]


def test_heads_without_a_detector_is_refused_with_the_reason(tmp_path, tiny_gen_ckpt, whole_photo, one_thread):
    studio, client = heads_client(tmp_path, tiny_gen_ckpt, None, no_detector="no head detector is installed (test)")
    assert client.get("/api/info").json()["heads"] == {"available": False, "default": False, "detector": "",
                                                       "why": "no head detector is installed (test)"}
    p = upload(client, whole_photo)
    r = client.post("/api/render", json={"photo": p["id"], "direction": "a2b", "heads": True, "codes": [[0] * 8]})
    assert r.status_code == 400 and r.json()["error"] == "heads cannot be on: no head detector is installed (test)"
    r = client.post("/api/render", json={"photo": p["id"], "direction": "a2b", "heads": "yes", "codes": [[0] * 8]})
    assert r.status_code == 400 and "heads must be true or false" in r.json()["error"]
    assert len(render(client, photo=p["id"], direction="a2b", heads=False, codes=[[0] * 8])["images"]) == 1
    assert studio.photo(p["id"]).image is None  # no full-resolution copy kept when heads cannot be on


def test_heads_switch_defaults_on_for_a_heads_model_and_whole_photos_are_bounded(tmp_path, tiny_cfg, det, one_thread):
    torch.manual_seed(0)
    model = tmp_path / "heads-model.safetensors"
    save_generators(model, tiny_cfg, {"a": build_generator(tiny_cfg), "b": build_generator(tiny_cfg)}, ("cat", "dog"),
                    step=1, framing="heads")
    studio, client = heads_client(tmp_path, model, det, max_whole_pixels=15_000)
    assert client.get("/api/info").json()["heads"]["default"] is True
    ids = [upload(client, make_image(tmp_path / f"p{k}.png", size=(100, 80), seed=k))["id"] for k in range(3)]
    assert client.post("/api/render", json={"photo": ids[0], "direction": "a2b", "codes": [[0] * 8]}).status_code == 404
    assert len(render(client, photo=ids[2], direction="a2b", heads=True, codes=[[0] * 8])["images"]) == 1
    no_det, _ = heads_client(tmp_path, model, None)
    assert no_det.describe()["heads"]["default"] is False  # nothing to turn on


def test_ui_detector_option(tmp_path, tiny_gen_ckpt, det, monkeypatch):
    import uvicorn

    import munit_cli.web.app as web_app

    studios = []
    real = web_app.create_app
    monkeypatch.setattr(web_app, "create_app", lambda studio, **kw: (studios.append(studio), real(studio, **kw))[1])
    monkeypatch.setattr(uvicorn.Server, "run", lambda *a, **k: None)  # start, then stop at once
    monkeypatch.setattr(weights, "weights_dirs", lambda: [tmp_path / "w"])
    args = ["ui", "-m", str(tiny_gen_ckpt), "--port", "0", "--device", "cpu", "--precision", "fp32"]

    r = runner.invoke(app, args)  # no detector installed: the page works, the switch is off and says why
    assert r.exit_code == 0, r.output
    assert "no head detector" in r.stderr and studios[-1].framing is None
    why = studios[-1].describe()["heads"]["why"]
    assert "no head detector is installed" in why and "start munit ui with --detector FILE" in why

    r = runner.invoke(app, [*args, "--detector", str(det)])
    assert r.exit_code == 0, r.output
    assert "heads: det.safetensors" in r.stderr and studios[-1].framing is not None

    (tmp_path / "w").mkdir()
    (tmp_path / "w" / weights.DEFAULT_DETECTOR).write_bytes(det.read_bytes())
    r = runner.invoke(app, args)  # the shipped one, from the weights directories
    assert r.exit_code == 0 and studios[-1].detector_name == weights.DEFAULT_DETECTOR

    n = len(studios)
    r = runner.invoke(app, [*args, "--detector", str(tmp_path / "missing.safetensors")])
    assert r.exit_code == 1 and "missing.safetensors" in r.stderr and "does not exist" in r.stderr
    r = runner.invoke(app, [*args, "--detector", str(tiny_gen_ckpt)])  # not a detector
    assert r.exit_code == 1 and "not a head detector" in r.stderr
    assert len(studios) == n
