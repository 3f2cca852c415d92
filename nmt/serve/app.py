"""`app(...)`: the server as an ASGI application (Starlette), for `nmt-serve` or for embedding
in another ASGI server.

Each model is loaded when the app is made (a bad path fails here, not at the first request;
`nmt.serve.models`) and gets its own `Batcher`, started and drained by the app's lifespan:
on shutdown (uvicorn's, after SIGTERM) every accepted request is answered first.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

from starlette.applications import Starlette

from nmt.serve.api import routes
from nmt.serve.metrics import Metrics
from nmt.serve.models import Settings, load_models
from nmt.translate import Translator

log = logging.getLogger(__name__)


def app(
    models: Sequence[str] | Mapping[str, str | Path | Translator],
    settings: Settings | None = None,
    device: str = "cpu",
    compute_type: str = "default",
    exact_length_limits: bool = False,
    load_options: Mapping[str, object] | None = None,
) -> Starlette:
    """The server: `models` are `NAME=MODEL` specs (or a mapping of names to model paths or
    loaded translators), each served for its language pair under `settings`.
    `exact_length_limits` (CTranslate2) makes a beam search's output independent of the
    sentences batched with it, as greedy search always is (`nmt.backends.ct2`).
    `load_options` go to `nmt.translate.load` for each model given by path (a foreign
    model's tokenizer files and prefixes, as a deploy.json `Profile.load_options` gives)."""
    settings = settings or Settings()
    metrics = Metrics()
    served = load_models(
        models, settings, device, compute_type, metrics, exact_length_limits, load_options
    )

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette):
        for model in served.values():
            await model.batcher.start()
        try:
            yield
        finally:
            log.info("draining: answering the requests accepted")
            for model in served.values():
                await model.batcher.close()

    server = Starlette(routes=routes(), lifespan=lifespan)
    server.state.models, server.state.settings, server.state.metrics = served, settings, metrics
    return server
