#!/bin/sh
# Run a benchmark script of this checkout in the torchvision environment (.venv-peer), with our
# compiled ops built against that environment's torch:
#
#     benchmarks/with_peer.sh benchmarks/model.py --models mask --batch 1
#
# .venv-peer has its own torch build (and an installed, possibly older, copy of maskrcnn), so the
# ops of the .venv build do not load there. This copies the package and csrc/ of the checkout into
# $PEER_BUILD (default /tmp/maskrcnn-peer-build), builds maskrcnn._C there in place (incremental:
# only after a change under csrc/), and runs the script with that copy first on PYTHONPATH.
# PEER_PYTHON picks the interpreter (default: .venv-peer/bin/python of the checkout).
set -e
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PEER_PYTHON=${PEER_PYTHON:-$ROOT/.venv-peer/bin/python}
PEER_BUILD=${PEER_BUILD:-/tmp/maskrcnn-peer-build}
mkdir -p "$PEER_BUILD"
# a fresh copy of the sources; the build folder and the built .so stay
for folder in maskrcnn csrc; do
    [ -d "$PEER_BUILD/$folder" ] && find "$PEER_BUILD/$folder" -type f ! -name '*.so' -delete
done
tar -C "$ROOT" --exclude='*.so' --exclude=__pycache__ -cf - maskrcnn csrc setup.py pyproject.toml \
    | tar -C "$PEER_BUILD" -xf -
(cd "$PEER_BUILD" && MAX_JOBS=${MAX_JOBS:-2} "$PEER_PYTHON" setup.py -q build_ext --inplace >/dev/null)
cd "$ROOT"
PYTHONPATH="$PEER_BUILD" exec "$PEER_PYTHON" "$@"
