"""Griffe extension for the API reference: render learnkit's docstrings as their authors meant them.

1. learnkit's docstrings carry runnable examples as plain doctest blocks (``>>>`` lines and their output,
   ended by a blank line), which ``tests/test_docs.py`` runs. Markdown would read ``>>>`` as nested block
   quotes and ``[2, 6]`` as a link, so each block is wrapped in a ``pycon`` fence before mkdocstrings
   renders it; doctest directives (``# doctest: +ELLIPSIS``) are dropped from the shown code. Blocks inside
   a Google-style ``Examples:`` section are left to griffe, which already renders them.
2. An ``Args:`` section often ends with a sentence about the remaining arguments ("The rest goes to
   `Learner` unchanged."). Griffe would take it for a malformed parameter, warn, and drop it; it is moved
   out of the section instead, as a paragraph after the parameter table.

Loaded by ``mkdocs.yml`` (``plugins.mkdocstrings.handlers.python.options.extensions``).
"""
from __future__ import annotations

import re
from typing import Any

import griffe

__all__ = ["DoctestBlocks", "fence_doctests", "lift_args_prose"]

_DIRECTIVE = re.compile(r"\s*#\s*doctest:.*$")
_SECTION = re.compile(r"^(\w[\w ]*):\s*$")
_EXAMPLE_SECTIONS = {"example", "examples"}
_ARGS_SECTION = re.compile(r"^(Args|Arguments|Parameters|Params|Keyword Args|Keyword Arguments|Other Parameters):\s*$")


def fence_doctests(text: str) -> str:
    r"""Wrap every run of doctest lines in ```` ```pycon ```` fences.

    >>> fence_doctests("Intro.\n\n>>> 1 + 1  # doctest: +SKIP\n2").splitlines()
    ['Intro.', '', '```pycon', '>>> 1 + 1', '2', '```']
    """
    lines = text.split("\n")
    out: list[str] = []
    i, in_fence, in_examples = 0, False, False
    while i < len(lines):
        line = lines[i]
        stripped = line.lstrip()
        if stripped.startswith("```"):
            in_fence = not in_fence
        if not line.startswith((" ", "\t")) and stripped:
            m = _SECTION.match(line)
            in_examples = bool(m) and m.group(1).strip().lower() in _EXAMPLE_SECTIONS
        if in_fence or in_examples or not stripped.startswith(">>>"):
            out.append(line)
            i += 1
            continue
        indent = line[: len(line) - len(stripped)]
        block = []
        while i < len(lines) and lines[i].strip():
            block.append(_DIRECTIVE.sub("", lines[i][len(indent):] if lines[i].startswith(indent) else lines[i]))
            i += 1
        out += [indent + "```pycon", *(indent + b for b in block), indent + "```"]
    return "\n".join(out)


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def lift_args_prose(text: str) -> str:
    r"""Move the closing sentences of an ``Args:`` section (item-level lines without ``name:``) after it.

    >>> lift_args_prose("Args:\n    x: a value.\n    The rest goes to `Learner`.\n").splitlines()
    ['Args:', '    x: a value.', '', 'The rest goes to `Learner`.']
    """
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        out.append(lines[i])
        if not _ARGS_SECTION.match(lines[i]):
            i += 1
            continue
        i += 1
        block = []
        while i < len(lines) and (not lines[i].strip() or lines[i][:1] in (" ", "\t")):
            block.append(lines[i])
            i += 1
        filled = [j for j, line in enumerate(block) if line.strip()]
        if not filled:
            out += block
            continue
        level = min(_indent(block[j]) for j in filled)
        items = [j for j in filled if _indent(block[j]) == level]
        start = next((j for j in items if all(":" not in block[k] for k in items if k >= j)), None)
        if start is None:
            out += block
            continue
        out += block[:start] + [""] + [line.strip() for line in block[start:]]
    return "\n".join(out)


class DoctestBlocks(griffe.Extension):
    """Rewrite each loaded object's docstring with `lift_args_prose` and `fence_doctests`."""

    def on_object(self, *, obj: griffe.Object, loader: Any, **kwargs: Any) -> None:  # noqa: ARG002
        if obj.docstring is None:
            return
        value = obj.docstring.value
        if ":" in value:
            value = lift_args_prose(value)
        if ">>>" in value:
            value = fence_doctests(value)
        obj.docstring.value = value
