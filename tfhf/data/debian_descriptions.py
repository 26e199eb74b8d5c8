"""Debian package descriptions as a summarization dataset: a package's long description in,
its one-line synopsis out.

The text comes from the English index of Debian's description translation project,
`Translation-en` of bookworm main. With apt on the machine it is fetched by apt itself, into
a private lists folder, so apt checks the release file's signature against Debian's archive
keyring and the index against the release file's hash; elsewhere it comes from a Debian
mirror over HTTPS, checked against the (then unsigned) release file. The index changes at
Debian point releases: its sha256 and the release it belongs to are recorded, and each
digest is prepared into a tfds dataset of its own. Splits follow package names, not file
order, so a package keeps its split across releases.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import lzma
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import tensorflow_datasets as tfds

from tfhf.data import debian_archive
from tfhf.errors import TfhfError

SUITE = debian_archive.SUITE
INDEX_FILE = "Translation-en"
# Long descriptions shorter than this have little to summarize.
MIN_SOURCE_WORDS = 25
# Of every 200 packages (by a hash of the name): 180 train, 10 validation, 10 test.
_BUCKETS, _VALIDATION_FROM, _TEST_FROM = 200, 180, 190


@dataclasses.dataclass(frozen=True)
class DescriptionIndex:
    """A fetched, verified `Translation-en`.

    Attributes:
      folder: Holds the uncompressed index as `Translation-en`.
      sha256: Digest of the uncompressed index, as the release file lists it.
      release: The Debian release it belongs to, e.g. "Debian 12.15 (Sat, 11 Jul 2026)".
      via: "apt" (signature and hash checked by apt) or "https" (hash checked against the
        release file fetched over TLS).
    """

    folder: Path
    sha256: str
    release: str
    via: str

    @property
    def description(self) -> str:
        return f"debian_descriptions ({self.release}, {INDEX_FILE} sha256 {self.sha256[:12]})"


def _through_apt(work: Path) -> tuple[Path, str]:
    """(uncompressed index, InRelease text) fetched by apt into a private lists folder."""
    done = debian_archive.apt_get(work, "update", languages="en", packages=False)
    lists = work / "lists"
    compressed = sorted(lists.glob(f"*_dists_{SUITE}_main_i18n_{INDEX_FILE}*"))
    in_release = sorted(lists.glob(f"*_dists_{SUITE}_InRelease"))
    if done.returncode or not compressed or not in_release or "W: " in done.stderr:
        reason = (done.stderr.strip().splitlines() or ["no index fetched"])[-1]
        raise TfhfError(f"apt could not fetch Debian's {SUITE} {INDEX_FILE}: {reason}")
    index = work / INDEX_FILE
    with open(index, "wb") as out:
        subprocess.run(
            ["/usr/lib/apt/apt-helper", "cat-file", str(compressed[0])], stdout=out, check=True
        )
    return index, in_release[0].read_text(encoding="utf-8")


def _through_https(work: Path) -> tuple[Path, str]:
    """(uncompressed index, InRelease text) fetched from a Debian mirror over HTTPS."""
    base = f"{debian_archive.MIRROR}/dists/{SUITE}"
    in_release = debian_archive.fetch_text(f"{base}/InRelease").decode("utf-8")
    packed = debian_archive.fetch_text(f"{base}/main/i18n/{INDEX_FILE}.xz")
    index = work / INDEX_FILE
    index.write_bytes(lzma.decompress(packed))
    return index, in_release


def fetch_index(home: Path) -> DescriptionIndex:
    """The verified index, fetched on first use and cached under `home`.

    With apt and Debian's archive keyring on the machine, apt fetches it; otherwise a
    Debian mirror over HTTPS does.
    """
    cached = home / "debian_descriptions" / SUITE
    record = cached / "index.json"
    if record.is_file():
        saved = json.loads(record.read_text())
        if (cached / INDEX_FILE).is_file():
            return DescriptionIndex(cached, saved["sha256"], saved["release"], saved["via"])
    via = "apt" if debian_archive.apt_available() else "https"
    print(
        f"tfhf: fetching Debian's {SUITE} package descriptions ({INDEX_FILE}) by {via}", flush=True
    )
    cached.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".fetch-", dir=cached.parent))
    try:
        index, in_release = (_through_apt if via == "apt" else _through_https)(work)
        release = debian_archive.release_name(in_release)
        expected = debian_archive.release_digest(in_release, f"main/i18n/{INDEX_FILE}")
        actual = debian_archive.sha256_of(index)
        if actual != expected:
            raise TfhfError(
                f"Debian's {INDEX_FILE} has sha256 {actual}, but its release file says "
                f"{expected}; refusing to use it"
            )
        folder = work / "ready"
        folder.mkdir()
        os.replace(index, folder / INDEX_FILE)
        (folder / "index.json").write_text(
            json.dumps({"sha256": actual, "release": release, "via": via}, indent=2) + "\n"
        )
        shutil.rmtree(cached, ignore_errors=True)
        os.replace(folder, cached)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return DescriptionIndex(cached, actual, release, via)


def parse_descriptions(text: str) -> list[tuple[str, str, list[str]]]:
    """(package, synopsis, paragraphs of the long description) for each block of the index.

    Example:
      >>> parse_descriptions("Package: x\\nDescription-en: A tool\\n One.\\n .\\n Two.\\n")
      [('x', 'A tool', ['One.', 'Two.'])]
    """
    entries = []
    for block in text.split("\n\n"):
        package = synopsis = None
        paragraphs: list[list[str]] = [[]]
        in_description = False
        for line in block.splitlines():
            if line.startswith("Package: "):
                package = line[len("Package: ") :].strip()
            elif line.startswith("Description-en: "):
                synopsis = line[len("Description-en: ") :].strip()
                in_description = True
            elif in_description and line.startswith(" "):
                if line.strip() == ".":
                    paragraphs.append([])
                else:
                    paragraphs[-1].append(line.strip())
            else:
                in_description = False
        if package and synopsis:
            joined = [" ".join(p) for p in paragraphs if p]
            entries.append((package, synopsis, joined))
    return entries


def summary_pairs(entries) -> list[tuple[str, str, str]]:
    """(package, source, target) pairs: the long description (paragraphs joined by a line
    break) and the synopsis.

    Long descriptions under `MIN_SOURCE_WORDS` words are dropped, a package is kept once, and
    of the packages that
    share a first paragraph (a library's -dev, -doc and -common packages) only the one with
    the alphabetically first name is kept, so that copies cannot straddle the splits.
    """
    kept: dict[str, tuple[str, str, str]] = {}
    seen = set()
    for package, synopsis, paragraphs in sorted(entries):
        source = "\n".join(paragraphs)
        # A package listed twice (one description per architecture) is kept once.
        if package in seen or len(source.split()) < MIN_SOURCE_WORDS:
            continue
        seen.add(package)
        kept.setdefault(paragraphs[0], (package, source, synopsis))
    return sorted(kept.values())


def split_of(package: str) -> str:
    """The split a package belongs to, from a hash of its name alone.

    Example:
      >>> split_of("bash"), split_of("0ad")
      ('train', 'validation')
    """
    bucket = int.from_bytes(hashlib.sha256(package.encode()).digest()[:8], "big") % _BUCKETS
    if bucket >= _TEST_FROM:
        return "test"
    return "validation" if bucket >= _VALIDATION_FROM else "train"


class DebianDescriptions(tfds.core.GeneratorBasedBuilder):
    """Debian package descriptions: `source` the long description, `target` the synopsis."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Long descriptions of 25 words or more, one per first paragraph."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        f"Place Debian's {SUITE} main {INDEX_FILE} (uncompressed) in the manual folder; tfhf "
        "does this for you with tfhf.data.debian_descriptions.fetch_index."
    )

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(
                {
                    "package": tfds.features.Text(),
                    "source": tfds.features.Text(),
                    "target": tfds.features.Text(),
                }
            ),
            supervised_keys=("source", "target"),
            homepage="https://ddtp.debian.org/",
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        text = (Path(dl_manager.manual_dir) / INDEX_FILE).read_text(encoding="utf-8")
        pairs = summary_pairs(parse_descriptions(text))
        return {
            split: self._generate_examples([p for p in pairs if split_of(p[0]) == split])
            for split in ("train", "validation", "test")
        }

    def _generate_examples(self, pairs):
        for package, source, target in pairs:
            yield package, {"package": package, "source": source, "target": target}
