"""Peak resident memory of ``polypseg data check`` and of a first training epoch on a MedSegBench NPZ.

    python benchmarks/memory.py [--data ../shared/data/polypgen] [--work /tmp/polypseg-memory]
                                [--sizes 128,256] [--label after]

It writes (under ``--work``, never inside the repository) a MedSegBench-layout ``PolypGenMSBench.npz``
(``{train,val}_images`` (N, 256, 256, 3) uint8 and ``{train,val}_label`` (N, 256, 256) uint8 in {0, 1},
``np.savez_compressed``) from the PolypGen frames (984 train + 140 val), and a small one of the first
``--small`` frames of each split. Then it runs each command in its own subprocess and takes that
process's peak resident set size (``ru_maxrss`` of ``os.wait4``; the process runs no loader workers,
the recipes' ``num_workers`` being 0), while polling ``/proc/<pid>/status`` for the anonymous and the
file-backed parts at that peak:

- ``import``: ``python -c "import polypseg.cli, torch, lightning"`` (the interpreter and libraries);
- ``check``: ``python -m polypseg data check FILE.npz``;
- ``train<S>``: ``python -m polypseg train --recipe quick --epochs 1 --size S --no-progress --no-tune`` with a
  fresh ``POLYPSEG_CACHE`` (so the cache build is included), and ``train<S>-cached`` a second run that
  finds the cache built.

Every command runs on the full file and on the small one: ``peak(full) - peak(small)`` is the memory the
data costs (the model, its activations and the libraries are the same in both), given against the
decoded size of the full arrays minus the small ones' (``data_ratio``; the target is about 2 or less).
``(peak - import) / decoded`` is given too (``import_ratio``; it also counts the model and training).
Results go to ``benchmarks/results/memory-<label>-<time>.json``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from polypseg.atomic import atomic_write_text
from polypseg.data.io import read_image, read_mask
from polypseg.device import cpu_description

ROOT = Path(__file__).resolve().parents[1]
SPLITS = ("train", "val")


def build_npz(data: Path, out: Path, limit: int | None = None) -> int:
    """Write the MedSegBench NPZ of ``data`` (PolypGen split folders and ``polypgen_256_split.csv``).

    Rows follow the CSV's ``index_in_split``; ``limit`` keeps the first that many rows of each split.
    Returns the decoded size of the arrays in bytes (images + labels).
    """
    with (data / "polypgen_256_split.csv").open() as fh:
        rows = sorted(csv.DictReader(fh), key=lambda r: (r["split"], int(r["index_in_split"])))
    arrays: dict[str, np.ndarray] = {}
    for split in SPLITS:
        stems = [r["stem"] for r in rows if r["split"] == split][:limit]
        images = np.zeros((len(stems), 256, 256, 3), np.uint8)
        labels = np.zeros((len(stems), 256, 256), np.uint8)
        for i, stem in enumerate(stems):
            images[i] = read_image(data / split / "images" / f"{stem}.jpg")
            labels[i] = read_mask(data / split / "masks" / f"{stem}.png")[0]
        arrays[f"{split}_images"], arrays[f"{split}_label"] = images, labels
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f"{out.stem}.tmp.npz")
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, out)
    return sum(a.nbytes for a in arrays.values())


def decoded_bytes(npz: Path) -> int:
    """Bytes of every array of ``npz`` once decoded (from the headers; nothing is decompressed)."""
    import zipfile

    total = 0
    with zipfile.ZipFile(npz) as zf:
        for name in zf.namelist():
            with zf.open(name) as fp:
                version = np.lib.format.read_magic(fp)
                read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                shape, _, dtype = read(fp)
            total += int(np.prod(shape)) * dtype.itemsize
    return total


def _status_kib(pid: int) -> dict[str, int]:
    """``VmRSS``, ``RssAnon``, ``RssFile`` and ``RssShmem`` of ``pid`` in KiB (empty once it has exited)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    keys = ("VmRSS", "RssAnon", "RssFile", "RssShmem")
    return {k: int(line.split()[1]) for line in text.splitlines() for k in keys if line.startswith(f"{k}:")}


