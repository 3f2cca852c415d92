"""The HTTP API: LibreTranslate's `POST /translate` and `GET /languages` (so its clients work
unchanged), the native `POST /v1/translate` with decoding options and timing, `GET /health`,
`GET /metrics` (Prometheus), `GET /openapi.json` and the web page at `/`.

Every error is one line of JSON, `{"error": "..."}`: 400 for a malformed body, a missing
field, an unknown language pair or a bad decoding option; 413 for a body or a text over the
limits; 503 (with Retry-After) while the queue is full or the server drains; 504 when a
request is not answered in `timeout_s`; 500 when the translator failed on its batch. A
client that disconnects has its sentences dropped from the queue (those already in a batch
are translated and thrown away); nothing else is affected.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, fields, replace
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from nmt.backends.base import Hypothesis
from nmt.config import ConfigError
from nmt.decoding import Decoding, check_nbest, decoding_of
from nmt.serve.batcher import QueueFull, TranslationFailed
from nmt.serve.models import ServedModel, Settings
from nmt.serve.openapi import openapi
from nmt.serve.page import PAGE
from nmt.serve.sentences import join, split

LANGUAGE_NAMES = {
    "ar": "Arabic", "cs": "Czech", "de": "German", "en": "English", "es": "Spanish",
    "fr": "French", "it": "Italian", "ja": "Japanese", "nl": "Dutch", "pl": "Polish",
    "pt": "Portuguese", "ru": "Russian", "tr": "Turkish", "uk": "Ukrainian", "zh": "Chinese",
}  # fmt: skip
RETRY_AFTER_S = 1
CLIENT_GONE = 499  # nginx's code for it: logged and counted, never seen by the client


class ApiError(Exception):
    """An answer with an error: its status and one-line message."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


def _endpoint(route: str) -> Callable:
    """A handler answering errors as one-line JSON, counted and timed under `route`."""

    def wrap(handler: Callable[[Request], Awaitable[Response]]) -> Callable:
        @functools.wraps(handler)
        async def endpoint(request: Request) -> Response:
            start = time.perf_counter()
            try:
                response = await handler(request)
            except ApiError as e:
                response = JSONResponse({"error": e.message}, e.status, headers=e.headers)
            seconds = time.perf_counter() - start if route.endswith("translate") else None
            request.app.state.metrics.answered(route, response.status_code, seconds)
            return response

        return endpoint

    return wrap


# --- reading a request ---------------------------------------------------------------------


