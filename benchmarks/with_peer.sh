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
# a relative path is taken from where the script was called (the script changes directory below)
case "$PEER_PYTHON" in
    /*) ;;
    */*) PEER_PYTHON="$(pwd)/$PEER_PYTHON" ;;
esac
PEER_BUILD=${PEER_BUILD:-/tmp/maskrcnn-peer-build}
mkdir -p "$PEER_BUILD"
(
    flock 9  # one copy-and-build at a time when several benchmarks start together
    # a fresh copy of the sources; the build folder and the built .so stay
    for folder in maskrcnn csrc; do
        if [ -d "$PEER_BUILD/$folder" ]; then find "$PEER_BUILD/$folder" -type f ! -name '*.so' -delete; fi
    done
    tar -C "$ROOT" --exclude='*.so' --exclude=__pycache__ -cf - maskrcnn csrc setup.py pyproject.toml \
        | tar -C "$PEER_BUILD" -xf -
    # build only when maskrcnn/_ext.py's own check (csrc digest, torch version) refuses the .so
    if ! (cd /tmp && PYTHONPATH="$PEER_BUILD" "$PEER_PYTHON" -c \
            "from maskrcnn._ext import load_ops; load_ops()" 2>/dev/null); then
        (cd "$PEER_BUILD" && MAX_JOBS=${MAX_JOBS:-2} "$PEER_PYTHON" setup.py -q build_ext --inplace >/dev/null)
    fi
) 9>"$PEER_BUILD/.lock"
cd "$ROOT"
PYTHONPATH="$PEER_BUILD" exec "$PEER_PYTHON" "$@"
