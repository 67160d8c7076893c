"""MkDocs hooks: optional pages, and the lesson notebooks as pages of the gallery.

``docs/bad-inputs.md`` is written alongside the code that raises the errors it lists; until it lands the
site builds (strictly) without that entry instead of failing on a missing nav target. Every other nav
entry must exist: a typo in ``mkdocs.yml`` still fails ``mkdocs build --strict``.

The notebooks stay where they are run from, ``examples/notebooks/``; ``on_files`` adds each one to the site
as ``notebooks/<name>.ipynb`` (the page ``notebooks/<name>/``), before mkdocs-jupyter turns ``.ipynb`` files
into pages, with the outputs stored in them: nothing is executed at build time.
"""
from __future__ import annotations

import logging
from pathlib import Path

try:
    from mkdocs.plugins import event_priority
except ImportError:  # the helpers below are tested without the docs extra too
    def event_priority(priority: int):
        return lambda event: event

log = logging.getLogger("mkdocs.hooks.learnkit")

OPTIONAL_PAGES = frozenset({"bad-inputs.md"})
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


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


def notebook_files(config, examples: Path = EXAMPLES) -> list:
    """One ``notebooks/<name>.ipynb`` file of the site per notebook in ``examples/notebooks``, read there."""
    from mkdocs.structure.files import File

    return [File(f"notebooks/{path.name}", src_dir=str(examples), dest_dir=config.site_dir,
                 use_directory_urls=config.use_directory_urls)
            for path in sorted((examples / "notebooks").glob("*.ipynb"))]


@event_priority(100)  # before mkdocs-jupyter's on_files, which makes pages of the .ipynb files
def on_files(files, config):
    for file in notebook_files(config):
        if files.get_file_from_path(file.src_uri) is None:
            files.append(file)
    return files
