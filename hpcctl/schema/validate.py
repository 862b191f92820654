"""Load YAML keeping line numbers and validate it against a JSON Schema subset.

Site configs and job specs are both checked here, so every problem a user sees reads the same way:
``FILE:LINE: PATH: what is wrong (how to fix it)``, all problems at once.

Supported keywords: type, properties, required, additionalProperties, propertyNames, items, enum, pattern,
minimum, maximum, minItems, minLength, $ref (``#/$defs/NAME``), description, default, ``x-format`` (what a pattern
accepts, in words) and ``x-hint`` (the fix shown with a problem).

Users write job specs and their own configs, so the loader is bounded: a file is read up to MAX_YAML_BYTES, nested
up to MAX_YAML_DEPTH levels, and aliases (*name) expand to at most MAX_ALIASED_VALUES values, each refused with one
line past its bound; only plain YAML types are built (PyYAML's safe constructors), and a value none of them can
read is a problem with its line, never a traceback.
"""

from __future__ import annotations

import copy
import difflib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

import yaml

from hpcctl.errors import ConfigError

Path = tuple

MAX_YAML_BYTES = 2**20  # job specs and configs are written by hand; the largest we ship is a few KiB
MAX_YAML_DEPTH = 50
MAX_ALIASED_VALUES = 10_000  # all the values built again for aliases in one document, together

_LINE_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"  # every character str.splitlines ends a line at
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")  # every control character but tab, U+2028/9


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
    """Parse YAML text within the bounds above; a syntax error or a bound passed is a ConfigError naming the line."""
    if len(text) > MAX_YAML_BYTES:
        raise _too_large(file)
    loader = _BoundedLoader(text, file)
    try:
        node = loader.get_single_node()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else 1
        raise ConfigError([f"{file}:{line}: invalid YAML: {getattr(exc, 'problem', None) or exc}"],
                          "fix the YAML syntax at that line") from None
    finally:
        loader.dispose()
    builder = _Builder(file)
    data = builder.build(node, ()) if node is not None else None
    return Located(data, file, builder.lines)


def read_yaml_text(path: str, fix: str = "check the path") -> str:
    """A YAML file's text, read no further than the size bound (a huge file or /dev/zero is refused, not read)."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_YAML_BYTES + 1)
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"], fix) from None
    if len(data) > MAX_YAML_BYTES:
        raise _too_large(path)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError([f"{path}: not UTF-8 text"], "save the file as UTF-8") from None


def load_yaml_file(path: str) -> Located:
    return load_yaml(read_yaml_text(path), path)


def _too_large(file: str) -> ConfigError:
    return ConfigError([f"{file}: larger than {MAX_YAML_BYTES // 2**20} MiB"],
                       "a job spec or config is a short file; remove what was generated into it")


def _too_deep(file: str, line: int) -> ConfigError:
    return ConfigError([f"{file}:{line}: nested deeper than {MAX_YAML_DEPTH} levels"],
                       "flatten it; an alias (*name) must not refer to its own parent")


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing nesting past MAX_YAML_DEPTH: its composer recurses once per level."""

    def __init__(self, text: str, file: str):
        super().__init__(text)
        self.file = file
        self.depth = 0

    def compose_node(self, parent, index):
        self.depth += 1
        if self.depth > MAX_YAML_DEPTH:
            raise _too_deep(self.file, self.peek_event().start_mark.line + 1)
        node = super().compose_node(parent, index)
        self.depth -= 1
        return node


