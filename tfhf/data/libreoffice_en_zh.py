"""LibreOffice's help and user interface in English and Simplified Chinese, as a translation
dataset (MPL-2.0).

Three Debian packages carry it: `libreoffice-help-en-us` and `libreoffice-help-zh-cn` (the
help pages, in which every heading and paragraph has the same id in both languages, so
pairs align exactly by page and id) and `libreoffice-l10n-zh-cn` (the interface strings'
gettext catalogues: English message, Chinese translation). Units the translators left in
English are dropped, and a pair occurring more than once is kept once. Debian keeps only
the current version of these packages, so the versions and digests fetched are recorded and
each set of them is prepared into a tfds dataset of its own.

Splits follow documents (a help page, an interface file), not pairs, so a page's similar
paragraphs cannot straddle train and test; an English text with several Chinese renderings
keeps all of them in the split of the first document it occurs in.
"""

from __future__ import annotations

import gettext
import hashlib
import io
import json
import os
import re
import shutil
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import tensorflow_datasets as tfds

from tfhf.data import debian_archive
from tfhf.errors import TfhfError

PACKAGES = ("libreoffice-help-en-us", "libreoffice-help-zh-cn", "libreoffice-l10n-zh-cn")
HELP_ROOTS = ("usr/share/libreoffice/help/en-US/text/", "usr/share/libreoffice/help/zh-CN/text/")
CATALOGUES = "usr/lib/libreoffice/program/resource/zh_CN/LC_MESSAGES/"
# Of every 100 documents (by a hash of the name): 90 train, 5 validation, 5 test.
_BUCKETS, _VALIDATION_FROM, _TEST_FROM = 100, 90, 95
_UNIT_ID = re.compile(r"^(hd|par)_id")
_VOID_TAGS = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "wbr"}
_SWITCH_CLASSES = {"switch", "switchinline"}


class _HelpPage(HTMLParser):
    """The text of each heading and paragraph (`hd_id...`, `par_id...`) of a help page.

    A switch holds one variant per platform or module, all hidden but one chosen by the
    page's script: only the default variant is kept, so that "Command" (macOS) and "Ctrl"
    are not glued together.
    """

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.units: dict[str, str] = {}
        self._open: list[tuple[str, str | None, bool, bool]] = []  # tag, unit, skipped, switch
        self._unit: str | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag in _VOID_TAGS:
            return
        attributes = dict(attrs)
        ident = attributes.get("id") or ""
        _, _, skipped, in_switch = self._open[-1] if self._open else ("", None, False, False)
        skipped = skipped or (in_switch and not ident.startswith("default"))
        unit = ident if self._unit is None and not skipped and _UNIT_ID.match(ident) else None
        if unit:
            self._unit, self._text = unit, []
        switch = attributes.get("class") in _SWITCH_CLASSES
        self._open.append((tag, unit, skipped, switch))

    def handle_endtag(self, tag):
        # Closes what the tag closes, also elements whose end tag the page left out.
        if not any(entry[0] == tag for entry in self._open):
            return
        while self._open:
            opened, unit, _, _ = self._open.pop()
            if unit:
                self.units.setdefault(unit, " ".join("".join(self._text).split()))
                self._unit = None
            if opened == tag:
                break

    def handle_data(self, data):
        if self._unit and not (self._open and self._open[-1][2]):
            self._text.append(data)


def help_units(page: str) -> dict[str, str]:
    """Text of each heading and paragraph of a help page, by id.

    Example:
      >>> help_units('<h1 id="hd_id1">Save</h1><p id="par_id2">Press <span '
      ...            'class="switchinline"><span hidden id="MAC1">Command</span><span hidden '
      ...            'id="default1">Ctrl</span></span>+S.</p>')
      {'hd_id1': 'Save', 'par_id2': 'Press Ctrl+S.'}
    """
    parser = _HelpPage()
    parser.feed(page)
    parser.close()
    return parser.units


def help_pairs(english: dict[str, str], chinese: dict[str, str]) -> list[tuple[str, str, str]]:
    """(page, English, Chinese) for each unit both versions of a page have; `english` and
    `chinese` map a page's path to its HTML."""
    found = []
    for page in sorted(english.keys() & chinese.keys()):
        chinese_units = help_units(chinese[page])
        for ident, text in help_units(english[page]).items():
            found.append((f"help/{page}", text, chinese_units.get(ident, "")))
    return found


def _without_mnemonic(text: str, *, chinese: bool) -> str:
    """The label without its keyboard mnemonic: "~Open" and "_Open" are "Open"; the
    Chinese side marks it as "打开(~O)" or "打开(_O)"."""
    if chinese:
        text = re.sub(r"\s*\([~_][^\W_]\)", "", text)
    return re.sub(r"[~_](?=[^\W_])", "", text, count=1)


