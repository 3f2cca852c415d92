"""nmt-serve over real HTTP: a uvicorn server on 127.0.0.1 (in a thread, or a subprocess for
SIGTERM) over a random toy CTranslate2 export, spoken to with urllib and the published
LibreTranslate client. Batching must not change a translation: what concurrent requests get
back is what `nmt.translate.load(model).translate(lines, decoding)` gives for their lines."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import importlib.util
import json
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("starlette", reason="nmt-serve needs the serve extra (starlette)")
pytest.importorskip("uvicorn", reason="nmt-serve needs the serve extra (uvicorn)")
pytest.importorskip("prometheus_client", reason="nmt-serve needs the serve extra")
pytest.importorskip("ctranslate2", reason="the toy export is a CTranslate2 one")

import uvicorn  # noqa: E402

from nmt.decoding import Decoding  # noqa: E402
from nmt.serve import Settings, app  # noqa: E402
from nmt.serve.sentences import join, split, split_sentences  # noqa: E402
from nmt.translate import load  # noqa: E402

from .toys import WORDS, toy_exports  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


# --- a server ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Running:
    """A uvicorn server in a thread of this process, at `url`."""

    def __init__(self, asgi) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(asgi, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Running:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "server did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(30)


def call(url: str, path: str, body: object = None, raw: bytes | None = None, headers=None):
    """(status, decoded JSON or text, headers) of a GET (no body) or POST."""
    data = raw if raw is not None else None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url + path, data=data, headers=headers or {})
    if data is not None and raw is None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=60) as r:
            status, text, got = r.status, r.read().decode(), r.headers
    except urllib.error.HTTPError as e:
        status, text, got = e.code, e.read().decode(), e.headers
    try:
        return status, json.loads(text), got
    except ValueError:
        return status, text, got


@pytest.fixture(scope="module")
def ct2_model(toy_tokenizer, tmp_path_factory) -> Path:
    return toy_exports(tmp_path_factory.mktemp("serve"), toy_tokenizer)["ctranslate2"]


@pytest.fixture(scope="module")
def server(ct2_model):
    settings = Settings(max_wait_ms=30, workers=2, threads=1, max_chars=2000, queue=500)
    with Running(app([f"en-de={ct2_model}"], settings, exact_length_limits=True)) as running:
        yield running


def sentences_of(rng: random.Random, n: int) -> list[str]:
    """Sentences that the splitter finds again when joined: capitalised, ending with "."."""
    return [" ".join(rng.choices(WORDS, k=rng.randint(1, 4))).capitalize() + "." for _ in range(n)]


# --- splitting -----------------------------------------------------------------------------


SPLIT_CASES = [
    "A man sleeps. A dog runs!",
    'He said "stop." Then he left?',
    "e.g. the dog. approx. five men… Done",
    "No end here",
    "Two  spaces.  Next one.",
    "Wait... what? (Yes.) Fine.",
    "",
]


def test_sentences_split_as_the_argos_splitter_does():
    """The Python rules and the ONNX graph the Argos export ships agree, sentence for
    sentence (a sentence end is where the graph scores class 2)."""
    ort = pytest.importorskip("onnxruntime")
    np = pytest.importorskip("numpy")
    from nmt.export import sbd

    session = ort.InferenceSession(sbd.build_model())
    units = {u: i for i, u in enumerate(sbd.vocabulary())}
    for text in SPLIT_CASES[:-1]:
        ids = np.array([[units.get(c, 1) for c in text]], dtype=np.int64)
        space = np.array([[[float(c.isspace())] for c in text]], dtype=np.float32)
        scores = session.run(None, {"units": ids, "features": space})[0]
        ends = [t for t, k in enumerate(scores[0].argmax(-1)) if k == 2] + [len(text) - 1]
        expected, start = [], 0
        for end in ends:
            expected.append(text[start : end + 1].strip())
            start = end + 1
        assert split_sentences(text) == [s for s in expected if s], text


def test_split_and_join_keep_lines():
    found, counts = split("One. Two.\n\nThree")
    assert found == ["One.", "Two.", "Three"] and counts == [2, 0, 1]
    assert join(["1", "2", "3"], counts) == "1 2\n\n3"


# --- the APIs ------------------------------------------------------------------------------


def test_concurrent_requests_get_what_translate_gives(server, ct2_model):
    """80 requests of 1-5 sentences each, 16 at a time: each gets its sentences'
    translations, in order, as one `translate` call of all of them returns them; and the
    server did batch sentences of several requests together. Beam search with CTranslate2's
    exact length limits (the server's and the direct call's), whose output does not depend
    on a sentence's batch: with shared limits it does where a limit binds, as a random
    model's loops make it do here."""
    rng = random.Random(1)
    requests = [sentences_of(rng, rng.randint(1, 5)) for _ in range(80)]
    translator = load(ct2_model, threads=1, exact_length_limits=True)
    flat = [s for r in requests for s in r]
    direct = translator.translate(flat, Decoding())
    expected, i = [], 0
    for r in requests:
        expected.append(" ".join(direct[i : i + len(r)]))
        i += len(r)

    def ask(sentences: list[str]):
        body = {"q": " ".join(sentences), "source": "en", "target": "de"}
        return call(server.url, "/translate", body)

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(ask, requests))
    assert [status for status, _, _ in answers] == [200] * len(requests)
    assert [a["translatedText"] for _, a, _ in answers] == expected

    _, text, _ = call(server.url, "/metrics")
    count = float(re.search(r"nmt_serve_batch_sentences_count (\S+)", text).group(1))
    total = float(re.search(r"nmt_serve_batch_sentences_sum (\S+)", text).group(1))
    assert total >= len(flat) and count < len(requests), "no batch held two requests"


