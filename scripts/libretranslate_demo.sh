#!/usr/bin/env bash
# LibreTranslate serving an nmt model offline: package it for Argos, install it into a
# temporary Argos home, start LibreTranslate on 127.0.0.1 with only that package, translate
# through its API (POST /translate) and screenshot its web page translating a sentence.
#
# Usage: scripts/libretranslate_demo.sh [MODEL] [SCREENSHOT]
#   MODEL       run folder, checkpoint or CTranslate2 export, en->de
#               (default models/release/multi30k-en-de-student)
#   SCREENSHOT  PNG to write (default docs/libretranslate.png); needs /usr/bin/chromium
#               (apt-get install -y chromium); skipped with a note when it is missing
#
# Needs the project's venv (.venv, with nmt) and makes .venv-libretranslate on first use:
# LibreTranslate 1.9.6 pins numpy<2 and ships its own fork of the argostranslate module
# (argos-translate-lt 1.12.1), so it cannot share nmt's venv.
#
# Offline: LibreTranslate's start-up (libretranslate/init.py:18-74) updates the package
# index and downloads packages and MiniSBD models whenever fewer than 2 packages are
# installed. Here the index is a local file (ARGOS_PACKAGE_INDEX=file://...: Argos reads it
# with urllib, argostranslate/package.py:357-367) listing only our installed package, so
# nothing is downloaded; MiniSBD's cache gets a copy of the package's own splitter for en and
# de, which is what that start-up asks MiniSBD for (init.py:73-74); translations use the
# splitter inside the package (argostranslate/sbd.py:95-105). The server runs under
# scripts/libretranslate_offline.py, which refuses any connection outside loopback and says
# so on stderr: the script fails if the server's log has such a line.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-models/release/multi30k-en-de-student}
SHOT=${2:-docs/libretranslate.png}
TEXT=${TEXT:-"A man in a blue shirt is riding a bike down the street. Two dogs play in the snow."}
LT=.venv-libretranslate
NMT=.venv/bin

if [ ! -x "$LT/bin/libretranslate" ]; then
    python3 -m venv "$LT"
    "$LT/bin/python" -m pip install --quiet "libretranslate==1.9.6"
fi

TMP=$(mktemp -d)
SERVER=
cleanup() {
    [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null && wait "$SERVER" 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT

"$NMT/nmt-export" "$MODEL" -o "$TMP/en-de.argosmodel" --format argos --from en --to de

# Every folder Argos and MiniSBD use, in $TMP (nothing in ~).
export XDG_DATA_HOME=$TMP/data XDG_CONFIG_HOME=$TMP/config XDG_CACHE_HOME=$TMP/cache
export ARGOS_PACKAGES_DIR=$TMP/data/argos-translate/packages
export ARGOS_PACKAGE_INDEX=file://$TMP/index/
mkdir -p "$TMP/index"
"$LT/bin/python" - "$TMP" <<'EOF'
import json, shutil, sys
from pathlib import Path

from argostranslate import package, settings

tmp = Path(sys.argv[1])
package.install_from_path(tmp / "en-de.argosmodel")
(pkg,) = package.get_installed_packages()
metadata = json.loads((pkg.package_path / "metadata.json").read_text())
(tmp / "index" / "index.json").write_text(json.dumps([metadata]))
(splitter,) = (pkg.package_path / "minisbd").glob("*.onnx")
cache = settings.data_dir / "minisbd"
cache.mkdir(parents=True, exist_ok=True)
for lang in (pkg.from_code, pkg.to_code):
    shutil.copyfile(splitter, cache / f"{lang}.onnx")
print(f"installed {pkg} from {tmp / 'en-de.argosmodel'} into {pkg.package_path}")
EOF

PORT=$("$LT/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$LT/bin/python" scripts/libretranslate_offline.py --host 127.0.0.1 --port "$PORT" \
    --load-only en,de --disable-files-translation --threads 1 \
    --frontend-language-source en --frontend-language-target de >"$TMP/server.log" 2>&1 &
SERVER=$!
URL=http://127.0.0.1:$PORT
for _ in $(seq 120); do
    curl -sf "$URL/languages" >/dev/null 2>&1 && break
    kill -0 "$SERVER" 2>/dev/null || { cat "$TMP/server.log" >&2; exit 1; }
    sleep 1
done
echo "LibreTranslate at $URL, languages: $(curl -sf "$URL/languages")"
echo "its start-up, from the local index:"
grep -E "Updating|Found|Keep|Downloading|Loaded|Cannot" "$TMP/server.log" | sed 's/^/  /' || true

BODY=$("$LT/bin/python" -c 'import json, sys; print(json.dumps({"q": sys.argv[1], "source": "en", "target": "de", "format": "text"}))' "$TEXT")
RESPONSE=$(curl -sf -X POST "$URL/translate" -H "Content-Type: application/json" -d "$BODY")
echo "POST /translate: $TEXT"
echo "  -> $RESPONSE"
# nmt's own translation (CTranslate2 backend, the package's model/) of the sentences the
# package's splitter finds, under Argos's decoding settings
EXPECTED=$("$NMT/python" - "$ARGOS_PACKAGES_DIR" "$TEXT" <<'EOF'
import sys
from pathlib import Path

from minisbd import SBDetect

from nmt.export.argos import NMT_DECODING
from nmt.translate import load

(package,) = Path(sys.argv[1]).iterdir()
(splitter,) = (package / "minisbd").glob("*.onnx")
sentences = SBDetect(str(splitter), use_gpu=False).sentences(sys.argv[2])
translator = load(package / "model", compute_type="auto")
print(" ".join(translator.translate(sentences, **NMT_DECODING)))
EOF
)
echo "  nmt (same sentences, same settings): $EXPECTED"
GOT=$("$LT/bin/python" -c 'import json, sys; print(json.loads(sys.argv[1])["translatedText"])' "$RESPONSE")
[ "$GOT" = "$EXPECTED" ] && echo "  identical" || echo "  DIFFERENT"

if [ -x /usr/bin/chromium ]; then
    QUERY=$("$LT/bin/python" -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1]))' "$TEXT")
    mkdir -p "$(dirname "$SHOT")"
    /usr/bin/chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
        --disable-background-networking --disable-component-update --disable-sync \
        --user-data-dir="$TMP/chromium" --window-size=1280,900 --hide-scrollbars \
        --virtual-time-budget=20000 --screenshot="$SHOT" \
        "$URL/?source=en&target=de&q=$QUERY" 2>"$TMP/chromium.log" >/dev/null
    echo "screenshot: $SHOT"
else
    echo "no /usr/bin/chromium (apt-get install -y chromium): no screenshot"
fi

if grep -q "nmt-offline: refused" "$TMP/server.log"; then
    grep "nmt-offline: refused" "$TMP/server.log" >&2
    echo "LibreTranslate tried to reach the network (lines above)" >&2
    exit 1
fi
echo "server log: no network access attempted"
[ "$GOT" = "$EXPECTED" ]
