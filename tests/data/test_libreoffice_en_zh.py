"""The LibreOffice English-Chinese pairs: help units aligned by page and id, interface
strings from gettext catalogues, untranslated units dropped, renderings kept together,
and the packages read without dpkg."""

import io
import struct
import tarfile

import pytest

from tfhf.data import debian_archive
from tfhf.data.libreoffice_en_zh import (
    CATALOGUES,
    HELP_ROOTS,
    aligned_pairs,
    help_pairs,
    help_units,
    read_packages,
    split_of,
    ui_pairs,
)
from tfhf.errors import TfhfError


def _mo(messages: dict[str, str]) -> bytes:
    """A GNU gettext catalogue (.mo) of `messages`, with the UTF-8 header gettext needs."""
    entries = {"": "Content-Type: text/plain; charset=UTF-8\n", **messages}
    keys = sorted(entries)
    originals = [k.encode() for k in keys]
    translations = [entries[k].encode() for k in keys]
    n = len(keys)
    table_start = 7 * 4
    data_start = table_start + 16 * n
    data, offsets = b"", []
    for text in originals + translations:
        offsets.append((len(text), data_start + len(data)))
        data += text + b"\0"
    header = struct.pack("<7I", 0x950412DE, 0, n, table_start, table_start + 8 * n, 0, 0)
    tables = b"".join(struct.pack("<2I", *o) for o in offsets)
    return header + tables + data


