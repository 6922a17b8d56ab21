"""Load test of ``polypseg serve``: throughput, latency, errors and server memory, against Predictor alone.

    python benchmarks/serve_load.py [--model RUN|CKPT|ONNX] [--clients 20] [--seconds 60] [--workers 2] [--max-batch 8]
        [--max-queue 8] [--precision auto] [--frames 32] [--baseline-seconds 15]

Starts ``polypseg serve`` on a free loopback port (never another address), then runs two phases of
``--seconds`` each, with ``--clients`` concurrent clients posting real-size JPEG frames to
``/predict?output=mask``: real frames from ``../shared/data`` when present (a sample of its images),
else synthetic 576x720 frames. Phase 1 sends only frames; phase 2 makes 10 % of the requests hostile
(oversize uploads, corrupt and truncated files, decompression bombs). Before the server starts, the same
frames go through ``Predictor`` alone in this process (one frame per call, as the server runs them), so
the throughput ratio is measured in the same run on the same machine; the reference is the faster of one
frame per call and ``--max-batch`` frames per call (the server's micro-batching can at best reach the latter),
decoding included (the server decodes every upload); the ratio against frames decoded beforehand is kept too.
After a 503 a client waits for the server's ``Retry-After`` (x0.5-1.5), as HTTP clients do;
``--busy-backoff S`` replaces it with S seconds.

Reports requests/s, p50 / p95 / p99 latency of the answered frames, the count of answers by status,
unexpected errors (anything but 200 for a frame, and anything but the deliberate 413 / 415 / 422 for a
hostile upload; 503 from a full queue is counted apart), and the server's resident memory (VmRSS) at
start, after the first minute (or the end of phase 1 if shorter), at its peak and at the end. Targets
(issue 16): no unexpected errors; end memory within 10 % of the memory after the first minute;
throughput at least 80 % of Predictor alone. Results go to ``benchmarks/results/serve-<time>.json``.
Without ``--model`` a small ``quick`` model is trained first (one epoch on synthetic data, about a minute).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections import Counter
from pathlib import Path

import cv2
import httpx
import numpy as np
from speed import cpu_info

from polypseg.atomic import atomic_write_text

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
RESULTS = Path(__file__).resolve().parent / "results"
HOSTILE_OK = {413, 415, 422}


def free_port() -> int:
    """A TCP port free on the loopback interface now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, tries: int = 600, pause_s: float = 0.2) -> bool:
    """Poll ``url/health`` until it answers 200 (True) or ``tries`` polls ``pause_s`` apart have failed."""
    for _ in range(tries):
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(pause_s)
    return False


