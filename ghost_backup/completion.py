"""Bash completion rendered from the argument parser (``ghost-backup completion bash``).

The sysext image installs the same text as ``/usr/share/bash-completion/completions/
ghost-backup``, where bash-completion loads it on first use. Pure: parser in, script out, so
a new command or flag is completable as soon as it is in the parser.
"""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Iterator


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:  # argparse has no public walk of its tree
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _walk(parser: argparse.ArgumentParser, path: str = ""
          ) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield path, parser
    for name, sub in _subparsers(parser).items():
        yield from _walk(sub, f"{path} {name}".strip())


def _value_kind(action: argparse.Action) -> str | None:
    """Return how a flag's value completes: ``dir``, ``file``, ``none``; None: no value."""
    if action.nargs == 0:
        return None
    metavar = str(action.metavar or "")
    if metavar == "DIR":
        return "dir"
    if action.type is not None and getattr(action.type, "__name__", "") in {"Path", "PosixPath"}:
        return "file"
    return "none"


def render_bash_completion(parser: argparse.ArgumentParser) -> str:
    """Return a bash completion script for every command, action and flag of ``parser``."""
    prog = parser.prog
    func = "_" + prog.replace("-", "_")
    words_cases: list[str] = []
    value_cases: list[str] = []
    for path, sub in _walk(parser):
        words = [*_subparsers(sub)]
        for action in sub._actions:
            if isinstance(action, argparse._SubParsersAction):
                continue
            if not action.option_strings and action.choices:  # a positional's choices
                words += [str(choice) for choice in action.choices]
            words += action.option_strings
            kind = _value_kind(action)
            for option in action.option_strings:
                if kind is not None:
                    value_cases.append(f"        {shlex.quote(f'{path}:{option}')}) "
                                       f"_kind={kind} ;;")
        words_cases.append(f"        {shlex.quote(path)}) _words={shlex.quote(' '.join(words))} ;;")
    lines = [
        f"# bash completion for {prog}; generated from its argument parser",
        f"# (`{prog} completion bash`): do not edit.",
        f"{func}() {{",
        '    local cur="${COMP_WORDS[COMP_CWORD]}" path="" word kind _kind _words i',
        "    COMPREPLY=()",
        "    # The command path so far (`config validate`), skipping flags and their values.",
        "    for ((i = 1; i < COMP_CWORD; i++)); do",
        '        word="${COMP_WORDS[i]}"',
        '        if [[ "$word" == -* ]]; then',
        "            _kind=",
        f'            {func}_value "$path:$word"',
        '            [[ -n "$_kind" ]] && ((i++))',
        "        else",
        '            path="${path:+$path }$word"',
        "        fi",
        "    done",
        "    _kind=",
        f'    {func}_value "$path:${{COMP_WORDS[COMP_CWORD-1]}}"',
        '    case "$_kind" in',
        '        dir) mapfile -t COMPREPLY < <(compgen -d -- "$cur"); return ;;',
        '        file) mapfile -t COMPREPLY < <(compgen -f -- "$cur"); return ;;',
        "        none) return ;;",
        "    esac",
        "    _words=",
        '    case "$path" in',
        *words_cases,
        "    esac",
        '    mapfile -t COMPREPLY < <(compgen -W "$_words" -- "$cur")',
        "}",
        f"{func}_value() {{",
        '    case "$1" in',
        *value_cases,
        "    esac",
        "}",
        f"complete -F {func} {prog}",
    ]
    return "\n".join(lines) + "\n"