def test_native_api_decoding_and_timing(server, ct2_model):
    lines = ["a dog runs.", "two men play in the street.", ""]
    decoding = Decoding(beam_size=1, length_penalty=0.5, no_repeat_ngram_size=3)
    status, answer, _ = call(
        server.url,
        "/v1/translate",
        {
            "text": lines,
            "source": "en",
            "target": "de",
            "decoding": {"beam_size": 1, "length_penalty": 0.5, "no_repeat_ngram_size": 3},
        },
    )
    assert status == 200, answer
    assert answer["translations"] == load(ct2_model, threads=1).translate(lines, decoding)
    assert answer["decoding"]["beam_size"] == 1
    assert set(answer["timing"]) == {"queue_ms", "translate_ms", "total_ms"}
    assert answer["timing"]["total_ms"] >= answer["timing"]["translate_ms"] > 0


def test_native_nbest_and_libretranslate_alternatives(server, ct2_model):
    lines = ["a dog runs.", "Two men play in the street. A woman sings."]
    translator = load(ct2_model, threads=1, exact_length_limits=True)  # as the server
    pair = ["Two men play in the street.", "A woman sings."]
    body = {"text": lines, "source": "en", "target": "de", "n_best": 3}
    status, answer, _ = call(server.url, "/v1/translate", {**body, "decoding": {"beam_size": 4}})
    assert status == 200, answer
    decoding = Decoding(beam_size=4)
    assert answer["translations"] == [
        alternatives[0]["translation"] for alternatives in answer["nbest"]
    ]
    assert answer["translations"][0] == translator.translate(lines[:1], decoding)[0]
    expected = translator.translate_nbest(["a dog runs."], 3, decoding)[0]
    assert answer["nbest"][0] == [{"translation": h.text, "score": h.score} for h in expected]
    two = translator.translate_nbest(pair, 3, decoding)
    assert [a["translation"] for a in answer["nbest"][1]] == [
        f"{two[0][i].text} {two[1][i].text}" for i in range(3)
    ]  # the i-th joins each sentence's i-th, as Argos Translate does
    status, answer, _ = call(server.url, "/v1/translate", {**body, "n_best": 5})
    assert status == 400 and "n_best: must be between 1 and the beam size 4" in answer["error"]

    status, libre, _ = call(
        server.url,
        "/translate",
        {"q": "a dog runs.", "source": "en", "target": "de", "alternatives": 5},
    )  # a beam of 6, as Argos Translate widens it
    assert status == 200, libre
    six = translator.translate_nbest(["a dog runs."], 6, Decoding(beam_size=6))[0]
    assert [libre["translatedText"], *libre["alternatives"]] == [h.text for h in six]
    status, libre, _ = call(
        server.url, "/translate", {"q": "a", "source": "en", "target": "de", "alternatives": -1}
    )
    assert status == 400 and "alternatives must be an integer" in libre["error"]