def load_frames(n: int) -> tuple[list[bytes], str]:
    """``n`` JPEG-encoded frames (quality 90) and where they came from."""
    from polypseg.data.io import read_image

    not_images = {"mask", "masks", "ground truth", "gt", "label", "labels"}
    files = [
        p for p in (sorted(SHARED.rglob("*")) if SHARED.is_dir() else [])
        if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp")
        and not not_images & {part.lower() for part in p.relative_to(SHARED).parts[:-1]}
        and not p.stem.lower().endswith(("_mask", "-mask", "_seg"))
    ]  # fmt: skip
    files = files[:: max(1, len(files) // max(n, 1))][:n]
    if len(files) >= min(n, 4):
        frames = [np.ascontiguousarray(read_image(f)[..., ::-1]) for f in files]
        return [cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes() for f in frames], str(SHARED)
    from polypseg.data.synthetic import render_frame

    out = []
    for i in range(n):
        image, _ = render_frame(seed=7, index=i, size=256)
        big = cv2.resize(image[..., ::-1], (720, 576), interpolation=cv2.INTER_CUBIC)
        out.append(cv2.imencode(".jpg", big, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes())
    return out, "synthetic 576x720"


def hostile_uploads(frame: bytes, max_upload_mb: float) -> dict[str, bytes]:
    """Oversize, corrupt, truncated and decompression-bomb uploads (all refused with 413 / 415 / 422)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)
    claim = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(bytes(64))) + chunk(b"IEND", b"")
    return {
        "oversize": os.urandom(int(max_upload_mb * 2**20) + 1024),
        "corrupt": b"\xff\xd8\xff\xe0" + os.urandom(4000),
        "truncated": frame[: len(frame) // 3],
        "not_image": b"GET / HTTP/1.1\r\n" * 100,
        "bomb_header": claim,
        "bomb_zeros": cv2.imencode(".png", np.zeros((8000, 8000), np.uint8))[1].tobytes(),  # 64 MP, ~60 KB
    }


def decode_jpeg(data: bytes) -> np.ndarray:
    """An encoded frame as uint8 RGB ``(H, W, 3)``."""
    return np.ascontiguousarray(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)[..., ::-1])


def predictor_rate(model: str, precision: str, frames: list[bytes], seconds: float, batch: int = 8) -> dict:
    """Frames/s of ``Predictor.predict_mask`` one frame per call, on decoded frames and with JPEG decoding,
    and ``batch`` decoded frames per call (what the server's micro-batching can reach at best).

    It runs on a fresh thread, as the server's workers do: on a loaded CPU, torch's main-thread OpenMP
    team can run a small model many times slower than a worker thread does, which would flatter the server.
    """
    from polypseg.inference import Predictor

    pred = Predictor.from_checkpoint(model, precision=precision)
    decoded = [decode_jpeg(f) for f in frames]
    out: dict[str, float] = {}

    def measure() -> None:
        for name, decode in (("predict", False), ("decode_and_predict", True)):
            next(pred.predict_mask([decoded[0]]))  # warm-up
            n, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < seconds / 2:
                k = n % len(frames)
                img = decoded[k]
                if decode:
                    img = decode_jpeg(frames[k])
                next(pred.predict_mask([img]))
                n += 1
            out[f"{name}_fps"] = n / (time.perf_counter() - t0)
        pred.batch_size = batch
        list(pred.predict_mask(decoded[:batch]))  # warm-up at this batch size
        for name, decode in (("predict_batched", False), ("decode_and_predict_batched", True)):
            n, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < seconds / 2:
                ks = [(n + j) % len(frames) for j in range(batch)]
                chunk = [decode_jpeg(frames[k]) for k in ks] if decode else [decoded[k] for k in ks]
                list(pred.predict_mask(chunk))
                n += batch
            out[f"{name}_fps"] = n / (time.perf_counter() - t0)

    worker = threading.Thread(target=measure)
    worker.start()
    worker.join()
    return out


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far, from /proc/<pid>/stat (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class RssSampler(threading.Thread):
    """Samples a process's VmRSS (MiB) every ``every`` seconds from /proc (Linux)."""

    def __init__(self, pid: int, every: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.pid, self.every, self.samples, self.stop = pid, every, [], threading.Event()

    def rss(self) -> float | None:
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            return None
        return None

    def run(self) -> None:
        while not self.stop.is_set():
            value = self.rss()
            if value is not None:
                self.samples.append((time.monotonic(), value))
            self.stop.wait(self.every)


def run_phase(url: str, frames: list[bytes], hostile: dict[str, bytes], share: float, clients: int, seconds: float,
              backoff: float | None = None):  # fmt: skip
    """``clients`` threads posting for ``seconds``; returns per-request records ``(kind, status, latency_s)``.

    After a 503 a client waits ``backoff`` seconds, or (None) the server's ``Retry-After``, times a
    random factor in [0.5, 1.5) (so that the waiting clients do not all return at once)."""
    records: list[tuple[str, int, float]] = []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds
    kinds = sorted(hostile)

    def client(k: int) -> None:
        rng = np.random.default_rng(k)
        with httpx.Client(base_url=url, timeout=120) as http:
            i = k
            while time.monotonic() < deadline:
                bad = rng.random() < share
                kind = kinds[int(rng.integers(len(kinds)))] if bad else "frame"
                body = hostile[kind] if bad else frames[i % len(frames)]
                i += 1
                t0 = time.perf_counter()
                try:
                    res = http.post("/predict?output=mask", content=body, headers={"content-type": "image/jpeg"})
                    status = res.status_code
                except httpx.HTTPError:
                    status = -1  # connection error
                with lock:
                    records.append((kind, status, time.perf_counter() - t0))
                if status == 503:  # a polite client waits before retrying a busy server
                    wait = backoff if backoff is not None else float(res.headers.get("retry-after", 1))
                    time.sleep(wait * (0.5 + rng.random()))

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return records


def summarise(records: list[tuple[str, int, float]], seconds: float) -> dict:
    ok = [lat for kind, status, lat in records if kind == "frame" and status == 200]
    unexpected = Counter(
        f"{kind}:{status}" for kind, status, _ in records
        if status != 503 and ((kind == "frame" and status != 200) or (kind != "frame" and status not in HOSTILE_OK))
    )  # fmt: skip
    pct = (lambda q: round(float(np.percentile(ok, q)) * 1000, 1)) if ok else (lambda q: None)
    return {
        "requests": len(records),
        "frames_answered": len(ok),
        "frames_per_s": round(len(ok) / seconds, 2),
        "latency_ms": {"p50": pct(50), "p95": pct(95), "p99": pct(99)},
        "status": dict(sorted(Counter(str(s) for _, s, _ in records).items())),
        "busy_503": sum(1 for _, s, _ in records if s == 503),
        "unexpected_errors": sum(unexpected.values()),
        "unexpected_by_kind": dict(unexpected),
    }


def tiny_model(folder: Path) -> str:
    from polypseg.config import load_recipe
    from polypseg.training import fit

    print("no --model: training the quick recipe for one epoch on synthetic data")
    fit(load_recipe("quick", {"epochs": 1}), ["synthetic:n=48,size=128,seed=0"], folder / "run", progress=False)
    return str(folder / "run")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model")
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--max-queue", type=int, default=8)
    ap.add_argument("--max-upload-mb", type=float, default=20)
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--baseline-seconds", type=float, default=15)
    ap.add_argument("--max-batch", type=int, default=8, help="the server's micro-batch limit (1: off)")
    ap.add_argument("--busy-backoff", type=float, default=None,
                    help="seconds (x0.5-1.5) a client waits after a 503 before its next request "
                         "(default: the server's Retry-After, as HTTP clients such as urllib3 do)")  # fmt: skip
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="serve-load-"))
    model = args.model or tiny_model(tmp)
    frames, source = load_frames(args.frames)
    print(f"{len(frames)} frames from {source}; Predictor alone for {args.baseline_seconds:g} s")
    baseline = predictor_rate(model, args.precision, frames, args.baseline_seconds, max(args.max_batch, 1))

    port = free_port()
    cmd = [sys.executable, "-m", "polypseg", "serve", model, "--host", "127.0.0.1", "--port", str(port),
           "--workers", str(args.workers), "--max-queue", str(args.max_queue), "--max-batch", str(args.max_batch),
           "--max-upload-mb", str(args.max_upload_mb), "--precision", args.precision]  # fmt: skip
    log = (tmp / "serve.log").open("w")
    server = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        if not wait_healthy(url):
            raise SystemExit(f"the server did not start; its log: {tmp / 'serve.log'}")
        sampler = RssSampler(server.pid)
        sampler.start()
        time.sleep(1)
        t_start = time.monotonic()
        phases = {}
        for name, share in (("frames", 0.0), ("hostile_10pct", 0.1)):
            print(f"phase {name}: {args.clients} clients for {args.seconds:g} s")
            t0, cpu0 = time.monotonic(), (os.times(), process_cpu_seconds(server.pid))
            records = run_phase(url, frames, hostile_uploads(frames[0], args.max_upload_mb), share,
                                args.clients, args.seconds, args.busy_backoff)  # fmt: skip
            wall = time.monotonic() - t0
            phases[name] = summarise(records, wall)
            mine, theirs = os.times(), process_cpu_seconds(server.pid)
            phases[name]["cpu_share"] = {  # of all cores' time during the phase
                "clients": round(
                    (mine.user + mine.system - cpu0[0].user - cpu0[0].system) / (wall * os.cpu_count()), 3
                ),
                "server": round((theirs - cpu0[1]) / (wall * os.cpu_count()), 3),
            }
            if name == "frames":
                t_phase1_end = time.monotonic()
        time.sleep(1)
        sampler.stop.set()
        sampler.join()
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
    rss = sampler.samples
    minute = min(t_start + 60, t_phase1_end)
    after_minute = next((v for t, v in rss if t >= minute), rss[-1][1])
    memory = {"start_mib": round(rss[0][1], 1), "after_first_minute_mib": round(after_minute, 1),
              "peak_mib": round(max(v for _, v in rss), 1), "end_mib": round(rss[-1][1], 1)}  # fmt: skip
    # the server decodes each upload, so the reference decodes too: the faster of one frame and --max-batch
    # frames per call; the ratio against the network-only path (frames decoded beforehand) is kept beside it
    best_alone = max(baseline["decode_and_predict_fps"], baseline["decode_and_predict_batched_fps"])
    ratio = phases["frames"]["frames_per_s"] / best_alone
    ratio_decoded = phases["frames"]["frames_per_s"] / max(baseline["predict_fps"], baseline["predict_batched_fps"])
    result = {
        "command": " ".join(sys.argv),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "cpu": cpu_info(),
        },
        "settings": vars(args) | {"model": model, "frames_source": source, "n_frames": len(frames)},
        "predictor_alone": {k: round(v, 2) for k, v in baseline.items()},
        "phases": phases,
        "server_memory": memory,
        "targets": {
            "unexpected_errors": sum(p["unexpected_errors"] for p in phases.values()),
            "memory_end_vs_first_minute": round(memory["end_mib"] / memory["after_first_minute_mib"], 3),
            "throughput_vs_predictor": round(ratio, 3),
            "throughput_reference": "Predictor alone on the same JPEG files, decode included (as the server must): "
            "the faster of one frame and --max-batch frames per call",
            "throughput_vs_predictor_on_decoded_frames": round(ratio_decoded, 3),
        },
    }
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"serve-{time.strftime('%Y%m%d-%H%M%S')}.json"
    atomic_write_text(out, json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: result[k] for k in ("predictor_alone", "phases", "server_memory", "targets")}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