def measure(cmd: list[str], env: dict[str, str], log: Path) -> dict:
    """Run ``cmd``; its peak RSS (KiB, from ``wait4``), the polled parts at the peak, seconds and exit code."""
    t0 = time.perf_counter()
    with log.open("w") as fh:
        proc = subprocess.Popen(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT)
        at_peak: dict[str, int] = {}
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            now = _status_kib(proc.pid)
            if now.get("VmRSS", 0) > at_peak.get("VmRSS", 0):
                at_peak = now
            time.sleep(0.02)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return {
        "cmd": " ".join(cmd),
        "rc": proc.returncode,
        "seconds": round(time.perf_counter() - t0, 1),
        "peak_mib": round(usage.ru_maxrss / 1024, 1),  # ru_maxrss is in KiB on Linux
        "polled_at_peak_mib": {k: round(v / 1024, 1) for k, v in at_peak.items()},
        "log_tail": log.read_text()[-600:] if proc.returncode else "",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "polypgen")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "polypseg-memory")
    ap.add_argument("--sizes", default="128,256", help="training sizes (px), comma-separated")
    ap.add_argument("--small", type=int, default=16, help="rows per split of the small NPZ")
    ap.add_argument("--label", default="run", help="name part of the results file")
    ap.add_argument("--rebuild", action="store_true", help="rewrite the NPZ files even if present")
    args = ap.parse_args()
    work = args.work.resolve()
    if work == ROOT or ROOT in work.parents:
        sys.exit(f"--work {work} is inside the repository; give a folder outside it")
    files = {"full": work / "PolypGenMSBench.npz", "small": work / "small" / "PolypGenMSBench.npz"}
    for kind, path in files.items():
        if args.rebuild or not path.exists():
            print(f"writing {path} ...", flush=True)
            build_npz(args.data, path, None if kind == "full" else args.small)
    decoded = {kind: decoded_bytes(path) for kind, path in files.items()}
    py = sys.executable
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    commands: dict[str, tuple[list[str], str | None]] = {"check": (["data", "check", "{npz}"], None)}
    for size in [int(s) for s in args.sizes.split(",") if s]:
        train = ["train", "--data", "{npz}", "--out", "{out}", "--recipe", "quick", "--epochs", "1",
                 "--size", str(size), "--no-progress", "--no-tune"]  # fmt: skip
        commands[f"train{size}"] = (train, f"cache{size}")
        commands[f"train{size}-cached"] = (train, f"cache{size}")  # same cache folder: built by the run before
    results: dict = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "cpu": cpu_description(),
        "platform": platform.platform(),
        "numpy": np.__version__,
        "npz": {
            k: {"path": str(p), "file_bytes": p.stat().st_size, "decoded_bytes": decoded[k]} for k, p in files.items()
        },
        "note": "peaks are ru_maxrss of each command's own process; other work ran on the machine concurrently",
        "runs": {},
    }
    runs = results["runs"]
    stamp = time.strftime("%Y%m%d-%H%M%S")
    runs["import"] = measure([py, "-c", "import polypseg.cli, torch, lightning"], env, work / "import.log")
    print(f"import: {runs['import']['peak_mib']} MiB", flush=True)
    for name, (argv, cache) in commands.items():
        for kind, npz in files.items():
            key = f"{name}/{kind}"
            sub = work / stamp / kind
            out = sub / f"run-{name}"
            run_env = {**env, "POLYPSEG_CACHE": str(sub / cache)} if cache else env
            cmd = [py, "-m", "polypseg", *(a.format(npz=npz, out=out) for a in argv)]
            sub.mkdir(parents=True, exist_ok=True)
            runs[key] = measure(cmd, run_env, sub / f"{name}.log")
            print(f"{key}: {runs[key]['peak_mib']} MiB, {runs[key]['seconds']} s, rc {runs[key]['rc']}", flush=True)
    data_mib = (decoded["full"] - decoded["small"]) / 2**20
    full_mib = decoded["full"] / 2**20
    base = runs["import"]["peak_mib"]
    table = ["| command | peak full (MiB) | peak small (MiB) | full - small | data_ratio | import_ratio |",
             "| --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    results["summary"] = {}
    for name in commands:
        full, small = runs[f"{name}/full"]["peak_mib"], runs[f"{name}/small"]["peak_mib"]
        row = {"peak_full_mib": full, "peak_small_mib": small, "data_mib": round(full - small, 1),
               "data_ratio": round((full - small) / data_mib, 2),
               "import_ratio": round((full - base) / full_mib, 2)}  # fmt: skip
        results["summary"][name] = row
        table.append(f"| {name} | {full} | {small} | {row['data_mib']} | {row['data_ratio']} | {row['import_ratio']} |")
    print(f"\nCPU: {results['cpu']}; decoded {full_mib:.1f} MiB (full - small {data_mib:.1f}); import {base} MiB")
    print("\n".join(table))
    out = ROOT / "benchmarks" / "results" / f"memory-{args.label}-{stamp}.json"
    atomic_write_text(out, json.dumps(results, indent=1))
    print(f"written {out}")


if __name__ == "__main__":
    main()
