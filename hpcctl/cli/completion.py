"""Bash completion generated from the argparse parser, so it never lags behind the commands."""

from __future__ import annotations

import argparse


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _options(parser: argparse.ArgumentParser) -> list[str]:
    return sorted(o for a in parser._actions for o in a.option_strings if o.startswith("--"))


def _choices(parser: argparse.ArgumentParser) -> list[str]:
    """Fixed words a positional argument takes (`config show`, `completion bash`)."""
    return [c for a in parser._actions if not a.option_strings and a.choices
            and not isinstance(a, argparse._SubParsersAction) for c in a.choices]


def bash_script(parser: argparse.ArgumentParser) -> str:
    commands = _subparsers(parser)
    cases = []
    for name, sub in commands.items():
        words = _options(sub) + _choices(sub) + list(_subparsers(sub))
        cases.append(f"    {name}) words=\"{' '.join(words)}\" ;;")
    return "\n".join([
        "# bash completion for hpcctl: source <(hpcctl completion bash)",
        "_hpcctl() {",
        "  local cur=${COMP_WORDS[COMP_CWORD]} words",
        "  if [ \"$COMP_CWORD\" -eq 1 ]; then",
        f"    mapfile -t COMPREPLY < <(compgen -W \"{' '.join(commands)} {' '.join(_options(parser))}\" -- \"$cur\")",
        "    return",
        "  fi",
        "  case ${COMP_WORDS[1]} in",
        *cases,
        "    *) words=\"\" ;;",
        "  esac",
        "  mapfile -t COMPREPLY < <(compgen -W \"$words\" -- \"$cur\")",
        "}",
        "complete -o default -o bashdefault -F _hpcctl hpcctl",
    ])
