"""`merci catalogs update|check`: the translation catalogs (merci/locale) against the
strings the code and the templates use, as Babel's extractor finds them with the
mapping in babel.cfg (`_`, `gettext`, `ngettext`, `N_` … in Python and Jinja2).

`update` adds new strings to every catalog (untranslated, or fuzzy when Babel finds
a near one: a translator confirms it), and drops those no code uses any more.
`check` names every string a catalog lacks, leaves untranslated (English, the
source language, may), marks fuzzy, or keeps without a use, and every translation
whose placeholders differ from its source's. Run from a source checkout.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po, write_po

from merci import i18n

ROOT = Path(__file__).resolve().parents[1]
MAPPING = ROOT / "babel.cfg"
COMMENT_TAG = "TRANSLATORS:"  # a comment starting so, just above a string, is shown to translators
NOT_SOURCE = frozenset({"tests", "bench", "docs", "gateway", "k8s", "node_modules", "build", "dist"})


def _source_dir(path: str) -> bool:
    return Path(path).name not in NOT_SOURCE and not Path(path).name.startswith((".", "_"))


def extract(root: Path = ROOT) -> Catalog:
    """Every string the code and templates under `root` mark for translation."""
    with MAPPING.open() as f:
        method_map, options_map = parse_mapping_cfg(f, str(MAPPING))  # type: ignore[no-untyped-call]
    template = Catalog(domain=i18n.DOMAIN, project="Merci", charset="utf-8", fuzzy=False)
    for filename, lineno, message, comments, context in extract_from_dir(
            root, method_map, options_map, comment_tags=(COMMENT_TAG,), strip_comment_tags=True,
            directory_filter=_source_dir):
        template.add(message, None, [(Path(filename).as_posix(), lineno)], auto_comments=comments, context=context)
    return template


def _read(lang: str) -> Catalog:
    with i18n.catalog_path(lang).open("rb") as f:
        return read_po(f, locale=lang, domain=i18n.DOMAIN)


def _render(catalog: Catalog) -> bytes:
    out = io.BytesIO()
    # File names without line numbers: a catalog changes when its strings do, not
    # whenever code above a string moves.
    write_po(out, catalog, width=100, sort_by_file=True, ignore_obsolete=True, include_lineno=False)
    return out.getvalue()


def update() -> list[Path]:
    """Brings every catalog up to date with the code; the paths it rewrote."""
    template = extract()
    changed = []
    for lang in i18n.LANGUAGES:
        path = i18n.catalog_path(lang)
        catalog = _read(lang)
        catalog.update(template, update_creation_date=False)
        after = _render(catalog)
        if after != path.read_bytes():
            path.write_bytes(after)
            changed.append(path)
    return changed


def problems(template: Catalog | None = None) -> list[str]:
    """What `check` reports, one line each; empty when the catalogs are complete."""
    template = template or extract()
    wanted = {m.id if isinstance(m.id, str) else m.id[0]: m for m in template if m.id}
    found = []
    for lang in i18n.LANGUAGES:
        catalog = _read(lang)
        name = os.path.relpath(i18n.catalog_path(lang), ROOT)
        have = {m.id if isinstance(m.id, str) else m.id[0]: m for m in catalog if m.id}
        for key, m in wanted.items():
            where = ", ".join(sorted({loc for loc, _ in m.locations}))
            entry = have.get(key)
            if entry is None:
                found.append(f"{name}: missing {key!r} (used in {where})")
            elif isinstance(m.id, tuple) != isinstance(entry.id, tuple) or entry.id != m.id:
                found.append(f"{name}: {key!r} is {'not ' if isinstance(m.id, tuple) else ''}a plural in the code")
            elif entry.fuzzy:
                found.append(f"{name}: {key!r} is fuzzy (a translator must confirm it)")
            elif lang != i18n.DEFAULT and not _translated(entry.string):
                found.append(f"{name}: {key!r} is not translated")
        for key in have.keys() - wanted.keys():
            found.append(f"{name}: {key!r} is used nowhere (merci catalogs update drops it)")
        for message, errors in catalog.check():
            found += [f"{name}: {message.id!r}: {error}" for error in errors]
    return found


def _translated(string: str | tuple[str, ...] | list[str] | None) -> bool:
    return all(string) if isinstance(string, (tuple, list)) else bool(string)
