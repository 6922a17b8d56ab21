"""``polypseg serve`` through FastAPI's TestClient: every endpoint, every refusal (401, 413, 415 / 422, 503,
504), and the served mask equal pixel for pixel to ``Predictor.predict_mask`` (tiny trained run)."""

from __future__ import annotations

import struct
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

pytest.importorskip("fastapi", reason="the serve extra is part of the dev extra: pip install -e '.[dev]'")
from fastapi.testclient import TestClient

from polypseg.cli import app as cli_app
from polypseg.config import load_recipe
from polypseg.data.io import read_image
from polypseg.inference import Predictor, overlay
from polypseg.serve import ServeSettings, create_app
from polypseg.serve.results import mask_rle, probability_8bit, rle_decode

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from polypseg.training import fit

    run = tmp_path_factory.mktemp("serve") / "run"
    overrides = {"epochs": 1, "data.size": 64, "data.batch_size": 8, "model.args.base": 4, "model.args.depth": 2}
    fit(load_recipe("quick", overrides), ["synthetic:n=24,size=64,seed=1"], run, progress=False)
    return run


@pytest.fixture(scope="module")
def client(tiny_run: Path) -> TestClient:
    with TestClient(create_app(tiny_run, ServeSettings(precision="32"))) as c:
        yield c