def _tar_xz(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:xz") as archive:
        for name, body in files.items():
            info = tarfile.TarInfo(f"./{name}")
            info.size = len(body)
            archive.addfile(info, io.BytesIO(body))
    return out.getvalue()


def _deb(path, name: str, files: dict[str, bytes]):
    """A .deb (ar archive) holding `files` in its data and a control file."""
    control = f"Package: {name}\nVersion: 1:2.3-4\nArchitecture: all\n".encode()
    members = [
        ("debian-binary", b"2.0\n"),
        ("control.tar.xz", _tar_xz({"control": control})),
        ("data.tar.xz", _tar_xz(files)),
    ]
    with open(path, "wb") as f:
        f.write(b"!<arch>\n")
        for member, body in members:
            f.write(f"{member:<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(body):<10}`\n".encode())
            f.write(body + (b"\n" if len(body) % 2 else b""))


def _page(units: dict[str, str]) -> str:
    body = "".join(
        f'<p id="{ident}" class="paragraph">{text}</p>\n' for ident, text in units.items()
    )
    return f"<html><body><div id='DisplayArea'>{body}</div></body></html>"


def test_help_units_keep_the_default_variant_of_a_switch_and_skip_unnamed_elements():
    page = (
        '<h1 id="hd_id1">Find &amp; Replace</h1><p class="embedded">not a unit</p>'
        '<p id="par_id2" class="paragraph">Press <span class="switchinline">'
        '<span hidden="true" id="MAC2" class="MAC">Command</span>'
        '<span hidden="true" id="default2">Ctrl</span></span>+H.<br></p>'
        '<div class="switch"><div hidden id="CALC3"><p id="par_id3">In Calc</p></div>'
        '<div hidden id="default3"><p id="par_id4">Elsewhere</p></div></div>'
    )
    assert help_units(page) == {
        "hd_id1": "Find & Replace",
        "par_id2": "Press Ctrl+H.",
        "par_id4": "Elsewhere",
    }


def test_help_pairs_align_by_page_and_id_not_by_position():
    english = {"a.html": _page({"par_id1": "Open a file.", "par_id2": "Save it."})}
    chinese = {"a.html": _page({"par_id2": "保存它。", "par_id1": "打开文件。"}), "b.html": ""}
    assert help_pairs(english, chinese) == [
        ("help/a.html", "Open a file.", "打开文件。"),
        ("help/a.html", "Save it.", "保存它。"),
    ]


def test_ui_pairs_strip_mnemonics_and_keep_the_dialog_as_document():
    catalogue = _mo(
        {
            "optsavepage|label1\x04_Horizontal": "水平(_H):",
            "STR_OPEN\x04~Open": "打开(~O)",
            "RID_X\x04Untranslated": "",
        }
    )
    pairs = ui_pairs({"cui": catalogue})
    assert ("ui/cui/optsavepage", "Horizontal", "水平:") in pairs
    assert ("ui/cui/STR_OPEN", "Open", "打开") in pairs
    # An empty translation stays a unit here; aligned_pairs drops it.
    assert ("ui/cui/RID_X", "Untranslated", "") in pairs
    kept = [(e, z) for split in aligned_pairs(pairs).values() for _, e, z in split]
    assert sorted(kept) == [("Horizontal", "水平:"), ("Open", "打开")]


def test_aligned_pairs_drop_untranslated_keep_each_pair_once_and_renderings_together():
    # Documents chosen so that their own splits differ from the first document's.
    documents = [f"help/page{i}.html" for i in range(200)]
    first = documents[0]
    other = next(d for d in documents if split_of(d) != split_of(first))
    units = [
        (first, "Save", "保存"),
        (other, "Save", "存储"),  # a second rendering: follows "Save"'s first document
        (other, "Save", "保存"),  # the same pair again: kept once
        (other, "Print", "Print"),  # left in English: dropped
        (other, "Close", ""),  # missing on the Chinese page: dropped
        (other, "Open", "打开"),
    ]
    splits = aligned_pairs(units)
    by_pair = {(e, z): name for name, kept in splits.items() for _, e, z in kept}
    assert sorted(by_pair) == [("Open", "打开"), ("Save", "保存"), ("Save", "存储")]
    assert by_pair[("Save", "存储")] == by_pair[("Save", "保存")] == split_of(first)
    assert by_pair[("Open", "打开")] == split_of(other)


def test_splits_follow_documents_in_roughly_ninety_five_five():
    names = [split_of(f"help/text/page{i}.html") for i in range(4000)]
    shares = {s: names.count(s) / len(names) for s in ("train", "validation", "test")}
    assert 0.87 < shares["train"] < 0.93
    assert 0.03 < shares["validation"] < 0.07 and 0.03 < shares["test"] < 0.07


def test_read_packages_reads_help_and_catalogues_from_debs_without_dpkg(tmp_path):
    en_root, zh_root = HELP_ROOTS
    _deb(
        tmp_path / "libreoffice-help-en-us_1%3a2.3-4_all.deb",
        "libreoffice-help-en-us",
        {
            f"{en_root}shared/a.html": _page({"hd_id1": "Fonts"}).encode(),
            f"{en_root}shared/a.js": b"ignored",
        },
    )
    _deb(
        tmp_path / "libreoffice-help-zh-cn_1%3a2.3-4_all.deb",
        "libreoffice-help-zh-cn",
        {f"{zh_root}shared/a.html": _page({"hd_id1": "字体"}).encode()},
    )
    _deb(
        tmp_path / "libreoffice-l10n-zh-cn_1%3a2.3-4_all.deb",
        "libreoffice-l10n-zh-cn",
        {f"{CATALOGUES}sw.mo": _mo({"insertbreak|ok\x04_Insert": "插入(_I)"})},
    )
    assert read_packages(tmp_path) == [
        ("help/shared/a.html", "Fonts", "字体"),
        ("ui/sw/insertbreak", "Insert", "插入"),
    ]
    deb = next(tmp_path.glob("libreoffice-help-zh-cn_*.deb"))
    assert debian_archive._control_field(deb, "Version") == "1:2.3-4"


def test_a_missing_package_or_a_file_that_is_not_a_deb_is_named(tmp_path):
    with pytest.raises(TfhfError, match="no .deb of libreoffice-help-en-us"):
        read_packages(tmp_path)
    bad = tmp_path / "x.deb"
    bad.write_bytes(b"PK\x03\x04 not an ar archive")
    with pytest.raises(TfhfError, match="x.deb is not a Debian package"):
        list(debian_archive.deb_members(bad))
