"""`nmt-serve`: an HTTP server for the models this toolkit makes (LibreTranslate's API, a
native API with decoding options, metrics, a web page), batching sentences across requests.

`app(models, settings)` is the ASGI application (Starlette); `nmt.cli.serve` runs it under
uvicorn. Modules: `sentences` (splitting text as the Argos export's splitter does),
`batcher` (dynamic batching in worker threads), `models` (settings; the models served and
their language pairs), `api` (routes), `metrics` (Prometheus), `app` (the factory),
`openapi` and `page` (the description and the web page). Needs the `serve` extra
(Starlette, uvicorn, prometheus-client).
"""

from nmt.serve.app import app
from nmt.serve.models import Settings

__all__ = ["Settings", "app"]
