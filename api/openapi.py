"""The API's OpenAPI 3.1 description, built from the same pydantic models it answers with."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from api.models import AccountHistory, AccountPage, AlertList, Problem
from scoring.update import ScoreUpdate

MODELS: list[type[BaseModel]] = [ScoreUpdate, AccountPage, AccountHistory, AlertList, Problem]


def _ref(model: type[BaseModel]) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _answer(model: type[BaseModel], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(model)}}}


def _query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema,
    }


ACCOUNT_ID = {"name": "account_id", "in": "path", "required": True, "schema": {"type": "string"}}
BAD = _answer(Problem, "a parameter is invalid; the message says which and why")
UNKNOWN = _answer(Problem, "no such account (or it has no score yet)")
UNAUTHORIZED = _answer(Problem, "the bearer token is missing or wrong (when CHS_API_TOKEN is set)")


def openapi(max_limit: int) -> dict[str, Any]:
    _, schemas = models_json_schema(
        [(model, "serialization") for model in MODELS],
        ref_template="#/components/schemas/{model}",
    )
    limit = {"type": "integer", "minimum": 1, "maximum": max_limit}
    return {
        "openapi": "3.1.0",
        "info": {"title": "chs score API", "version": "1"},
        "security": [{"bearer": []}],
        "paths": {
            "/accounts": {
                "get": {
                    "summary": "Accounts, lowest score first, optionally filtered",
                    "parameters": [
                        _query("band", "a band label of the model", {"type": "string"}),
                        _query("segment", "a segment name, or 'default'", {"type": "string"}),
                        _query("owner", "the CSM owning the account", {"type": "string"}),
                        _query("limit", "page size", limit),
                        _query("cursor", "next_cursor of the previous page", {"type": "string"}),
                        _query("history", "include 90 days of daily scores", {"type": "boolean"}),
                    ],
                    "responses": {
                        "200": _answer(AccountPage, "one page"),
                        "400": BAD,
                        "401": UNAUTHORIZED,
                    },
                }
            },
            "/accounts/{account_id}": {
                "get": {
                    "summary": "An account's latest score with components and drivers",
                    "parameters": [ACCOUNT_ID],
                    "responses": {
                        "200": _answer(ScoreUpdate, "its latest ScoreUpdate"),
                        "401": UNAUTHORIZED,
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
                        "401": UNAUTHORIZED,
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
                            "only alerts at or after this time: ISO 8601 or POSIX seconds",
                            {"type": "string"},
                        ),
                        _query("limit", "how many at most", limit),
                    ],
                    "responses": {
                        "200": _answer(AlertList, "the alerts"),
                        "400": BAD,
                        "401": UNAUTHORIZED,
                    },
                }
            },
            "/healthz": {
                "get": {
                    "summary": "200 when Redis answers (no token needed)",
                    "security": [],
                    "responses": {"200": {"description": "up"}, "503": {"description": "down"}},
                }
            },
        },
        "components": {
            "schemas": schemas["$defs"],
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