def frame(h: int = 50, w: int = 70, seed: int = 0) -> np.ndarray:
    """A smooth RGB test frame ``(h, w, 3)`` with a bright blob (so the model's output varies)."""
    rng = np.random.default_rng(seed)
    img = cv2.resize(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8), (w, h), interpolation=cv2.INTER_CUBIC)
    cv2.circle(img, (w // 3, h // 2), min(h, w) // 4, (230, 120, 110), -1)
    return img


def encode(image: np.ndarray, ext: str = ".png") -> bytes:
    arr = image[..., ::-1] if image.ndim == 3 and image.shape[2] == 3 else image
    return cv2.imencode(ext, np.ascontiguousarray(arr))[1].tobytes()


def decode_png(data: bytes) -> np.ndarray:
    out = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    return out[..., ::-1] if out.ndim == 3 else out


def assert_plain(response, *secrets: str) -> str:
    """An error body: JSON ``{"detail": text}`` with no traceback, source file or server path in it."""
    detail = response.json()["detail"]
    assert isinstance(detail, str) and detail
    for bad in ("Traceback", 'File "', ".py", "site-packages", "/tmp", "/work", "/home", "/root", *secrets):
        assert bad not in response.text, f"{bad!r} in error body {response.text!r}"
    return detail


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` pixels with (almost) no pixel data behind it."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def test_health_model_card_page_and_openapi(client: TestClient, tiny_run: Path) -> None:
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["model_loaded"] and health["queue_depth"] == 0
    card = client.get("/model").json()
    ref = Predictor.from_checkpoint(tiny_run, precision="32")
    assert card["model"]["name"] == "unet" and card["model"]["args"]["depth"] == 2
    assert card["model"]["parameters"] == sum(p.numel() for p in ref.model.parameters())
    assert card["input"]["size"] == 64
    assert card["threshold"] == pytest.approx(ref.threshold)
    assert card["threshold_source"] == ref.meta["threshold_source"]
    ref.tta = True  # not tuned with TTA: the plain threshold, and its source says so
    plain = {"value": pytest.approx(card["threshold"]), "source": card["threshold_source"]}
    assert card["thresholds"]["plain"] == plain
    assert card["thresholds"]["tta"] == {"value": pytest.approx(ref.threshold), "source": ref.threshold_source}
    assert card["recipe"]["name"] == "quick" and card["training_data"] == ["synthetic:n=24,size=64,seed=1"]
    assert card["validation"]["epoch"] == 0 and 0 <= card["validation"]["val_dice"] <= 1
    assert "torch" in card["versions"] and card["limits"]["max_upload_mb"] == 20
    page = client.get("/")
    assert page.status_code == 200 and "default-src 'self'" in page.headers["content-security-policy"]
    for element in ('id="file-input"', 'id="model-card"', 'id="video-input"', 'id="video-fps"', 'id="drop-zone"'):
        assert element in page.text
    for name in ("pixels.js", "app.js", "style.css"):
        res = client.get(f"/static/{name}")
        assert res.status_code == 200 and "http://" not in res.text and "https://" not in res.text
    assert "http://" not in page.text and "https://" not in page.text  # nothing fetched from outside
    assert_plain(client.get("/static/secret.txt"))
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/health", "/model", "/predict"} <= set(paths)


def test_the_api_reference_page_loads_swagger_ui_from_the_package_not_a_cdn(client: TestClient) -> None:
    docs = client.get("/docs")
    assert docs.status_code == 200 and "/openapi.json" in docs.text
    assert "http://" not in docs.text.replace("http://www.w3.org", "") and "cdn" not in docs.text.lower()
    for name, kind in (("swagger-ui-bundle.js", "javascript"), ("swagger-ui.css", "css")):
        res = client.get(f"/docs-assets/{name}")
        assert res.status_code == 200 and kind in res.headers["content-type"] and len(res.content) > 10_000
    assert_plain(client.get("/docs-assets/index.html"))  # only the files the page needs
    assert client.get("/redoc").status_code == 404


@pytest.mark.parametrize(
    ("threshold", "tta", "raw"),
    [(None, False, False), ("median", False, True), (None, True, True), ("median", True, False)],
)
def test_mask_equals_predictor(client: TestClient, tiny_run: Path, tmp_path: Path, threshold, tta, raw) -> None:
    """The checkpoint's threshold, and the median probability (a 1-epoch model's map is nearly flat: the
    median splits it into a mask of many regions), with and without TTA, as a form and as a raw body."""
    path = tmp_path / "frame.png"
    path.write_bytes(encode(frame(57, 83, seed=3)))
    ref = Predictor.from_checkpoint(tiny_run, tta=tta, precision="32")
    if threshold == "median":
        threshold = ref.threshold = float(np.median(next(ref.predict_proba([read_image(path)]))))
    expected = next(ref.predict_mask([read_image(path)]))
    if threshold:
        assert 0.3 < expected.mean() < 0.7
    params = {"output": "mask", "tta": str(tta).lower()} | ({"threshold": threshold} if threshold else {})
    if raw:
        res = client.post("/predict", params=params, content=path.read_bytes(), headers={"content-type": "image/png"})
    else:
        res = client.post("/predict", params=params, files={"file": ("x.png", path.read_bytes(), "image/png")})
    assert res.status_code == 200 and res.headers["content-type"] == "image/png"
    got = decode_png(res.content)
    assert got.shape == (57, 83) and set(np.unique(got)) <= {0, 255}
    assert np.array_equal(got > 0, expected.astype(bool))
    assert float(res.headers["x-polyp-fraction"]) == pytest.approx(expected.mean(), abs=1e-6)


@pytest.mark.parametrize("kind", ["gray", "rgba", "jpeg", "bmp"])
def test_other_formats_decode_as_read_image_does(client: TestClient, tiny_run: Path, tmp_path: Path, kind) -> None:
    img = frame(40, 48, seed=5)
    data = {
        "gray": lambda: encode(img[..., 0]),
        "rgba": lambda: cv2.imencode(".png", np.dstack([img[..., ::-1], np.full(img.shape[:2], 200, np.uint8)]))[1],
        "jpeg": lambda: encode(img, ".jpg"),
        "bmp": lambda: encode(img, ".bmp"),
    }[kind]()
    path = tmp_path / ("x.jpg" if kind == "jpeg" else "x.bmp" if kind == "bmp" else "x.png")
    path.write_bytes(bytes(data))
    ref = Predictor.from_checkpoint(tiny_run, precision="32")
    ref.threshold = float(np.median(next(ref.predict_proba([read_image(path)]))))
    res = client.post("/predict", params={"threshold": ref.threshold}, files={"file": (path.name, path.read_bytes())})
    assert res.status_code == 200
    assert np.array_equal(decode_png(res.content) > 0, next(ref.predict_mask([read_image(path)])).astype(bool))


def test_probability_overlay_and_json(client: TestClient, tiny_run: Path) -> None:
    img = frame(61, 45, seed=7)
    ref = Predictor.from_checkpoint(tiny_run, precision="32")
    prob = next(ref.predict_proba([img]))
    thr = float(np.clip(np.median(prob), 0.01, 0.99))  # about half the pixels are polyp: several components
    mask = (prob > thr).astype(np.uint8)
    body = encode(img)
    res = client.post("/predict?output=probability", content=body)
    assert np.array_equal(decode_png(res.content), probability_8bit(prob))
    res = client.post(f"/predict?output=overlay&threshold={thr}", content=body)
    assert np.array_equal(decode_png(res.content), overlay(img, mask))
    out = client.post(f"/predict?output=json&threshold={thr}", content=body).json()
    assert (out["width"], out["height"], out["threshold"]) == (45, 61, thr)
    assert out["polyp_fraction"] == pytest.approx(mask.mean())
    assert out["mask_rle"]["size"] == [61, 45] and out["mask_rle_order"] == "column-major"
    assert np.array_equal(rle_decode(out["mask_rle"]), mask)
    assert sum(c["area"] for c in out["components"]) == mask.sum() and out["n_components"] == len(out["components"])
    for c in out["components"]:
        x, y, w, h = c["bbox"]
        assert mask[y : y + h, x : x + w].sum() >= c["area"] and 0 < c["mean_probability"] <= 1
        assert all(x <= px < x + w and y <= py < y + h for px, py in c["polygon"])


def test_rle_is_column_major_starting_with_background() -> None:
    m = np.array([[0, 1, 1], [0, 1, 0]], np.uint8)  # columns: [0, 0], [1, 1], [1, 0]
    assert mask_rle(m) == {"size": [2, 3], "counts": [2, 3, 1]}
    assert mask_rle(1 - m) == {"size": [2, 3], "counts": [0, 2, 3, 1]}
    assert np.array_equal(rle_decode(mask_rle(m)), m)


def test_api_key(tiny_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POLYPSEG_API_KEY", "s3cret")
    with TestClient(create_app(tiny_run, ServeSettings.with_env_key(precision="32"))) as c:
        assert c.get("/health").status_code == 200
        assert c.get("/").status_code == 200  # the page holds no data; it asks for the key
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
            res = c.get("/model", headers=headers)
            assert res.status_code == 401 and res.headers["www-authenticate"] == "Bearer"
            assert "s3cret" not in assert_plain(res)
            assert c.post("/predict", content=encode(frame()), headers=headers).status_code == 401
        ok = {"Authorization": "Bearer s3cret"}
        # the rule, for every route the app has: only liveness and the data-free page and API description are
        # open (the browser must load the page to ask for the key); everything else needs the key
        open_routes = {"/health", "/", "/static/{name}", "/docs", "/docs-assets/{name}", "/openapi.json"}
        for route in c.app.routes:
            for method in route.methods - {"HEAD"}:
                res = c.request(method, route.path.replace("{name}", "app.js"))
                assert (res.status_code == 401) == (route.path not in open_routes), (method, route.path)
        assert c.get("/model", headers=ok).status_code == 200
        assert c.post("/predict", content=encode(frame()), headers=ok).status_code == 200


def test_oversize_uploads_are_413(tiny_run: Path) -> None:
    with TestClient(create_app(tiny_run, ServeSettings(max_upload_mb=0.01, precision="32"))) as c:
        big = encode(np.random.default_rng(0).integers(0, 256, (80, 80, 3), dtype=np.uint8))  # > 10 KiB
        assert len(big) > 0.01 * 2**20
        for res in (
            c.post("/predict", content=big),
            c.post("/predict", files={"file": ("x.png", big)}),
            c.post("/predict", content=iter([big[:5000], big[5000:]])),  # chunked: no Content-Length
        ):
            assert res.status_code == 413 and "0.01 MiB" in assert_plain(res)
        assert c.post("/predict", content=encode(frame(20, 20))).status_code == 200


def test_too_many_pixels_and_bombs_are_413(tiny_run: Path) -> None:
    with TestClient(create_app(tiny_run, ServeSettings(max_pixels=1_000_000, precision="32"))) as c:
        bomb = encode(np.zeros((5000, 5000), np.uint8))  # 25 megapixels in a few kilobytes
        assert len(bomb) < 200_000
        for body in (bomb, png_claiming(100_000, 100_000), png_claiming(1001, 1000)):
            t0 = time.perf_counter()
            res = c.post("/predict", content=body)
            assert res.status_code == 413 and "1000000" in assert_plain(res)
            assert time.perf_counter() - t0 < 2  # refused from the header, not decoded
        assert c.post("/predict", content=encode(frame(50, 70))).status_code == 200


def test_not_images_and_corrupt_images(client: TestClient) -> None:
    png = encode(frame(64, 64, seed=9))
    jpeg = encode(frame(64, 64, seed=9), ".jpg")
    cases = {
        b"this is not an image": {415},
        b"GIF89a" + b"\x00" * 40: {415},  # a format outside the accepted list
        png[: len(png) // 2]: {422},  # truncated
        png[:40] + bytes(200) + png[240:]: {415, 422},  # corrupt data
        jpeg[:30] + b"\xff" * 100: {415, 422},
        b"": {422},
    }
    for body, statuses in cases.items():
        res = client.post("/predict", content=body)
        assert res.status_code in statuses, (body[:20], res.status_code, res.text)
        assert_plain(res)
    res = client.post("/predict", files={"image": ("x.png", png)})  # the wrong field name
    assert res.status_code == 422 and "'file'" in assert_plain(res)
    res = client.post("/predict", content=b"--x\r\nbroken", headers={"content-type": "multipart/form-data"})
    assert res.status_code == 400
    assert_plain(res)
    for query in ("threshold=1.5", "threshold=0", "output=jpeg", "tta=maybe"):
        res = client.post(f"/predict?{query}", content=png)
        assert res.status_code == 422
        assert_plain(res)


def test_uploads_never_touch_disk(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    import tempfile

    import starlette.formparsers

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("an upload was about to be written to a temporary file")

    for name in ("SpooledTemporaryFile", "TemporaryFile", "NamedTemporaryFile", "mkstemp"):
        monkeypatch.setattr(tempfile, name, refuse)
    monkeypatch.setattr(starlette.formparsers, "SpooledTemporaryFile", refuse)
    noise = np.random.default_rng(1).integers(0, 256, (900, 900, 3), dtype=np.uint8)
    big = encode(noise)  # about 2.4 MB: above Starlette's 1 MiB spooling threshold
    assert len(big) > 2**21
    assert client.post("/predict", files={"file": ("x.png", big)}).status_code == 200


class BlockingPredictor:
    """A predictor stub whose predictions wait for ``release`` (shared by the workers' copies)."""

    size, mean, std, threshold, tta, meta, model = 8, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), 0.5, False, {}, None

    def __init__(self, error: Exception | None = None) -> None:
        self.started, self.release, self.error = threading.Event(), threading.Event(), error

    def predict_proba(self, frames):
        self.started.set()
        self.release.wait(20)
        if self.error is not None:
            raise self.error
        for f in frames:
            yield np.zeros(f.shape[:2], np.float32)


def wait_for(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def test_full_queue_is_503_with_retry_after() -> None:
    stub, body = BlockingPredictor(), encode(frame())
    with TestClient(create_app(stub, ServeSettings(workers=1, max_queue=1))) as c, ThreadPoolExecutor(2) as pool:
        first = pool.submit(c.post, "/predict", content=body)
        assert stub.started.wait(10)  # the only worker is busy
        second = pool.submit(c.post, "/predict", content=body)
        wait_for(lambda: c.get("/health").json()["queue_depth"] == 1)  # the queue's one place is taken
        res = c.post("/predict", content=body)
        assert res.status_code == 503 and res.headers["retry-after"] == "1"
        assert_plain(res)
        stub.release.set()
        assert first.result().status_code == 200 and second.result().status_code == 200
        assert c.post("/predict", content=body).status_code == 200


def test_timeout_is_504_and_frees_the_worker() -> None:
    stub, body = BlockingPredictor(), encode(frame())
    with TestClient(create_app(stub, ServeSettings(workers=1, max_queue=0, timeout_s=0.3))) as c:
        res = c.post("/predict", content=body)
        assert res.status_code == 504
        assert_plain(res)
        stub.release.set()
        wait_for(lambda: c.get("/health").json()["running"] == 0)
        assert c.post("/predict", content=body).status_code == 200


def test_internal_errors_say_nothing_of_the_server() -> None:
    stub = BlockingPredictor(RuntimeError("boom in /srv/secret/model.py line 3"))
    stub.release.set()
    with TestClient(create_app(stub, ServeSettings()), raise_server_exceptions=False) as c:
        res = c.post("/predict", content=encode(frame()))
        assert res.status_code == 500
        assert_plain(res, "/srv/secret", "boom")


def test_cli_serve_help_and_missing_model(tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(cli_app, ["serve", "--help"])
    assert res.exit_code == 0 and "--max-queue" in res.output and "--api-key" in res.output
    res = runner.invoke(cli_app, ["serve", str(tmp_path / "nothing")])
    assert res.exit_code == 2 and "does not exist" in res.output
    res = runner.invoke(cli_app, ["serve", str(tmp_path), "--workers", "0"])
    assert res.exit_code == 2 and "workers" in res.output


class RecordingPredictor(BlockingPredictor):
    """Blocks its first call until ``release``; records how many frames each ``predict_proba`` call gets."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[int] = []

    def predict_proba(self, frames):
        frames = list(frames)
        self.calls.append(len(frames))
        if len(self.calls) == 1:
            self.started.set()
            self.release.wait(20)
        return [np.full(f.shape[:2], 0.9, np.float32) for f in frames]


def test_waiting_requests_share_one_forward_pass_and_a_bad_upload_fails_alone() -> None:
    stub, body = RecordingPredictor(), encode(frame())
    settings = ServeSettings(workers=1, max_queue=4, max_batch=8)
    with TestClient(create_app(stub, settings)) as c, ThreadPoolExecutor(4) as pool:
        first = pool.submit(c.post, "/predict", content=body)
        assert stub.started.wait(10)
        waiting = [pool.submit(c.post, "/predict", content=b) for b in (body, b"\xff\xd8\xff\xe0broken", body)]
        wait_for(lambda: c.get("/health").json()["queue_depth"] == 3)
        stub.release.set()
        statuses = [f.result().status_code for f in [first, *waiting]]
        assert statuses == [200, 200, 422, 200]
        assert stub.calls == [1, 2]  # the two good waiting frames in one call; the corrupt one decoded alone
        mask = decode_png(waiting[0].result().content)
        assert mask.shape == (50, 70) and (mask == 255).all()  # 0.9 > the 0.5 threshold everywhere


def test_batched_masks_equal_the_predictors_frame_by_frame(tiny_run: Path) -> None:
    from polypseg.serve.app import InferJob, infer_batch

    frames = [frame(50 + 8 * i, 70, seed=i) for i in range(3)]
    jobs = [InferJob(encode(f), None, False, "mask", 10**7) for f in frames]
    served = infer_batch(Predictor.from_checkpoint(tiny_run, precision="32"), jobs)
    alone = Predictor.from_checkpoint(tiny_run, precision="32", batch_size=1)
    for f, (png, _, _) in zip(frames, served, strict=True):
        expected = next(alone.predict_mask([read_image_bytes(encode(f))]))
        assert np.array_equal(decode_png(png) // 255, expected)


def read_image_bytes(data: bytes) -> np.ndarray:
    from polypseg.serve.upload import decode_image

    return decode_image(data, 10**7)
