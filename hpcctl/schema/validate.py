"""Load YAML keeping line numbers and validate it against a JSON Schema subset.

Site configs and job specs are both checked here, so every problem a user sees reads the same way:
``FILE:LINE: PATH: what is wrong (how to fix it)``, all problems at once.

Supported keywords: type, properties, required, additionalProperties, items, enum, pattern, minimum, maximum,
minItems, minLength, $ref (``#/$defs/NAME``), description, default, ``x-format`` (what a pattern accepts, in words)
and ``x-hint`` (the fix shown with a problem).
"""

from __future__ import annotations

import difflib
import re
import copy
from dataclasses import dataclass, field

import yaml

from hpcctl.errors import ConfigError

Path = tuple


@dataclass(frozen=True)
class Problem:
    file: str
    line: int
    path: str
    message: str
    at: Path = field(default=(), compare=False)  # the path as keys and indices, for callers that prune it
    required: bool = field(default=False, compare=False)  # a missing key: nothing there to prune
    instead: str = field(default="", compare=False)  # an unknown key's likely meant name

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        return f"{self.file}:{self.line}: {where}{self.message}"


@dataclass
class Located:
    """A parsed document, its file name, and the line of every key and value (1-based)."""

    data: object
    file: str
    lines: dict

    def line(self, path: Path) -> int:
        while path not in self.lines and path:
            path = path[:-1]
        return self.lines.get(path, 1)


def load_yaml(text: str, file: str) -> Located:
    """Parse YAML text; a syntax error becomes a ConfigError naming the line."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else 1
        raise ConfigError([f"{file}:{line}: invalid YAML: {getattr(exc, 'problem', None) or exc}"],
                          "fix the YAML syntax at that line") from None
    lines: dict = {}
    data = _build(node, (), lines, file) if node is not None else None
    return Located(data, file, lines)


def load_yaml_file(path: str) -> Located:
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"], "check the path") from None
    return load_yaml(text, path)


def _build(node, path: Path, lines: dict, file: str):
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out = {}
        for key_node, value_node in node.value:
            key = key_node.value
            if key in out:
                raise ConfigError([f"{file}:{key_node.start_mark.line + 1}: {_fmt(path + (key,))}: duplicate key"],
                                  "remove one of the two entries")
            out[key] = _build(value_node, path + (key,), lines, file)
            lines[path + (key,)] = key_node.start_mark.line + 1
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(child, path + (i,), lines, file) for i, child in enumerate(node.value)]
    return _SCALARS.construct_object(node, deep=True)


_SCALARS = yaml.constructor.SafeConstructor()


def _fmt(path: Path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


_TYPES = {
    "object": dict,
    "array": list,
    "string": str,
    "boolean": bool,
    "null": type(None),
}


def _is_type(value, name: str) -> bool:
    if name == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if name == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, _TYPES[name])


def validate(doc: Located, schema: dict) -> list[Problem]:
    """Every problem in ``doc`` against ``schema``, in document order."""
    problems: list[Problem] = []
    _check(doc.data, schema, schema, (), doc, problems)
    return sorted(problems, key=lambda p: p.line)


def without_problems(doc: Located, problems: list[Problem]) -> Located | None:
    """A copy of ``doc`` with the mapping keys that have problems removed (a misspelt key read as the key it was
    likely meant to be), so that the checks after the schema's can still run and every problem is reported at
    once; None when that is not possible (a missing required key, a bad list item)."""
    if any(p.required or not p.at or not isinstance(p.at[-1], str) for p in problems):
        return None
    data = copy.deepcopy(doc.data)
    for problem in problems:
        parent = data
        for step in problem.at[:-1]:
            parent = parent[step]
        value = parent.pop(problem.at[-1], None)
        if problem.instead and problem.instead not in parent:
            parent[problem.instead] = value
    return Located(data, doc.file, doc.lines)


def validate_or_raise(doc: Located, schema: dict, fix: str | None = None) -> None:
    problems = validate(doc, schema)
    if problems:
        raise ConfigError([str(p) for p in problems], fix)


def _resolve(schema: dict, root: dict) -> dict:
    while "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = root["$defs"][name]
    return schema


def _check(value, schema: dict, root: dict, path: Path, doc: Located, problems: list[Problem]) -> None:
    schema = _resolve(schema, root)

    def report(message: str, at: Path = path, required: bool = False) -> None:
        hint = schema.get("x-hint")
        problems.append(Problem(doc.file, doc.line(at), _fmt(at), f"{message} ({hint})" if hint else message, at,
                                required))

    types = schema.get("type")
    if types is not None:
        names = types if isinstance(types, list) else [types]
        if not any(_is_type(value, name) for name in names):
            shown = "null" if value is None else type(value).__name__
            report(f"expected {' or '.join(names)}, got {shown} {value!r}" if value is not None
                   else f"expected {' or '.join(names)}, got nothing")
            return
    if "enum" in schema and value not in schema["enum"]:
        choices = ", ".join(repr(c) for c in schema["enum"])
        report(f"{value!r} is not one of {choices}")
        return
    if isinstance(value, str):
        if "pattern" in schema and not re.fullmatch(schema["pattern"], value):
            report(f"{value!r} is not {schema.get('x-format', 'in the expected format')}")
        if len(value) < schema.get("minLength", 0):
            report("must not be empty")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            report(f"{value} is below the minimum {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            report(f"{value} is above the maximum {schema['maximum']}")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            report(f"needs at least {schema['minItems']} item(s)")
        if "items" in schema:
            for i, item in enumerate(value):
                _check(item, schema["items"], root, path + (i,), doc, problems)
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for key in schema.get("required", []):
            if key not in value:
                report(f"missing required key '{key}'", required=True)
        extra = schema.get("additionalProperties", True)
        for key, item in value.items():
            if key in props:
                _check(item, props[key], root, path + (key,), doc, problems)
            elif extra is False:
                close = difflib.get_close_matches(str(key), list(props), n=1)
                tip = f"; did you mean '{close[0]}'?" if close else f"; known keys: {', '.join(props)}"
                problems.append(Problem(doc.file, doc.line(path + (key,)), _fmt(path + (key,)),
                                        f"unknown key '{key}'{tip}", path + (key,),
                                        instead="".join(difflib.get_close_matches(str(key), list(props), 1, 0.8))))
            elif isinstance(extra, dict):
                _check(item, extra, root, path + (key,), doc, problems)