def test_libretranslate_form_and_list(server):
    body = b"q=a+dog+runs.&source=en&target=de"
    status, answer, _ = call(server.url, "/translate", raw=body)
    assert status == 200 and isinstance(answer["translatedText"], str)
    status, many, _ = call(
        server.url, "/translate", {"q": ["a dog runs.", "a cat."], "source": "en", "target": "de"}
    )
    assert status == 200 and many["translatedText"][0] == answer["translatedText"]
    status, auto, _ = call(
        server.url, "/translate", {"q": "a dog runs.", "source": "auto", "target": "de"}
    )
    assert auto["translatedText"] == answer["translatedText"]
    assert auto["detectedLanguage"]["language"] == "en"


def test_the_published_libretranslate_client(server):
    libre = pytest.importorskip("libretranslatepy", reason="pip install libretranslatepy")
    client = libre.LibreTranslateAPI(server.url + "/")
    assert client.languages() == [{"code": "en", "name": "English", "targets": ["de"]}]
    _, direct, _ = call(
        server.url, "/translate", {"q": "a girl sings.", "source": "en", "target": "de"}
    )
    assert client.translate("a girl sings.", "en", "de") == direct["translatedText"]


def test_health_openapi_metrics_page(server):
    status, health, _ = call(server.url, "/health")
    assert status == 200 and health["ready"] and health["models"][0]["name"] == "en-de"
    status, spec, _ = call(server.url, "/openapi.json")
    assert status == 200 and {"/translate", "/v1/translate", "/languages"} <= set(spec["paths"])
    decoding = spec["paths"]["/v1/translate"]["post"]["requestBody"]["content"]
    fields = decoding["application/json"]["schema"]["properties"]["decoding"]["properties"]
    assert set(fields) == {f.name for f in dataclasses.fields(Decoding)}
    status, text, _ = call(server.url, "/metrics")
    assert status == 200 and "nmt_serve_requests_total" in text
    assert "nmt_serve_queue_sentences" in text and "nmt_serve_tokens_per_second" in text
    status, page, _ = call(server.url, "/")
    assert status == 200 and 'id="go"' in page and "<script" in page and "http" not in page


@pytest.mark.parametrize(
    "body, status, words",
    [
        (b"{bad json", 400, "malformed JSON"),
        (b"[1, 2]", 400, "JSON object"),
        (b'{"q": "a", "source": "en", "target": "fr"}', 400, "not supported"),
        (b'{"q": "a", "source": "en"}', 400, "missing target"),
        (b'{"source": "en", "target": "de"}', 400, "missing q"),
        (b'{"q": "a", "source": "en", "target": "de", "format": "html"}', 400, "format"),
        (b'{"q": "' + b"a" * 2001 + b'", "source": "en", "target": "de"}', 413, "characters"),
        (b'{"q": "' + b" " * 100_000 + b'", "source": "en", "target": "de"}', 413, "body"),
    ],
)
def test_libretranslate_errors(server, body, status, words):
    got, answer, _ = call(
        server.url, "/translate", raw=body, headers={"Content-Type": "application/json"}
    )
    assert got == status and words in answer["error"] and "\n" not in answer["error"]


@pytest.mark.parametrize(
    "body, words",
    [
        ({"text": "a", "source": "en", "target": "de", "decoding": {"beam_size": 0}}, "beam_size"),
        ({"text": "a", "source": "en", "target": "de", "decoding": {"beam": 2}}, "beam"),
        ({"text": "a", "source": "en", "target": "de", "extra": 1}, "extra"),
        ({"text": 3, "source": "en", "target": "de"}, "missing text"),
    ],
)
def test_native_errors(server, body, words):
    status, answer, _ = call(server.url, "/v1/translate", body)
    assert status == 400 and words in answer["error"], answer


# --- faults --------------------------------------------------------------------------------


