#!/usr/bin/env bash
# Set nmt up in the active virtual environment: what the README's quick start runs and what
# CI (.ci/run) runs, the same lines, so that a green CI means a newcomer's set-up passes.
#
#   python3 -m venv .venv && source .venv/bin/activate && scripts/setup.sh
#
# Installs torch's CPU wheel (the exact pin: a loose spec downloads multi-GB CUDA builds),
# nmt in editable mode with its `dev` (tests, ruff) and `argos` (Argos Translate packages and
# their tests), `serve` (nmt-serve) and `convert` (Hugging Face models as teachers, and their
# tests) extras, TCMalloc, the allocator nmt-train preloads
# when present (training ~1.1x faster in float32 and ~1.6x in bf16 on 2 cores:
# docs/training.md), and Chromium for the server page's browser test. The last two are
# system packages: installed with apt when this runs as root, else the command is printed.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! python -c 'import sys; sys.exit(sys.prefix == sys.base_prefix)'; then
    echo "error: activate a virtual environment first: python3 -m venv .venv && source .venv/bin/activate" >&2
    exit 2
fi
python -m pip install --quiet --upgrade pip
python -m pip install --quiet "torch==2.13.0"
python -m pip install --quiet -e ".[dev,argos,serve,convert]"

# System packages, with apt when root, else the command to run: TCMalloc (faster training)
# and Debian's Chromium (the headless browser of nmt-serve's page test, which skips without).
apt_install() {  # PACKAGE WHAT
    if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
        apt-get install -y -q "$1" >/dev/null 2>&1 \
            || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q "$1" >/dev/null 2>&1; } \
            || echo "note: $1 not installed ($2)"
    else
        echo "note: for $2: sudo apt-get install $1"
    fi
}
if python -c 'from nmt.allocator import find_tcmalloc; import sys; sys.exit(not find_tcmalloc())'; then
    echo "TCMalloc: installed (nmt-train runs under it)"
else
    apt_install libtcmalloc-minimal4 "the fastest training (until then nmt-train runs under mimalloc, from pip)"
fi
if ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null; then
    apt_install chromium "the browser test of nmt-serve's page"
fi
python -c 'import nmt, torch; print(f"nmt {nmt.__version__} set up (torch {torch.__version__})")'
