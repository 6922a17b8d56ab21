"""Soak test of crash safety: a run killed and resumed at random moments must end where an uninterrupted
run ends, through training, tuning, evaluation, prediction and the HTTP service.

    python benchmarks/soak.py [--minutes 30] [--kills 3] [--epochs 12] [--data synthetic:n=240,size=96,seed=0]
        [--size 96] [--seed 0] [--work DIR]

1. Trains the reference run uninterrupted (``polypseg train``, fp32, CPU-deterministic), which also
   measures how long a run takes.
2. Trains the same run again and, ``--kills`` times, stops it at a random moment (after a random
   number of saved epochs plus a random part of an epoch, seeded by ``--seed``) with SIGKILL, SIGTERM
   or SIGINT in turn, then ``--resume``s it; a moment after the run ended counts as a missed stop
   (reported, not hidden).
3. Checks: every ``metrics.csv`` row (all columns but ``seconds``) and every tensor of ``last.ckpt`` and
   ``best.ckpt`` equal the reference's; the tuned thresholds are equal; ``polypseg evaluate`` of the test
   split gives the same summary; ``polypseg predict`` writes byte-identical masks; ``polypseg serve`` on a
   free loopback port answers ``/predict`` with the same masks as ``predict``.

The whole soak stops at ``--minutes`` (default 30): then it reports what it checked so far as
incomplete. Prints each check and the figures; JSON goes to ``benchmarks/results/soak-<time>.json``.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from polypseg.atomic import atomic_write_text
from polypseg.device import cpu_kind

RESULTS = Path(__file__).resolve().parent / "results"
SIGNALS = (signal.SIGKILL, signal.SIGTERM, signal.SIGINT)


class Soak:
    """The soak's state: its folders, its deadline and the checks made so far."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.work = Path(args.work or tempfile.mkdtemp(prefix="polypseg-soak-"))
        self.deadline = time.monotonic() + args.minutes * 60
        self.checks: list[dict] = []
        self.events: list[dict] = []
        self.rng = random.Random(args.seed)

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def polypseg(self, *argv: str, timeout: float | None = None) -> subprocess.CompletedProcess:
        limit = max(1.0, min(timeout or self.left(), self.left()))
        return subprocess.run([sys.executable, "-m", "polypseg", *argv], capture_output=True, text=True,
                              timeout=limit)  # fmt: skip

    def check(self, name: str, ok: bool, detail: str = "") -> bool:
        self.checks.append({"check": name, "ok": bool(ok), "detail": detail})
        print(f"  [{'ok' if ok else 'FAIL'}] {name}{': ' + detail if detail else ''}", flush=True)
        return ok

    def train_args(self, out: Path) -> list[str]:
        a = self.args
        return ["train", "--out", str(out), "--data", a.data, "--epochs", str(a.epochs), "--size", str(a.size),
                "--batch-size", "8", "--precision", "32", "--no-progress"]  # fmt: skip