class Held:
    """A translator that waits for `release` before answering, records what it was given
    and fails on a line holding "boom"."""

    backend = "test"
    source = "held"

    def __init__(self, tokenizer) -> None:
        self.tokenizer, self.release, self.seen = tokenizer, threading.Event(), []
        self.entered = threading.Event()

    def translate(self, lines, decoding=None, **options):
        self.seen.extend(lines)
        self.entered.set()
        assert self.release.wait(30)
        if any("boom" in line for line in lines):
            raise RuntimeError("boom")
        return [line.upper() for line in lines]


def background(url: str, path: str, body: object) -> concurrent.futures.Future:
    return concurrent.futures.ThreadPoolExecutor(1).submit(call, url, path, body)


class Recorder:
    """A translator that records each batch it is given."""

    backend, source = "test", "recorder"

    def __init__(self, tokenizer) -> None:
        self.tokenizer, self.batches = tokenizer, []

    def translate(self, lines, decoding=None, **options):
        self.batches.append(list(lines))
        return [line.upper() for line in lines]


@pytest.mark.parametrize("batching", [True, False])
def test_batching_across_requests_or_not(toy_tokenizer, batching):
    """Eight requests of two sentences at once, held 300 ms for company: batched together,
    or (batching off, the benchmark's baseline) each request in batches of its own."""
    recorder = Recorder(toy_tokenizer)
    settings = Settings(max_wait_ms=300, batching=batching)
    bodies = [{"q": f"Req{i} one. Req{i} two.", "source": "en", "target": "de"} for i in range(8)]
    with (
        Running(app({"en-de": recorder}, settings)) as running,
        concurrent.futures.ThreadPoolExecutor(8) as pool,
    ):
        answers = list(pool.map(lambda b: call(running.url, "/translate", b), bodies))
    assert [a["translatedText"] for _, a, _ in answers] == [b["q"].upper() for b in bodies]
    owners = [{line.split()[0] for line in batch} for batch in recorder.batches]
    if batching:
        assert max(len(o) for o in owners) > 1, recorder.batches
    else:
        assert all(len(o) == 1 for o in owners), recorder.batches


def test_full_queue_is_503_with_retry_after(toy_tokenizer):
    held = Held(toy_tokenizer)
    settings = Settings(queue=1, max_wait_ms=0)
    with Running(app({"en-de": held}, settings)) as running:
        first = background(running.url, "/translate", {"q": "a.", "source": "en", "target": "de"})
        assert held.entered.wait(10)
        status, answer, headers = call(
            running.url, "/translate", {"q": "b.", "source": "en", "target": "de"}
        )
        assert status == 503 and "busy" in answer["error"] and headers["Retry-After"] == "1"
        held.release.set()
        assert first.result(30)[:2] == (200, {"translatedText": "A."})


