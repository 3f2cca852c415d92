"""Load test of nmt-serve against LibreTranslate: closed-loop clients against nmt-serve with
batching across requests, nmt-serve with it off (`--no-batching`: each batch holds one
request's sentences) and LibreTranslate serving the Argos package of the same model, side by
side on one machine; same CTranslate2 model, weight type, threads and decoding (Argos's: beam
4, length penalty 0.2, at most 256 tokens).

Each client sends test-set sentences, 1-5 per request (LibreTranslate's POST /translate),
waits for the answer and sends the next, for `--seconds` at each concurrency. Reported per
server and concurrency: requests/s, sentences/s, latency p50/p90/p99, errors and the server's
RSS; also a bare `ctranslate2.Translator` call's latency (one sentence, and the same 1-5
sentence requests) beside nmt-serve at one client, and a soak of nmt-serve at `--soak-clients`
for `--soak-seconds` (RSS at its start and end, failed requests). Written as `results.json`,
`README.md` and `pareto.png` (sentences/s against p90) under `-o`.

LibreTranslate runs from its own venv (`.venv-libretranslate`, made as
scripts/libretranslate_demo.sh makes it) on an Argos package made by `nmt-export --format
argos`, offline (scripts/libretranslate_offline.py, a local package index), as that script
runs it. nmt-serve runs through `nmt.serve.app` with the decoding as its default (the
`nmt-serve` command sets only the beam).

    python benchmarks/serve_load.py --seconds 30 -o benchmarks/results/serve
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LT_VENV = ROOT / ".venv-libretranslate"
LT_VERSION = "1.9.6"
# Argos's decoding (nmt.export.argos.ARGOS_DECODING) as nmt.decoding.Decoding fields.
DECODING = {"beam_size": 4, "length_penalty": 0.2, "max_len_a": 0.0, "max_len_b": 256}
NMT_SERVERS = {"nmt-serve batching": True, "nmt-serve no batching": False}
LIBRE = "LibreTranslate"

# The nmt-serve child (`python -c SERVE_CHILD SETTINGS_JSON`): nmt.serve.app with the
# decoding as its default, which the nmt-serve command takes only the beam of.
SERVE_CHILD = """
import json, sys
import uvicorn
from nmt.decoding import Decoding
from nmt.serve import Settings, app
s = json.loads(sys.argv[1])
settings = Settings(
    workers=s["workers"], threads=s["threads"], queue=1000, batching=s["batching"],
    decoding=Decoding(**s["decoding"]),
)
server = app([f"en-de={s['model']}"], settings, compute_type=s["compute_type"])
uvicorn.run(server, host="127.0.0.1", port=s["port"], log_level="warning")
"""

# scripts/libretranslate_demo.sh's installation of the package into a temporary Argos home.
LT_INSTALL = """
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
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_up(process: subprocess.Popen, url: str, log: Path | None = None) -> None:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log.read_text()[-3000:] if log and log.exists() else ""
            raise SystemExit(f"the server at {url} exited ({process.returncode}): {tail}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    process.kill()
    raise SystemExit(f"the server at {url} did not start")


def start_nmt(args: argparse.Namespace, batching: bool) -> tuple[subprocess.Popen, str]:
    port = free_port()
    settings = {
        "model": args.model, "port": port, "threads": args.threads, "workers": args.workers,
        "compute_type": args.compute_type, "batching": batching, "decoding": DECODING,
    }  # fmt: skip
    process = subprocess.Popen(
        [sys.executable, "-c", SERVE_CHILD, json.dumps(settings)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    wait_up(process, url + "/health")
    return process, url


def start_libretranslate(args: argparse.Namespace, tmp: Path) -> tuple[subprocess.Popen, str]:
    """LibreTranslate as scripts/libretranslate_demo.sh runs it (its own venv, the package in
    a temporary Argos home, a local index, offline), with the same CTranslate2 settings."""
    python = LT_VENV / "bin" / "python"
    if not (LT_VENV / "bin" / "libretranslate").exists():
        subprocess.run([sys.executable, "-m", "venv", str(LT_VENV)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", f"libretranslate=={LT_VERSION}"],
            check=True,
        )
    nmt_export = Path(sys.executable).parent / "nmt-export"
    subprocess.run(
        [str(nmt_export), args.model, "-o", str(tmp / "en-de.argosmodel"), "--format", "argos",
         "--from", "en", "--to", "de"],
        check=True, cwd=ROOT, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    env = dict(
        os.environ,
        XDG_DATA_HOME=str(tmp / "data"),
        XDG_CONFIG_HOME=str(tmp / "config"),
        XDG_CACHE_HOME=str(tmp / "cache"),
        ARGOS_PACKAGES_DIR=str(tmp / "data" / "argos-translate" / "packages"),
        ARGOS_PACKAGE_INDEX=f"file://{tmp}/index/",
        # the CTranslate2 settings of the nmt-serve runs (argostranslate/settings.py)
        ARGOS_COMPUTE_TYPE=args.compute_type,
        ARGOS_INTRA_THREADS=str(args.threads),
        ARGOS_INTER_THREADS=str(args.workers),
    )
    (tmp / "index").mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [str(python), "-", str(tmp)], input=LT_INSTALL, text=True, env=env, check=True,
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    port = free_port()
    log = tmp / "server.log"
    process = subprocess.Popen(
        [str(python), "scripts/libretranslate_offline.py", "--host", "127.0.0.1",
         "--port", str(port), "--load-only", "en,de", "--disable-files-translation",
         "--threads", str(args.lt_threads),
         "--frontend-language-source", "en", "--frontend-language-target", "de"],
        cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    wait_up(process, url + "/languages", log)
    return process, url


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its descendants, MiB."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return round(total / 1024, 1)


def post(url: str, text: str) -> bool:
    body = json.dumps({"q": text, "source": "en", "target": "de", "format": "text"}).encode()
    request = urllib.request.Request(
        url + "/translate", data=body, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as r:
            return r.status == 200 and "translatedText" in json.loads(r.read())
    except (urllib.error.URLError, OSError, ValueError):
        return False


def quantiles(values: list[float]) -> list[float]:
    values = sorted(values)
    return statistics.quantiles(values, n=100) if len(values) >= 2 else [float("nan")] * 99


def load(
    url: str, lines: list[str], clients: int, seconds: float, seed: int, most: int = 5
) -> dict:
    """`clients` closed-loop clients for `seconds`: throughput and latency."""
    stop = time.monotonic() + seconds
    records: list[tuple[float, int, bool]] = []
    lock = threading.Lock()

    def client(k: int) -> None:
        rng = random.Random(seed * 1000 + k)
        while time.monotonic() < stop:
            sentences = rng.sample(lines, rng.randint(1, most))
            start = time.perf_counter()
            ok = post(url, " ".join(sentences))
            with lock:
                records.append((time.perf_counter() - start, len(sentences), ok))

    began = time.monotonic()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - began
    q = quantiles([latency for latency, _, good in records if good])
    good = sum(ok for _, _, ok in records)
    return {
        "clients": clients,
        "sentences_per_request": f"1-{most}" if most > 1 else "1",
        "seconds": round(wall, 2),
        "requests": len(records),
        "errors": len(records) - good,
        "requests_per_s": round(good / wall, 2),
        "sentences_per_s": round(sum(n for _, n, ok in records if ok) / wall, 2),
        "p50_ms": round(q[49] * 1000, 1),
        "p90_ms": round(q[89] * 1000, 1),
        "p99_ms": round(q[98] * 1000, 1),
    }


def bare(args: argparse.Namespace, lines: list[str], calls: int) -> dict:
    """A bare `ctranslate2.Translator` in this process (tokenize, translate_batch, detokenize)
    with the servers' model, threads and decoding: latency of one sentence, and of the
    1-5 sentence requests the 1-client cells send (same random sequence), in one call."""
    import ctranslate2
    import sentencepiece

    model = ROOT / args.model
    sp = sentencepiece.SentencePieceProcessor(model_file=str(model / "spm.model"))
    translator = ctranslate2.Translator(
        str(model), device="cpu", compute_type=args.compute_type,
        intra_threads=args.threads, inter_threads=args.workers,
    )  # fmt: skip

    def call(sentences: list[str]) -> list[str]:
        pieces = [sp.encode(s, out_type=str) for s in sentences]
        results = translator.translate_batch(
            pieces, beam_size=4, length_penalty=0.2, max_decoding_length=256,
            max_batch_size=1024, batch_type="tokens",
        )  # fmt: skip
        return [sp.decode(r.hypotheses[0]) for r in results]

    call(["Warm up."])
    rng = random.Random(0)
    one = []
    for _ in range(calls):
        sentence = rng.choice(lines)
        start = time.perf_counter()
        call([sentence])
        one.append(time.perf_counter() - start)
    rng = random.Random(1 * 1000)  # the 1-client cells' client 0
    mixed = []
    for _ in range(calls):
        sentences = rng.sample(lines, rng.randint(1, 5))
        start = time.perf_counter()
        call(sentences)
        mixed.append(time.perf_counter() - start)
    q1, qm = quantiles(one), quantiles(mixed)
    return {
        "calls": calls,
        "one_sentence_p50_ms": round(q1[49] * 1000, 1),
        "one_sentence_p90_ms": round(q1[89] * 1000, 1),
        "request_mix_p50_ms": round(qm[49] * 1000, 1),
        "request_mix_p90_ms": round(qm[89] * 1000, 1),
    }


def soak(url: str, pid: int, lines: list[str], clients: int, seconds: float) -> dict:
    """`clients` clients for `seconds`, RSS sampled every 10 s; a request counts as lost when
    it gets no good answer."""
    samples: list[tuple[float, float]] = []
    done = threading.Event()
    began = time.monotonic()

    def sample() -> None:
        while not done.is_set():
            samples.append((round(time.monotonic() - began, 1), rss_mb(pid)))
            done.wait(10)

    sampler = threading.Thread(target=sample)
    sampler.start()
    row = load(url, lines, clients, seconds, seed=7)
    done.set()
    sampler.join()
    samples.append((round(time.monotonic() - began, 1), rss_mb(pid)))
    start_rss, end_rss = samples[0][1], samples[-1][1]
    return {
        **row,
        "rss_start_mb": start_rss,
        "rss_end_mb": end_rss,
        "rss_max_mb": max(r for _, r in samples),
        "rss_growth_pct": round(100 * (end_rss - start_rss) / start_rss, 1),
        "rss_samples": samples,
    }


def cpu() -> dict:
    info = {"machine": platform.machine(), "python": platform.python_version()}
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    except OSError:
        return info
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in ("Model name", "CPU(s)"):
            info[key] = value.strip()
        elif key == "Flags":
            flags = value.split()
            info["flags"] = [
                f for f in flags if f.startswith(("avx", "amx", "fma", "vnni")) or "bf16" in f
            ]
    return info


def mix(rows: list[dict], b: dict) -> str:
    """nmt-serve's 1-client p50 on 1-5 sentence requests beside a bare call on the same."""
    one = next((r for r in rows if r["clients"] == 1), None)
    if one is None:
        return ""
    over = one["p50_ms"] / b["request_mix_p50_ms"] - 1
    return (
        f"; 1-5 sentences per request: {one['p50_ms']} ms vs bare {b['request_mix_p50_ms']} "
        f"ms ({100 * over:+.1f}%)"
    )


def goals(results: dict) -> list[tuple[str, bool | None, str]]:
    """(goal, met, figures) for each goal of the issue."""
    servers, out = results["servers"], []
    batching, libre = servers.get("nmt-serve batching", []), servers.get(LIBRE, [])
    for clients in (16, 64):
        ours = next((r for r in batching if r["clients"] == clients), None)
        theirs = next((r for r in libre if r["clients"] == clients), None)
        name = f"{clients} clients: >= 5x LibreTranslate's sentences/s at a p90 no higher"
        if ours is None or theirs is None:
            out.append((name, None, "not measured"))
            continue
        ratio = ours["sentences_per_s"] / theirs["sentences_per_s"]
        met = ratio >= 5 and ours["p90_ms"] <= theirs["p90_ms"] and ours["errors"] == 0
        out.append((
            name, met,
            f"{ours['sentences_per_s']} vs {theirs['sentences_per_s']} sentences/s "
            f"({ratio:.1f}x); p90 {ours['p90_ms']} vs {theirs['p90_ms']} ms",
        ))  # fmt: skip
    one, b = results.get("one_sentence"), results.get("bare")
    name = "1 client: nmt-serve p50 within 10% of a bare translator call"
    if one and b:
        over = one["p50_ms"] / b["one_sentence_p50_ms"] - 1
        out.append((
            name, over <= 0.10,
            f"one sentence per request: {one['p50_ms']} ms vs bare {b['one_sentence_p50_ms']} "
            f"ms ({100 * over:+.1f}%)"
            + mix(results.get("servers", {}).get("nmt-serve batching", []), b),
        ))  # fmt: skip
    else:
        out.append((name, None, "not measured"))
    s = results.get("soak")
    name = "soak: 0 errors, RSS growth < 10%"
    if s:
        met = s["errors"] == 0 and s["rss_growth_pct"] < 10
        out.append((
            name, met,
            f"{s['seconds']:.0f} s at {s['clients']} clients, {s['requests']} requests, "
            f"{s['errors']} failed; RSS {s['rss_start_mb']} -> {s['rss_end_mb']} MiB "
            f"({s['rss_growth_pct']:+.1f}%, max {s['rss_max_mb']})",
        ))  # fmt: skip
    else:
        out.append((name, None, "not measured"))
    return out


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for server, rows in results["servers"].items():
        xs, ys = [r["p90_ms"] for r in rows], [r["sentences_per_s"] for r in rows]
        ax.plot(xs, ys, marker="o", label=server)
        for r in rows:
            ax.annotate(str(r["clients"]), (r["p90_ms"], r["sentences_per_s"]), fontsize=8,
                        xytext=(4, 4), textcoords="offset points")  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlabel("p90 latency (ms, log)")
    ax.set_ylabel("sentences/s")
    ax.set_title("Closed-loop load, labels: concurrent clients")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def report(results: dict) -> str:
    s, c = results["settings"], results["cpu"]
    lines = [
        "# nmt-serve under load, beside LibreTranslate",
        "",
        f"`python benchmarks/serve_load.py --seconds {s['seconds']:g} --soak-seconds "
        f"{s['soak_seconds']:g}`: {s['model']}, CTranslate2 {s['compute_type']}, "
        f"{s['threads']} threads x {s['workers']} translator in every server, decoding "
        f"{s['decoding']} (Argos's) in every server. nmt-serve: max batch "
        f"{s['max_batch_tokens']} tokens, max wait {s['max_wait_ms']} ms. LibreTranslate "
        f"{s['libretranslate']} (its own venv, the Argos package from `nmt-export --format "
        f"argos`, offline, as scripts/libretranslate_demo.sh runs it), {s['lt_threads']} HTTP "
        "threads (its default). Closed-loop clients sending 1-5 sentences of "
        f"{Path(s['source']).name} per request (POST /translate), {s['seconds']:g} s per "
        "cell, on the same machine as the servers; the servers alternate at each concurrency, "
        "all three up at once, idle but for the one measured.",
        "",
        f"CPU: {c.get('Model name')}, {c.get('CPU(s)')} CPUs, flags "
        f"{' '.join(c.get('flags', []))}.",
        "",
        "| server | clients | requests/s | sentences/s | p50 ms | p90 ms | p99 ms | errors "
        "| RSS MiB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for server, rows in results["servers"].items():
        for r in rows:
            lines.append(
                f"| {server} | {r['clients']} | {r['requests_per_s']} | {r['sentences_per_s']} "
                f"| {r['p50_ms']} | {r['p90_ms']} | {r['p99_ms']} | {r['errors']} "
                f"| {r['rss_mb']} |"
            )
    one, b = results.get("one_sentence"), results.get("bare")
    if one and b:
        lines += [
            "",
            f"One client, one sentence per request, nmt-serve batching ({one['seconds']:.0f} "
            f"s): p50 {one['p50_ms']} ms, p90 {one['p90_ms']} ms. A bare "
            f"`ctranslate2.Translator` (same model, threads, decoding; tokenizing included), "
            f"{b['calls']} calls: one sentence p50 {b['one_sentence_p50_ms']} ms (p90 "
            f"{b['one_sentence_p90_ms']}); the 1-client cells' 1-5 sentence requests in one "
            f"call p50 {b['request_mix_p50_ms']} ms (p90 {b['request_mix_p90_ms']}).",
        ]
    lines += ["", "## Goals", ""]
    for name, met, figures in goals(results):
        verdict = "NOT MEASURED" if met is None else "MET" if met else "MISSED"
        lines.append(f"- {name}: **{verdict}** ({figures})")
    lines += ["", "![sentences/s against p90](pareto.png)"]
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="models/release/multi30k-en-de-student")
    p.add_argument("--source", default="../shared/data/multi30k/test_2016_flickr.en")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16, 64])
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--one-sentence-seconds", type=float, default=20.0)
    p.add_argument("--bare-calls", type=int, default=300)
    p.add_argument("--soak-seconds", type=float, default=600.0, help="0: no soak")
    p.add_argument("--soak-clients", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--lt-threads", type=int, default=4, help="LibreTranslate's --threads")
    p.add_argument("--no-libretranslate", action="store_true")
    p.add_argument("--compute-type", default="int8")
    p.add_argument("-o", "--output", default="benchmarks/results/serve")
    args = p.parse_args()
    lines = [x.strip() for x in Path(args.source).read_text(encoding="utf-8").splitlines()]
    lines = [x for x in lines if x]
    results: dict = {
        "settings": {
            "model": args.model,
            "source": args.source,
            "seconds": args.seconds,
            "soak_seconds": args.soak_seconds,
            "threads": args.threads,
            "workers": args.workers,
            "compute_type": args.compute_type,
            "decoding": DECODING,
            "max_batch_tokens": 1024,
            "max_wait_ms": 5.0,
            "libretranslate": None if args.no_libretranslate else LT_VERSION,
            "lt_threads": args.lt_threads,
        },
        "cpu": cpu(),
        "servers": {},
    }
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="serve-load-"))
    servers: dict[str, tuple[subprocess.Popen, str]] = {}
    try:
        for name, batching in NMT_SERVERS.items():
            servers[name] = start_nmt(args, batching)
        if not args.no_libretranslate:
            servers[LIBRE] = start_libretranslate(args, tmp)
        for _, url in servers.values():
            for _ in range(3):
                post(url, "Warm up. Two dogs play in the snow.")
        results["bare"] = bare(args, lines, args.bare_calls)
        print("bare", json.dumps(results["bare"]), flush=True)
        for clients in args.concurrency:
            for name, (process, url) in servers.items():
                row = load(url, lines, clients, args.seconds, seed=clients)
                row["rss_mb"] = rss_mb(process.pid)
                results["servers"].setdefault(name, []).append(row)
                print(name, json.dumps(row), flush=True)
                (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
        if args.one_sentence_seconds:
            _, url = servers["nmt-serve batching"]
            results["one_sentence"] = load(url, lines, 1, args.one_sentence_seconds, 1, most=1)
            print("one sentence", json.dumps(results["one_sentence"]), flush=True)
        (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
        if args.soak_seconds:
            # the other servers stop first: the soak has the machine to itself
            for name in [n for n in servers if n != "nmt-serve batching"]:
                process, _ = servers.pop(name)
                process.terminate()
                process.wait(60)
            process, url = servers["nmt-serve batching"]
            results["soak"] = soak(url, process.pid, lines, args.soak_clients, args.soak_seconds)
            print("soak", json.dumps(results["soak"]), flush=True)
    finally:
        for process, _ in servers.values():
            process.terminate()
            process.wait(60)
        log = tmp / "server.log"
        if log.exists() and "nmt-offline: refused" in log.read_text():
            results["libretranslate_network"] = "tried to reach the network (refused)"
        shutil.rmtree(tmp, ignore_errors=True)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    plot(results, out / "pareto.png")
    (out / "README.md").write_text(report(results))
    print(report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