def _rows(run: Path) -> list[dict[str, str]]:
    with (run / "metrics.csv").open(newline="") as fh:
        return [{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(fh)]


def _same_tensors(a: Path, b: Path) -> tuple[bool, str]:
    import torch

    sa = torch.load(a, map_location="cpu", weights_only=True)["state_dict"]
    sb = torch.load(b, map_location="cpu", weights_only=True)["state_dict"]
    differ = [k for k in sa if k not in sb or not torch.equal(sa[k], sb[k])]
    return not differ and sa.keys() == sb.keys(), f"{len(sa)} tensors" + (f", differ: {differ[:3]}" if differ else "")


def _saved(run: Path) -> int:
    return len(_rows(run)) if (run / "metrics.csv").exists() else 0


def _holds(lock: Path, pid: str) -> bool:
    try:
        return f'"pid": {pid},' in lock.read_text()
    except OSError:
        return False


def _wait(proc: subprocess.Popen, ready) -> bool:
    """Poll until ``ready()``; False when the process ended first."""
    while not ready():
        if proc.poll() is not None:
            return False
        time.sleep(0.02)
    return True


def interrupted_run(soak: Soak, run: Path, epoch_s: float) -> None:
    """Train ``run`` with ``--kills`` stops at random moments, resuming after each, to the end.

    A stop's moment: once the process holds the run's lock (it is past start-up, inside ``fit``) and
    has saved a random number of further epochs (0 to all but one), a random delay of up to one
    epoch's time (``epoch_s``) later; so stops land in start-up, data loading, training and validation.
    """
    argv = soak.train_args(run)
    lock = run / ".lock"
    for k in range(soak.args.kills):
        saved = _saved(run)
        if saved >= soak.args.epochs - 1:
            break
        sig = SIGNALS[k % len(SIGNALS)]
        target = soak.rng.randint(saved, soak.args.epochs - 2)
        delay = soak.rng.uniform(0, epoch_s)
        started = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-m", "polypseg", *argv], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)  # fmt: skip
        pid = str(proc.pid)
        landed = _wait(proc, lambda p=pid: _holds(lock, p))  # past start-up: inside fit
        landed = landed and _wait(proc, lambda t=target: _saved(run) >= t)
        if landed:
            time.sleep(delay)
            landed = proc.poll() is None
        if landed:
            proc.send_signal(sig)
        output, _ = proc.communicate(timeout=300)  # reads the pipe while waiting: no deadlock on long output
        event = {"stop": k + 1, "signal": signal.Signals(sig).name, "after_epochs": target,
                 "delay_s": round(delay, 2), "at_s": round(time.monotonic() - started, 2), "landed": landed,
                 "exit_code": proc.returncode, "epochs_saved": _saved(run)}  # fmt: skip
        soak.events.append(event)
        print(f"  stop {k + 1}: {event}", flush=True)
        if landed and sig != signal.SIGKILL:
            soak.check(f"stop {k + 1} ({event['signal']}) exits with 128 + signal, no traceback",
                       proc.returncode == 128 + sig and "Traceback" not in output, output.strip()[-160:])  # fmt: skip
        if not landed:
            return
        resumable = (run / "checkpoints" / "last.ckpt").exists()  # the commit point, not the metrics rows
        argv = ["train", "--out", str(run), "--resume", "--no-progress"] if resumable else soak.train_args(run)
    done = soak.polypseg(*argv)
    soak.check("the last session finishes", done.returncode == 0, (done.stdout + done.stderr).strip()[-300:])


def serve_masks(soak: Soak, run: Path, images: list[Path]) -> list[bytes]:
    """The masks ``polypseg serve RUN`` on a free loopback port returns for ``images`` (PNG bytes)."""
    import httpx
    from serve_load import free_port, wait_healthy

    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "polypseg", "serve", str(run), "--host", "127.0.0.1",
                               "--port", str(port), "--precision", "32"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        if not wait_healthy(url):
            raise RuntimeError(f"polypseg serve {run} did not answer {url}/health")
        return [httpx.post(url + "/predict?output=mask", content=p.read_bytes(), timeout=60).content for p in images]
    finally:
        server.terminate()
        server.wait(30)


def compare_runs(soak: Soak, ref: Path, run: Path) -> None:
    import cv2
    import numpy as np

    soak.check("metrics.csv rows equal (all columns but seconds)", _rows(ref) == _rows(run),
               f"{len(_rows(run))} epochs")  # fmt: skip
    for name in ("last", "best"):
        ok, detail = _same_tensors(ref / "checkpoints" / f"{name}.ckpt", run / "checkpoints" / f"{name}.ckpt")
        soak.check(f"{name}.ckpt weights equal", ok, detail)
    thr = [json.loads((r / "threshold.json").read_text())["threshold"] for r in (ref, run)]
    soak.check("tuned thresholds equal", thr[0] == thr[1], f"{thr[0]:.4f}")
    summaries = []
    for r in (ref, run):
        res = soak.polypseg("evaluate", str(r), "--split", "test")
        soak.check(f"evaluate {r.name} exits 0", res.returncode == 0, res.stderr.strip()[-200:])
        summaries.append(json.loads((r / "eval" / "test" / "summary.json").read_text())["metrics"]["mean"])
    soak.check("test-split evaluation equal", summaries[0] == summaries[1], f"mDice {summaries[1]['dice']:.4f}")
    from polypseg.data.sources import discover_all

    test_ids = set(json.loads((ref / "split.json").read_text())["splits"]["test"])
    images = [s.image for s in discover_all([soak.args.data]) if s.id in test_ids][:8]
    outs = []
    for r in (ref, run):
        out = soak.work / f"pred-{r.name}"
        res = soak.polypseg("predict", str(r), *map(str, images), "--out", str(out), "--precision", "32")
        soak.check(f"predict {r.name} exits 0", res.returncode == 0, res.stderr.strip()[-200:])
        outs.append(out)
    same = all(
        (outs[0] / f"{p.stem}_mask.png").read_bytes() == (outs[1] / f"{p.stem}_mask.png").read_bytes() for p in images
    )
    soak.check("predict masks byte-identical", same, f"{len(images)} images")
    served = serve_masks(soak, run, images)
    equal = [np.array_equal(cv2.imdecode(np.frombuffer(m, np.uint8), cv2.IMREAD_GRAYSCALE),
                            cv2.imread(str(outs[1] / f"{p.stem}_mask.png"), cv2.IMREAD_GRAYSCALE))
             for m, p in zip(served, images, strict=True)]  # fmt: skip
    soak.check("serve /predict masks equal predict's", all(equal), f"{sum(equal)}/{len(images)} on loopback")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=30, help="bound on the whole soak")
    ap.add_argument("--kills", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--data", default="synthetic:n=240,size=96,seed=0")
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--seed", type=int, default=0, help="seeds the random kill moments")
    ap.add_argument("--work", help="folder for the runs (default: a new temporary folder)")
    args = ap.parse_args()
    soak = Soak(args)
    data = soak.work / "data"
    if args.data.startswith("synthetic") and not data.exists():
        opts = dict(kv.split("=") for kv in args.data.partition(":")[2].split(",") if kv)
        subprocess.run([sys.executable, "-m", "polypseg", "data", "synthetic", str(data), "--n", opts.get("n", "240"),
                        "--size", opts.get("size", "96"), "--seed", opts.get("seed", "0")], check=True)  # fmt: skip
        args.data = str(data)
    print(f"soak in {soak.work} on {cpu_kind()}; bound {args.minutes:g} min", flush=True)
    status = "complete"
    t0 = time.monotonic()
    try:
        ref, run = soak.work / "reference", soak.work / "interrupted"
        res = soak.polypseg(*soak.train_args(ref))
        reference_s = time.monotonic() - t0
        soak.check("reference run finishes", res.returncode == 0, f"{reference_s:.0f} s")
        with (ref / "metrics.csv").open(newline="") as fh:
            epoch_s = sum(float(r["seconds"]) for r in csv.DictReader(fh)) / args.epochs
        interrupted_run(soak, run, epoch_s)
        compare_runs(soak, ref, run)
    except subprocess.TimeoutExpired:
        status = f"incomplete: the {args.minutes:g}-minute bound was reached"
    elapsed = time.monotonic() - t0
    ok = all(c["ok"] for c in soak.checks) and status == "complete"
    missed = sum(not e["landed"] for e in soak.events)
    print(f"{'PASS' if ok else 'FAIL'} ({status}): {sum(c['ok'] for c in soak.checks)}/{len(soak.checks)} checks; "
          f"{len(soak.events) - missed} stops landed, {missed} missed; {elapsed / 60:.1f} min", flush=True)  # fmt: skip
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"soak-{time.strftime('%Y%m%d-%H%M%S')}.json"
    atomic_write_text(out, json.dumps({"cpu": cpu_kind(), "args": vars(args), "status": status, "passed": ok,
                                       "elapsed_s": round(elapsed, 1), "stops": soak.events, "checks": soak.checks},
                                      indent=1))  # fmt: skip
    print(f"written: {out}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