def ui_pairs(catalogues: dict[str, bytes]) -> list[tuple[str, str, str]]:
    """(interface file, English, Chinese) for each message of the gettext catalogues
    `catalogues` (name -> .mo bytes); the file is the part of the message's context before
    "|" (LibreOffice's contexts read "dialog|widget")."""
    found = []
    for name in sorted(catalogues):
        messages = gettext.GNUTranslations(io.BytesIO(catalogues[name]))._catalog
        for key, translated in sorted(messages.items(), key=lambda item: str(item[0])):
            if not isinstance(key, str) or not key or not isinstance(translated, str):
                continue  # the catalogue's header, plural forms
            context, _, english = key.rpartition("\x04")
            document = f"ui/{name}/{context.split('|')[0]}"
            found.append(
                (
                    document,
                    " ".join(_without_mnemonic(english, chinese=False).split()),
                    " ".join(_without_mnemonic(translated, chinese=True).split()),
                )
            )
    return found


def split_of(document: str) -> str:
    """The split of a document, from a hash of its name alone.

    Example:
      >>> split_of("help/shared/main0108.html")
      'train'
    """
    bucket = int.from_bytes(hashlib.sha256(document.encode()).digest()[:8], "big") % _BUCKETS
    if bucket >= _TEST_FROM:
        return "test"
    return "validation" if bucket >= _VALIDATION_FROM else "train"


def aligned_pairs(units) -> dict[str, list[tuple[str, str, str]]]:
    """(document, English, Chinese) by split: untranslated and empty units dropped, each
    pair once, and every rendering of an English text in the split of the first document
    (in sorted order) it occurs in."""
    first_document: dict[str, str] = {}
    kept: dict[tuple[str, str], str] = {}
    for document, english, chinese in sorted(units):
        if not english or not chinese or english == chinese:
            continue
        first_document.setdefault(english, document)
        kept.setdefault((english, chinese), document)
    splits: dict[str, list[tuple[str, str, str]]] = {"train": [], "validation": [], "test": []}
    for (english, chinese), document in sorted(kept.items(), key=lambda item: item[1]):
        splits[split_of(first_document[english])].append((document, english, chinese))
    return splits


def read_packages(folder: Path) -> list[tuple[str, str, str]]:
    """All units (document, English, Chinese) of the three packages' .deb files in
    `folder`, untranslated ones included."""
    debs = {name: next(folder.glob(f"{name}_*.deb"), None) for name in PACKAGES}
    missing = [name for name, path in debs.items() if path is None]
    if missing:
        raise TfhfError(f"{folder}: no .deb of {', '.join(missing)}")
    pages = []
    for name, root in zip(PACKAGES[:2], HELP_ROOTS, strict=True):
        pages.append(
            {
                path[len(root) :]: data.decode("utf-8")
                for path, data in debian_archive.deb_members(debs[name], root)
                if path.endswith(".html")
            }
        )
    catalogues = {
        Path(path).stem: data
        for path, data in debian_archive.deb_members(debs[PACKAGES[2]], CATALOGUES)
        if path.endswith(".mo")
    }
    return help_pairs(*pages) + ui_pairs(catalogues)


def fetch_packages(home: Path) -> tuple[Path, dict]:
    """(folder of the three verified .deb files, their record: names, versions, sha256,
    how they were fetched), fetched on first use and cached under `home`."""
    cached = home / "libreoffice_en_zh"
    record_file = cached / "packages.json"
    if record_file.is_file():
        record = json.loads(record_file.read_text())
        if all((cached / p["file"]).is_file() for p in record["packages"]):
            return cached, record
    cached.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".fetch-", dir=cached.parent))
    try:
        ready = work / "ready"
        fetched = debian_archive.download_packages(list(PACKAGES), work / "apt")
        ready.mkdir()
        for package in fetched:
            os.replace(package.path, ready / package.path.name)
        record = {
            "source": f"Debian {debian_archive.SUITE} main",
            "fetched_by": "apt" if debian_archive.apt_available() else "https",
            "packages": [
                {
                    "name": p.name,
                    "version": p.version,
                    "sha256": p.sha256,
                    "file": p.path.name,
                }
                for p in fetched
            ],
        }
        (ready / "packages.json").write_text(json.dumps(record, indent=2) + "\n")
        shutil.rmtree(cached, ignore_errors=True)
        os.replace(ready, cached)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return cached, record


class LibreofficeEnZh(tfds.core.GeneratorBasedBuilder):
    """LibreOffice help and interface strings: `source` English, `target` Simplified
    Chinese, `document` the help page or interface file the pair comes from."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Help units aligned by page and id, and interface strings."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        f"Place the .deb files of {', '.join(PACKAGES)} (Debian bookworm) in the manual "
        "folder; tfhf does this for you with tfhf.data.libreoffice_en_zh.fetch_packages."
    )

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(
                {
                    "document": tfds.features.Text(),
                    "source": tfds.features.Text(),
                    "target": tfds.features.Text(),
                }
            ),
            supervised_keys=("source", "target"),
            homepage="https://help.libreoffice.org/",
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        splits = aligned_pairs(read_packages(Path(dl_manager.manual_dir)))
        return {name: self._generate_examples(pairs) for name, pairs in splits.items()}

    def _generate_examples(self, pairs):
        for i, (document, source, target) in enumerate(pairs):
            yield i, {"document": document, "source": source, "target": target}
