"""MkDocs hook: leave optional pages out of the navigation while their source does not exist yet.

``docs/bad-inputs.md`` is written alongside the code that raises the errors it lists; until it lands the
site builds (strictly) without that entry instead of failing on a missing nav target. Every other nav
entry must exist: a typo in ``mkdocs.yml`` still fails ``mkdocs build --strict``.
"""
from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger("mkdocs.hooks.learnkit")

OPTIONAL_PAGES = frozenset({"bad-inputs.md"})


def _prune(nav: list, docs_dir: Path) -> list:
    out = []
    for entry in nav:
        if isinstance(entry, dict):
            (title, target), = entry.items()
            if isinstance(target, list):
                target = _prune(target, docs_dir)
                if not target:
                    continue
            elif target in OPTIONAL_PAGES and not (docs_dir / target).is_file():
                log.info("optional page %s not written yet: left out of the navigation", target)
                continue
            out.append({title: target})
        elif isinstance(entry, str) and entry in OPTIONAL_PAGES and not (docs_dir / entry).is_file():
            continue
        else:
            out.append(entry)
    return out


def on_config(config):
    if config.nav:
        config.nav = _prune(config.nav, Path(config.docs_dir))
    return config
