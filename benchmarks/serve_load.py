"""Load test of nmt-serve: closed-loop clients against a server with batching across requests
and with it off (`--no-batching`: each batch holds one request's sentences), same model,
threads and decoding.

Each client sends test-set sentences, 1-5 per request (LibreTranslate's POST /translate),
waits for the answer and sends the next, for `--seconds` at each concurrency. Reported per
mode and concurrency: requests/s, sentences/s, latency p50/p90/p99, errors; written as
`results.json` and `README.md` under `-o` with the hardware and settings.

    python benchmarks/serve_load.py --seconds 15 -o benchmarks/results/serve
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODES = {"batching": [], "no batching": ["--no-batching"]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(args: argparse.Namespace, extra: list[str]) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [
        sys.executable, "-m", "nmt", "serve", "-m", f"en-de={args.model}", "--port", str(port),
        "--threads", str(args.threads), "--workers", str(args.workers), "--beam", str(args.beam),
        "--compute-type", args.compute_type, "--queue", "1000", *extra,
    ]  # fmt: skip
    process = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/health", timeout=2):
                return process, url
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit("the server did not start")


def post(url: str, text: str) -> bool:
    body = json.dumps({"q": text, "source": "en", "target": "de"}).encode()
    request = urllib.request.Request(
        url + "/translate", data=body, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as r:
            return r.status == 200 and "translatedText" in json.loads(r.read())
    except (urllib.error.URLError, OSError, ValueError):
        return False


def load(url: str, lines: list[str], clients: int, seconds: float, seed: int) -> dict:
    """`clients` closed-loop clients for `seconds`: throughput and latency."""
    stop = time.monotonic() + seconds
    records: list[tuple[float, int, bool]] = []
    lock = threading.Lock()

    def client(k: int) -> None:
        rng = random.Random(seed * 1000 + k)
        while time.monotonic() < stop:
            sentences = rng.sample(lines, rng.randint(1, 5))
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
    ok = sorted(latency for latency, _, good in records if good)
    q = statistics.quantiles(ok, n=100) if len(ok) >= 2 else [float("nan")] * 99
    return {
        "clients": clients,
        "seconds": round(wall, 2),
        "requests": len(records),
        "errors": sum(not good for _, _, good in records),
        "requests_per_s": round(len(ok) / wall, 2),
        "sentences_per_s": round(sum(n for _, n, good in records if good) / wall, 2),
        "p50_ms": round(q[49] * 1000, 1),
        "p90_ms": round(q[89] * 1000, 1),
        "p99_ms": round(q[98] * 1000, 1),
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
            info["flags"] = [f for f in flags if f.startswith(("avx", "amx", "fma", "vnni"))]
    return info


def report(results: dict) -> str:
    s = results["settings"]
    lines = [
        "# nmt-serve under load",
        "",
        f"`python benchmarks/serve_load.py --seconds {s['seconds']}`: {s['model']}, "
        f"CTranslate2 {s['compute_type']}, beam {s['beam']}, {s['threads']} threads x "
        f"{s['workers']} worker, max batch {s['max_batch_tokens']} tokens, max wait "
        f"{s['max_wait_ms']} ms; closed-loop clients sending 1-5 sentences of {s['source']} "
        "per request, on the same machine as the server (the modes alternate at each "
        "concurrency; other work on the machine may have run at the same time).",
        "",
        f"CPU: {results['cpu'].get('Model name')}, {results['cpu'].get('CPU(s)')} CPUs, "
        f"flags {' '.join(results['cpu'].get('flags', []))}.",
        "",
        "| mode | clients | requests/s | sentences/s | p50 ms | p90 ms | p99 ms | errors |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for mode, rows in results["modes"].items():
        for r in rows:
            lines.append(
                f"| {mode} | {r['clients']} | {r['requests_per_s']} | {r['sentences_per_s']} | "
                f"{r['p50_ms']} | {r['p90_ms']} | {r['p99_ms']} | {r['errors']} |"
            )
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="models/release/multi30k-en-de-student")
    p.add_argument("--source", default="../shared/data/multi30k/test_2016_flickr.en")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    p.add_argument("--seconds", type=float, default=15.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--beam", type=int, default=4)
    p.add_argument("--compute-type", default="int8")
    p.add_argument("-o", "--output", default="benchmarks/results/serve")
    args = p.parse_args()
    lines = [x.strip() for x in Path(args.source).read_text(encoding="utf-8").splitlines()]
    lines = [x for x in lines if x]
    results = {
        "settings": {
            "model": args.model,
            "source": args.source,
            "seconds": args.seconds,
            "threads": args.threads,
            "workers": args.workers,
            "beam": args.beam,
            "compute_type": args.compute_type,
            "max_batch_tokens": 1024,
            "max_wait_ms": 5.0,
        },
        "cpu": cpu(),
        "modes": {},
    }
    # Both servers up at once, idle but for the one measured; the modes alternate at each
    # concurrency so that load from elsewhere on the machine falls on both alike.
    servers = {mode: start(args, extra) for mode, extra in MODES.items()}
    try:
        for _, url in servers.values():
            post(url, "Warm up.")
        for clients in args.concurrency:
            for mode, (_, url) in servers.items():
                row = load(url, lines, clients, args.seconds, seed=clients)
                results["modes"].setdefault(mode, []).append(row)
                print(mode, json.dumps(row), flush=True)
    finally:
        for process, _ in servers.values():
            process.terminate()
            process.wait(60)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "README.md").write_text(report(results))
    print(report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