def test_a_disconnected_client_is_dropped_alone(toy_tokenizer):
    """While the one worker is busy, a second request waits in the queue; its client hangs
    up; its sentence never reaches the translator, and the first request is answered."""
    held = Held(toy_tokenizer)
    with Running(app({"en-de": held}, Settings(max_wait_ms=0, workers=1))) as running:
        first = background(running.url, "/translate", {"q": "a.", "source": "en", "target": "de"})
        assert held.entered.wait(10)
        body = json.dumps({"q": "gone.", "source": "en", "target": "de"}).encode()
        with socket.create_connection(("127.0.0.1", running.port)) as s:
            s.sendall(
                b"POST /translate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            deadline = time.monotonic() + 10
            while call(running.url, "/health")[1]["models"][0]["queued_sentences"] != 1:
                assert time.monotonic() < deadline
                time.sleep(0.02)
        deadline = time.monotonic() + 10
        while call(running.url, "/health")[1]["models"][0]["queued_sentences"] != 0:
            assert time.monotonic() < deadline, "the gone client's sentence stayed queued"
            time.sleep(0.02)
        held.release.set()
        assert first.result(30)[:2] == (200, {"translatedText": "A."})
        assert (
            call(running.url, "/translate", {"q": "c.", "source": "en", "target": "de"})[0] == 200
        )
        assert "gone." not in held.seen


def test_a_failing_batch_fails_only_its_requests(toy_tokenizer):
    held = Held(toy_tokenizer)
    held.release.set()
    with Running(app({"en-de": held}, Settings(max_wait_ms=0))) as running:
        status, answer, _ = call(
            running.url, "/translate", {"q": "boom.", "source": "en", "target": "de"}
        )
        assert status == 500 and "boom" in answer["error"]
        status, answer, _ = call(
            running.url, "/translate", {"q": "fine.", "source": "en", "target": "de"}
        )
        assert (status, answer) == (200, {"translatedText": "FINE."})


def test_a_slow_request_times_out_with_504(toy_tokenizer):
    held = Held(toy_tokenizer)
    with Running(app({"en-de": held}, Settings(timeout_s=0.3, max_wait_ms=0))) as running:
        status, answer, _ = call(
            running.url, "/v1/translate", {"text": "a.", "source": "en", "target": "de"}
        )
        held.release.set()
        assert status == 504 and "within" in answer["error"]


def test_sigterm_drains_accepted_requests(ct2_model):
    """A subprocess server holding six requests in its queue (max-wait 2 s) gets SIGTERM:
    every one is answered, then it exits (uvicorn ends with the signal it caught raised
    again: status 0 or -SIGTERM)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [sys.executable, "-m", "nmt", "serve", "-m", f"en-de={ct2_model}", "--port", str(port),
         "--threads", "1", "--max-wait-ms", "2000"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None and time.monotonic() < deadline, "no server"
            try:
                if call(url, "/health")[0] == 200:
                    break
            except OSError:
                time.sleep(0.1)
        bodies = [{"q": f"{w}.", "source": "en", "target": "de"} for w in WORDS[:6]]
        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            answers = [pool.submit(call, url, "/translate", b) for b in bodies]
            deadline = time.monotonic() + 10
            while call(url, "/health")[1]["models"][0]["requests_in_progress"] < 6:
                assert time.monotonic() < deadline
                time.sleep(0.02)
            process.send_signal(signal.SIGTERM)
            results = [a.result(60) for a in answers]
        assert [r[0] for r in results] == [200] * 6
        assert process.wait(60) in (0, -signal.SIGTERM)
    finally:
        if process.poll() is None:
            process.kill()
        output = process.communicate()[0]
    assert "draining" in output


# --- the web page in a real browser ----------------------------------------------------------


def chromium() -> str | None:
    return next(
        (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p),
        None,
    )


@pytest.mark.skipif(chromium() is None, reason="no chromium or chromium-browser on PATH")
def test_the_page_translates_in_headless_chromium(server, tmp_path):
    """The page, given `?q=`, fills the box, presses the button and shows the translation:
    what /translate gives for the same text, and the timing."""
    _, direct, _ = call(
        server.url, "/translate", {"q": "a dog runs.", "source": "en", "target": "de"}
    )
    page = f"{server.url}/?q=a+dog+runs.&pair=en-de"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path}"]
    done = subprocess.run(
        [chromium(), *flags, "--virtual-time-budget=10000", "--dump-dom", page],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    out = re.search(r'<output id="out"[^>]*>(.*?)</output>', done.stdout, re.S)
    assert out, done.stderr[-2000:]
    assert out.group(1) == direct["translatedText"].replace("&", "&amp;")
    assert re.search(r'<span id="timing">[\d.]+ ms \(queued', done.stdout)


# --- the command -----------------------------------------------------------------------------


def test_the_command_defaults_are_the_settings():
    from nmt.cli.serve import DEFAULTS, build_parser

    assert {k: getattr(Settings(), k) for k in DEFAULTS} == DEFAULTS
    args = build_parser().parse_args(["-m", "x"])
    assert (args.max_batch_tokens, args.queue, args.beam) == (
        Settings.max_batch_tokens,
        Settings.queue,
        Decoding.beam_size,
    )


def test_importing_the_cli_imports_no_server():
    server = {"starlette", "uvicorn", "prometheus_client"}
    code = (
        f"import sys, nmt.cli; print(sorted({{m.split('.')[0] for m in sys.modules}} & {server}))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_a_model_without_languages_must_be_named(ct2_model):
    from nmt.config import ConfigError

    with pytest.raises(ConfigError, match="en-de="):
        app([str(ct2_model)])
    assert importlib.util.find_spec("nmt.serve.api")
