"""The OpenAPI description served at /openapi.json, written by hand."""

from __future__ import annotations

from typing import Any

_ERROR = {
    "description": "an error, one line",
    "content": {
        "application/json": {
            "schema": {"type": "object", "properties": {"error": {"type": "string"}}}
        }
    },
}
_TEXT = {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    return {str(code): _ERROR for code in codes}


def openapi(decoding_fields: list[str], settings: Any) -> dict[str, Any]:
    """The description: every route, with the decoding options of /v1/translate."""
    libre = {
        "type": "object",
        "required": ["q", "source", "target"],
        "properties": {
            "q": _TEXT,
            "source": {"type": "string", "description": "language code, or 'auto'"},
            "target": {"type": "string"},
            "format": {"type": "string", "enum": ["text"]},
            "alternatives": {
                "type": "integer",
                "minimum": 0,
                "maximum": 16,
                "description": "other translations to return (a wider beam when needed)",
            },
        },
    }
    v1 = {
        "type": "object",
        "required": ["text", "source", "target"],
        "properties": {
            "text": _TEXT,
            "source": {"type": "string"},
            "target": {"type": "string"},
            "decoding": {
                "type": "object",
                "description": "nmt.decoding.Decoding's fields; defaults: the server's",
                "properties": {name: {"type": "number"} for name in decoding_fields},
                "additionalProperties": False,
            },
            "n_best": {
                "type": "integer",
                "minimum": 1,
                "description": "the best translations of each text to return in `nbest`, "
                "with their scores (at most the beam size)",
            },
        },
        "additionalProperties": False,
    }
    translate_errors = _errors(400, 413, 500, 503, 504)
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "nmt-serve",
            "version": "1",
            "description": (
                f"Limits: {settings.max_chars} characters a request, {settings.max_body} "
                f"bytes a body, {settings.queue} requests in progress, "
                f"{settings.timeout_s} s a request."
            ),
        },
        "paths": {
            "/translate": {
                "post": {
                    "summary": "LibreTranslate-compatible translation (JSON or form)",
                    "requestBody": {
                        "content": {
                            "application/json": {"schema": libre},
                            "application/x-www-form-urlencoded": {"schema": libre},
                        }
                    },
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "properties": {
                                    "translatedText": _TEXT,
                                    "alternatives": {"type": "array"},
                                },
                            }
                        ),
                        **translate_errors,
                    },
                }
            },
            "/v1/translate": {
                "post": {
                    "summary": "translation with decoding options and timing",
                    "requestBody": {"content": {"application/json": {"schema": v1}}},
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "properties": {
                                    "translations": _TEXT,
                                    "nbest": {
                                        "type": "array",
                                        "description": "with n_best > 1: per text, its best "
                                        "translations, each {translation, score}",
                                    },
                                    "model": {"type": "string"},
                                    "decoding": {"type": "object"},
                                    "timing": {
                                        "type": "object",
                                        "properties": {
                                            k: {"type": "number"}
                                            for k in ("queue_ms", "translate_ms", "total_ms")
                                        },
                                    },
                                },
                            }
                        ),
                        **translate_errors,
                    },
                }
            },
            "/languages": {
                "get": {
                    "summary": "the language pairs served (LibreTranslate's shape)",
                    "responses": {"200": _json({"type": "array", "items": {"type": "object"}})},
                }
            },
            "/health": {
                "get": {
                    "summary": "200 when every model is loaded and taking requests, else 503",
                    "responses": {"200": _json({"type": "object"}), "503": _json({})},
                }
            },
            "/metrics": {"get": {"summary": "Prometheus text", "responses": {"200": {}}}},
            "/": {"get": {"summary": "a web page to translate with", "responses": {"200": {}}}},
        },
    }
