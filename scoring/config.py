"""Configuration files (YAML) validated by pydantic, with errors that name the file, the
field and the problem. Used by the scoring model and the alert rules."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

C = TypeVar("C", bound=BaseModel)


class ConfigError(ValueError):
    """A configuration file that cannot be used; one line per problem."""


def parse_config(cls: type[C], data: Any, source: str) -> C:
    try:
        return cls.model_validate(data)
    except ValidationError as error:
        problems = []
        for e in error.errors(include_url=False, include_input=False):
            where = ".".join(str(p) for p in e["loc"]) or "(top level)"
            problems.append(f"{source}: {where}: {e['msg']}")
        raise ConfigError("\n".join(problems)) from None


def load_config(cls: type[C], path: Path) -> C:
    """Read ``path`` as YAML and validate it as ``cls``."""
    try:
        text = path.read_text()
    except OSError as error:
        raise ConfigError(f"{path}: cannot read: {error.strerror}") from None
    return parse_yaml(cls, text, str(path))


def parse_yaml(cls: type[C], text: str, source: str) -> C:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "?"
        raise ConfigError(f"{source}: {where}: not valid YAML: {error}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: (top level): expected a mapping of fields")
    return parse_config(cls, data, source)
