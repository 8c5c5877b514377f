"""The API's OpenAPI 3.1 description, built from the same pydantic models it answers with."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from api.models import AccountHistory, AccountPage, AlertList, Problem
from scoring.audit_report import AuditReport
from scoring.update import ScoreUpdate

MODELS: list[type[BaseModel]] = [
    ScoreUpdate,
    AccountPage,
    AccountHistory,
    AlertList,
    AuditReport,
    Problem,
]


def _ref(model: type[BaseModel]) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _answer(model: type[BaseModel], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(model)}}}


def _query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    if schema.get("type") == "string" or "anyOf" in schema:
        description += " (an empty value is the same as leaving it out)"
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema,
    }


def _one_of(values: list[str]) -> dict[str, Any]:
    # An empty value is accepted too (the same as none).
    return {"type": "string", "enum": [*values, ""]}


def _pattern(regex: str) -> dict[str, Any]:
    # An empty value is accepted too (the same as none).
    return {"type": "string", "pattern": f"^({regex})?$"}


ACCOUNT_ID = {"name": "account_id", "in": "path", "required": True, "schema": {"type": "string"}}
BAD = _answer(Problem, "a parameter is invalid; the message says which and why")
UNKNOWN = _answer(Problem, "no such account (or it has no score yet)")
UNAUTHORIZED = _answer(Problem, "the bearer token is missing or wrong")
OPEN_OPERATIONS = ("/healthz",)
"""Documented paths answered without a token (``api.app.OPEN_PATHS``)."""


CURSOR = r"[0-9]{1,9}"
POSIX_SECONDS = r"[0-9]{1,12}(\.[0-9]{1,9})?"
RFC3339 = (
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})"
)
"""An RFC 3339 date-time (what the ``since`` parameter's ``date-time`` format means)."""


def openapi(max_limit: int, secured: bool, bands: list[str], segments: list[str]) -> dict[str, Any]:
    """The description of the API as it runs: the model's ``bands`` and ``segments`` as the
    filters' values, and, only when a bearer token is configured (``secured``,
    ``CHS_API_TOKEN``), its security scheme and 401 answers."""
    _, schemas = models_json_schema(
        [(model, "serialization") for model in MODELS],
        ref_template="#/components/schemas/{model}",
    )
    limit = {"type": "integer", "minimum": 1, "maximum": max_limit}
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "chs score API", "version": "1"},
        "paths": {
            "/accounts": {
                "get": {
                    "summary": "Accounts, lowest score first, optionally filtered",
                    "parameters": [
                        _query("band", "a band label of the model", _one_of(bands)),
                        _query("segment", "a segment name, or 'default'", _one_of(segments)),
                        _query("owner", "the CSM owning the account", {"type": "string"}),
                        _query("parent", "only this account's children", {"type": "string"}),
                        _query(
                            "top_level",
                            "true: only accounts without a parent; false: only children",
                            {"type": "boolean"},
                        ),
                        _query(
                            "rollup",
                            "true: only parents scored as roll-ups; false: only the others",
                            {"type": "boolean"},
                        ),
                        _query("limit", "page size", limit),
                        _query("cursor", "next_cursor of the previous page", _pattern(CURSOR)),
                        _query("history", "include 90 days of daily scores", {"type": "boolean"}),
                    ],
                    "responses": {
                        "200": _answer(AccountPage, "one page"),
                        "400": BAD,
                    },
                }
            },
            "/accounts/{account_id}": {
                "get": {
                    "summary": "An account's latest score with components and drivers",
                    "parameters": [ACCOUNT_ID],
                    "responses": {
                        "200": _answer(ScoreUpdate, "its latest ScoreUpdate"),
                        "404": UNKNOWN,
                    },
                }
            },
            "/accounts/{account_id}/history": {
                "get": {
                    "summary": "An account's daily closing scores, last 90 days, oldest first",
                    "parameters": [ACCOUNT_ID],
                    "responses": {
                        "200": _answer(AccountHistory, "its history"),
                        "404": UNKNOWN,
                    },
                }
            },
            "/alerts": {
                "get": {
                    "summary": "The latest alerts, newest first",
                    "parameters": [
                        _query(
                            "since",
                            "only alerts at or after this time: RFC 3339 or POSIX seconds",
                            {
                                "anyOf": [
                                    {"type": "string", "format": "date-time"},
                                    _pattern(POSIX_SECONDS),
                                ]
                            },
                        ),
                        _query("limit", "how many at most", limit),
                    ],
                    "responses": {
                        "200": _answer(AlertList, "the alerts"),
                        "400": BAD,
                    },
                }
            },
            "/audit": {
                "get": {
                    "summary": "How well earlier scores ranked the accounts that churned, per "
                    "model and lead (docs/audit.md)",
                    "responses": {
                        "200": _answer(AuditReport, "the latest figures, with their counts"),
                        "404": _answer(
                            Problem,
                            "no figures yet: the worker publishes them "
                            "every CHS_AUDIT_SHIP_SECONDS",
                        ),
                    },
                }
            },
            "/healthz": {
                "get": {
                    "summary": "200 when Redis answers (no token needed)",
                    "responses": {"200": {"description": "up"}, "503": {"description": "down"}},
                }
            },
        },
        "components": {"schemas": schemas["$defs"]},
    }
    if secured:
        document["security"] = [{"bearer": []}]
        document["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        for path, operations in document["paths"].items():
            if path in OPEN_OPERATIONS:
                operations["get"]["security"] = []
            else:
                operations["get"]["responses"]["401"] = UNAUTHORIZED
    return document