async def _body(request: Request, settings: Settings) -> dict:
    """The JSON object or form of the body, refused past `settings.max_body` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > settings.max_body:
        raise ApiError(413, f"request body over {settings.max_body} bytes")
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > settings.max_body:
            raise ApiError(413, f"request body over {settings.max_body} bytes")
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    # JSON sent as a form (`curl -d '{...}'` says it is one) is read as JSON.
    if kind == "application/x-www-form-urlencoded" and not data.lstrip().startswith(b"{"):
        try:
            return dict(parse_qsl(data.decode("utf-8"), keep_blank_values=True))
        except UnicodeDecodeError:
            raise ApiError(400, "Invalid request: the form is not UTF-8") from None
    if kind not in ("application/json", "application/x-www-form-urlencoded", ""):
        raise ApiError(400, f"Invalid request: unsupported content type {kind!r} (send JSON)")
    try:
        body = json.loads(data)
    except ValueError as e:
        raise ApiError(400, f"Invalid request: malformed JSON ({e})") from None
    if not isinstance(body, dict):
        raise ApiError(400, "Invalid request: the body must be a JSON object")
    return body


def _texts(value: object, name: str, settings: Settings) -> list[str]:
    texts = value if isinstance(value, list) else [value]
    if value is None or value == [] or not all(isinstance(t, str) for t in texts):
        raise ApiError(400, f"Invalid request: missing {name} parameter (a string or a list)")
    chars = sum(len(t) for t in texts)
    if chars > settings.max_chars:
        raise ApiError(413, f"{chars} characters, more than the {settings.max_chars} allowed")
    return texts


def _model(request: Request, source: object, target: object) -> ServedModel:
    models: dict[str, ServedModel] = request.app.state.models
    if not isinstance(source, str) or not source:
        raise ApiError(400, "Invalid request: missing source parameter")
    if not isinstance(target, str) or not target:
        raise ApiError(400, "Invalid request: missing target parameter")
    for model in models.values():
        if model.target == target and source in (model.source, "auto"):
            return model
    pairs = ", ".join(f"{m.source}-{m.target}" for m in models.values())
    raise ApiError(400, f"{source}-{target} is not supported (served: {pairs})")


# --- translating ---------------------------------------------------------------------------


async def _disconnected(request: Request) -> None:
    """Return once the client has gone (its body is read: the next message says so)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _translate(
    request: Request, model: ServedModel, texts: list[str], decoding: Decoding, n_best: int = 1
) -> tuple[list, dict[str, float]]:
    """The translations of `texts` (each split into sentences, batched with other requests'
    and joined again) and the request's timing. With `n_best` > 1, each text's `n_best`
    alternatives instead (`_alternatives`)."""
    settings: Settings = request.app.state.settings
    split_texts = [split(text) for text in texts]
    flat = [s for found, _ in split_texts for s in found]
    try:
        job = model.batcher.submit(flat, decoding, n_best)
    except QueueFull as e:
        raise ApiError(
            503, f"busy: {e}; retry later", {"Retry-After": str(RETRY_AFTER_S)}
        ) from None
    gone = asyncio.create_task(_disconnected(request))
    try:
        done, _ = await asyncio.wait(
            {job.future, gone}, timeout=settings.timeout_s or None, return_when="FIRST_COMPLETED"
        )
    finally:
        gone.cancel()
    if job.future not in done or job.future.cancelled():
        model.batcher.cancel(job)
        if gone in done:
            raise ApiError(CLIENT_GONE, "the client disconnected")
        raise ApiError(504, f"not translated within {settings.timeout_s} s")
    try:
        translated = job.future.result()
    except TranslationFailed as e:
        raise ApiError(500, str(e)) from None
    out, i = [], 0
    for found, counts in split_texts:
        sentences = translated[i : i + len(found)]
        out.append(
            join(sentences, counts) if n_best == 1 else _alternatives(sentences, counts, n_best)
        )
        i += len(found)
    return out, job.timing()


def _alternatives(
    sentences: list[list[Hypothesis]], counts: list[int], n: int
) -> list[dict[str, object]]:
    """A text's `n` best translations from its sentences' hypotheses, as Argos Translate
    combines them: the i-th joins each sentence's i-th hypothesis (its last where it has
    fewer: a blank sentence has one), scored by the mean of their scores."""
    out = []
    for i in range(min(n, max((len(h) for h in sentences), default=1))):
        picked = [h[min(i, len(h) - 1)] for h in sentences]
        score = sum(h.score for h in picked) / len(picked) if picked else 0.0
        out.append({"translation": join([h.text for h in picked], counts), "score": score})
    return out


def _ready(request: Request) -> None:
    if not all(m.batcher.running for m in request.app.state.models.values()):
        raise ApiError(503, "not ready: starting or shutting down", {"Retry-After": "1"})


# --- routes --------------------------------------------------------------------------------


@_endpoint("/translate")
async def libre_translate(request: Request) -> Response:
    """LibreTranslate's /translate: q (a string or a list), source, target, format."""
    settings: Settings = request.app.state.settings
    body = await _body(request, settings)
    texts = _texts(body.get("q"), "q", settings)
    if body.get("format", "text") != "text":
        raise ApiError(400, f"Invalid request: format {body.get('format')!r} (only 'text')")
    alternatives = _integer(body.get("alternatives", 0), "alternatives", 0)
    model = _model(request, body.get("source"), body.get("target"))
    _ready(request)
    decoding = settings.decoding
    if alternatives:  # as Argos Translate does: a beam wide enough for them
        decoding = replace(decoding, beam_size=max(decoding.beam_size, alternatives + 1))
    out, _ = await _translate(request, model, texts, decoding, alternatives + 1)
    many = isinstance(body["q"], list)
    if alternatives:
        others = [[a["translation"] for a in text[1:]] for text in out]
        out = [text[0]["translation"] for text in out]
    answer: dict[str, object] = {"translatedText": out if many else out[0]}
    if alternatives:
        answer["alternatives"] = others if many else others[0]
    if body.get("source") == "auto":
        detected = {"confidence": 100.0, "language": model.source}
        answer["detectedLanguage"] = (
            [detected] * len(out) if isinstance(body["q"], list) else detected
        )
    return JSONResponse(answer)


