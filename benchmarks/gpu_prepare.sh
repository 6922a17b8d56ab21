#!/usr/bin/env bash
# Prepare what benchmarks/gpu.sh needs on a lent GPU machine, here, on a machine with registry access.
#
#   bash benchmarks/gpu_prepare.sh        (after `make test` or `make demo` made the project's .venv)
#
# It uses the project's own venv (.venv/bin/python, or $PYTHON) for `pip download`; the pins below are
# the versions that venv runs, so the GPU machine runs what the tests ran.
# The GPU image has PyTorch, Lightning, OpenCV, NumPy, SciPy, scikit-image, scikit-learn, typer, rich
# and PyYAML, but reaches no registry and lacks the packages below: they travel as wheels in .whl/
# (Python 3.12, manylinux x86-64). The training data travels as a copy in .gpudata/ (PolypGen, already
# 256x256: about 29 MB; ../shared does not travel). Both folders are git-ignored; name them in the
# device tool's `carry`. Together they must stay under the tool's 64 MiB.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || { echo "$PY is missing: run 'make test' (it creates .venv) or set PYTHON"; exit 1; }
[ -d ../shared/data/polypgen ] || { echo "../shared/data/polypgen is missing: the benchmark trains on it"; exit 1; }
rm -rf .whl && mkdir -p .whl
for pkg in albumentations==2.0.8 albucore==0.0.24 simsimd==6.5.16 stringzilla==5.3.2 pysodmetrics==1.6.2 \
    pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 monai==1.6.1; do
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
    -d .whl "$pkg"
done
rm -rf .gpudata && mkdir -p .gpudata
cp -r ../shared/data/polypgen .gpudata/polypgen
du -sh .whl .gpudata