class _Builder:
    """Plain data from composed YAML nodes, and the line of every key and value. An alias (*name) is the node it
    names, built again at each use: those values are counted and refused past MAX_ALIASED_VALUES, so that a few
    nested aliases (a "billion laughs") cannot grow to gigabytes."""

    def __init__(self, file: str):
        self.file = file
        self.lines: dict = {}
        self.built: set = set()
        self.aliased = 0
        self.scalars = yaml.constructor.SafeConstructor()

    def build(self, node, path: Path):
        self._count(node, path)
        self.lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(child, path + (i,)) for i, child in enumerate(node.value)]
        return self._scalar(node, path)

    def _count(self, node, path: Path) -> None:
        line = node.start_mark.line + 1
        if len(path) >= MAX_YAML_DEPTH:
            raise _too_deep(self.file, line)
        if node in self.built:
            self.aliased += 1
            if self.aliased > MAX_ALIASED_VALUES:
                raise ConfigError([f"{self.file}:{line}: aliases expand to more than {MAX_ALIASED_VALUES} values"],
                                  "write the values out, or use fewer aliases (*name) of large parts")
        self.built.add(node)

    def _mapping(self, node, path: Path) -> dict:
        out = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise self._error(key_node, path, "a key must be a plain value, not a list or mapping",
                                  "write the key as text")
            key = key_node.value
            if key in out:
                raise self._error(key_node, path + (key,), "duplicate key", "remove one of the two entries")
            out[key] = self.build(value_node, path + (key,))
            self.lines[path + (key,)] = key_node.start_mark.line + 1
        return out

    def _scalar(self, node, path: Path):
        try:
            return self.scalars.construct_object(node, deep=True)
        except Exception:  # an explicit tag picks the constructor, and PyYAML's raise errors of all kinds
            tag = node.tag.replace("tag:yaml.org,2002:", "!!")
            raise self._error(node, path, f"cannot read {shown(node.value)} as {tag}",
                              "write it as quoted text without a tag") from None

    def _error(self, node, path: Path, message: str, fix: str) -> ConfigError:
        return ConfigError([str(Problem(self.file, node.start_mark.line + 1, path_text(path), message))], fix)


def path_text(path: Path) -> str:
    """A path as problems name it (resources.nodes, [1].command[0]); a key with control characters as its repr."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            key = part if part.isprintable() else repr(part)
            out += f".{key}" if out else key
    return out


def shown(value, width: int = 40) -> str:
    """A value as a problem quotes it: its repr (control characters escaped), cut to ``width`` characters."""
    text = repr(value)
    return text if len(text) <= width else text[:width - 3] + "..."


def strings(data, path: Path = ()) -> Iterator[tuple[Path, str]]:
    """Every string value in ``data`` (not the keys), with its path."""
    if isinstance(data, str):
        yield path, data
    elif isinstance(data, dict):
        for key, value in data.items():
            yield from strings(value, path + (key,))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            yield from strings(value, path + (i,))


def unprintable(text: str, line_breaks: bool = False) -> tuple[str, str] | None:
    """What keeps ``text`` from being written into one line of a script, and its fix: ('a line break', 'write it on
    one line') or ('the control character U+001B', 'remove it'); None if nothing does. Tab is text; with
    ``line_breaks``, so is a newline (a script of several lines)."""
    for match in _CONTROL.finditer(text):
        char = match.group()
        if char in _LINE_BREAKS and not (line_breaks and char == "\n"):
            return "a line break", "write it on one line"
        if char not in _LINE_BREAKS:
            return f"the control character U+{ord(char):04X}", "remove it"
    return None


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
        problems.append(Problem(doc.file, doc.line(at), path_text(at), f"{message} ({hint})" if hint else message, at,
                                required))

    types = schema.get("type")
    if types is not None:
        names = types if isinstance(types, list) else [types]
        if not any(_is_type(value, name) for name in names):
            report(f"expected {' or '.join(names)}, got {type(value).__name__} {shown(value)}" if value is not None
                   else f"expected {' or '.join(names)}, got nothing")
            return
    if "enum" in schema and value not in schema["enum"]:
        choices = ", ".join(repr(c) for c in schema["enum"])
        report(f"{shown(value)} is not one of {choices}")
        return
    if isinstance(value, str):
        if "pattern" in schema and not re.fullmatch(schema["pattern"], value):
            report(f"{shown(value)} is not {schema.get('x-format', 'in the expected format')}")
        if len(value) < schema.get("minLength", 0):
            report("must not be empty")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            report(f"{shown(value)} is below the minimum {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            report(f"{shown(value)} is above the maximum {schema['maximum']}")
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
            if "propertyNames" in schema:
                _check(key, schema["propertyNames"], root, path + (key,), doc, problems)
            if key in props:
                _check(item, props[key], root, path + (key,), doc, problems)
            elif extra is False:
                close = difflib.get_close_matches(str(key), list(props), n=1)
                tip = f"; did you mean '{close[0]}'?" if close else f"; known keys: {', '.join(props)}"
                problems.append(Problem(doc.file, doc.line(path + (key,)), path_text(path + (key,)),
                                        f"unknown key {key!r}{tip}", path + (key,),
                                        instead="".join(difflib.get_close_matches(str(key), list(props), 1, 0.8))))
            elif isinstance(extra, dict):
                _check(item, extra, root, path + (key,), doc, problems)