V1_FIELDS = {"text", "source", "target", "decoding", "n_best"}
MAX_ALTERNATIVES = 16  # LibreTranslate's `alternatives`: beyond, the beam costs too much


def _integer(value: object, name: str, minimum: int, maximum: int = MAX_ALTERNATIVES) -> int:
    """`value` as an integer in [minimum, maximum] (a form sends it as text); 400 otherwise."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise ApiError(
            400, f"Invalid request: {name} must be an integer from {minimum} to {maximum}"
        )
    return value


@_endpoint("/v1/translate")
async def v1_translate(request: Request) -> Response:
    """The native API: text, source, target, `decoding` (fields of `Decoding`) and `n_best`
    (up to the beam size: each text's best translations with their scores in `nbest`)."""
    settings: Settings = request.app.state.settings
    body = await _body(request, settings)
    if unknown := sorted(set(body) - V1_FIELDS):
        raise ApiError(400, f"{unknown[0]}: unknown field (known: {', '.join(sorted(V1_FIELDS))})")
    texts = _texts(body.get("text"), "text", settings)
    options = body.get("decoding") or {}
    if not isinstance(options, dict):
        raise ApiError(400, "decoding: must be an object of decoding options")
    try:
        decoding = decoding_of(settings.decoding, **options)
    except (ConfigError, TypeError) as e:
        raise ApiError(400, f"decoding.{e}") from None
    try:
        n_best = check_nbest(body.get("n_best", 1), decoding)
    except ConfigError as e:
        raise ApiError(400, str(e)) from None
    model = _model(request, body.get("source"), body.get("target"))
    _ready(request)
    out, timing = await _translate(request, model, texts, decoding, n_best)
    many = isinstance(body["text"], list)
    extra = {}
    if n_best > 1:
        extra["nbest"] = out if many else out[0]
        out = [text[0]["translation"] for text in out]
    return JSONResponse(
        {
            "translations": out if many else out[0],
            **extra,
            "model": model.name,
            "source": model.source,
            "target": model.target,
            "decoding": asdict(decoding),
            "timing": timing,
        }
    )


@_endpoint("/languages")
async def languages(request: Request) -> Response:
    """LibreTranslate's /languages: each source language and the targets it has."""
    targets: dict[str, list[str]] = {}
    for model in request.app.state.models.values():
        targets.setdefault(model.source, []).append(model.target)
    return JSONResponse(
        [
            {"code": code, "name": LANGUAGE_NAMES.get(code, code), "targets": sorted(set(t))}
            for code, t in sorted(targets.items())
        ]
    )


@_endpoint("/health")
async def health(request: Request) -> Response:
    """200 while every model is loaded and its batcher takes requests, else 503."""
    models = request.app.state.models.values()
    ready = all(m.batcher.running for m in models)
    return JSONResponse(
        {
            "status": "ok" if ready else "unavailable",
            "ready": ready,
            "models": [
                {
                    "name": m.name,
                    "source": m.source,
                    "target": m.target,
                    "backend": m.translator.backend,
                    "queued_sentences": m.batcher.depth,
                    "requests_in_progress": m.batcher.in_progress,
                }
                for m in models
            ],
        },
        200 if ready else 503,
    )


async def metrics(request: Request) -> Response:
    models = request.app.state.models.values()
    text = request.app.state.metrics.render(
        lambda: sum(m.batcher.depth for m in models),
        lambda: sum(m.batcher.in_progress for m in models),
    )
    return Response(text, media_type=request.app.state.metrics.content_type)


async def openapi_json(request: Request) -> Response:
    return JSONResponse(openapi([f.name for f in fields(Decoding)], request.app.state.settings))


async def page(request: Request) -> Response:
    return HTMLResponse(PAGE)


def routes() -> list[Route]:
    return [
        Route("/", page),
        Route("/translate", libre_translate, methods=["POST"]),
        Route("/languages", languages, methods=["GET", "POST"]),
        Route("/v1/translate", v1_translate, methods=["POST"]),
        Route("/health", health),
        Route("/metrics", metrics),
        Route("/openapi.json", openapi_json),
    ]
