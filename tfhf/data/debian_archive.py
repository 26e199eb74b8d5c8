"""Files from Debian's archive (bookworm main), fetched by name and verified.

With apt and Debian's archive keyring on the machine, apt itself fetches them, into a
private lists folder (nothing of the machine's own apt setup is read or changed), so apt
checks the release file's signature and every file against the hashes it lists. Elsewhere
they come from a Debian mirror over HTTPS, checked against the release file fetched over
TLS. Packages are read in Python (`deb_members`), so no dpkg is needed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import lzma
import os
import re
import shutil
import subprocess
import tarfile
import urllib.request
from pathlib import Path

from tfhf.errors import TfhfError

SUITE = "bookworm"
MIRROR = "https://deb.debian.org/debian"
# apt checks the release file's signature itself, so it needs no TLS.
APT_MIRROR = "http://deb.debian.org/debian"
KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")


def apt_available() -> bool:
    return bool(shutil.which("apt-get")) and KEYRING.is_file()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def release_digest(in_release: str, path: str) -> str:
    """The sha256 a release file lists for `path` (relative to the suite, e.g.
    "main/i18n/Translation-en")."""
    found = re.search(rf"^ ([0-9a-f]{{64}}) +\d+ {re.escape(path)}$", in_release, re.M)
    if not found:
        raise TfhfError(f"the {SUITE} release file lists no sha256 for {path}")
    return found.group(1)


def release_name(in_release: str) -> str:
    """E.g. "Debian 12.15 (Sat, 11 Jul 2026)"."""
    version = re.search(r"^Version: (.+)$", in_release, re.M)
    date = re.search(r"^Date: (.+)$", in_release, re.M)
    if not (version and date):
        raise TfhfError(f"the {SUITE} release file lacks its version or date")
    day = re.sub(r" \d\d:\d\d:\d\d.*$", "", date.group(1))
    return f"Debian {version.group(1)} ({day})"


def apt_get(work: Path, *arguments: str, languages: str = "none", packages: bool = True):
    """Runs apt-get with its lists, cache and sources in the private folder `work`;
    `languages` picks the description indexes fetched, `packages` the Packages indexes."""
    lists = work / "lists"
    (lists / "partial").mkdir(parents=True, exist_ok=True)
    (work / "cache").mkdir(exist_ok=True)
    sources = work / "sources.list"
    sources.write_text(f"deb [signed-by={KEYRING}] {APT_MIRROR} {SUITE} main\n")
    options = {
        "Dir::State::Lists": lists,
        "Dir::Cache": work / "cache",
        "Dir::Etc::SourceList": sources,
        "Dir::Etc::SourceParts": work / "no-parts",
        "Acquire::Languages": languages,
        "Acquire::IndexTargets::deb::Packages::DefaultEnabled": str(packages).lower(),
        "Debug::NoLocking": "1",
    }
    if os.geteuid() == 0:
        options["APT::Sandbox::User"] = "root"  # the private folder is not _apt's to write
    command = ["apt-get", "-qq"]
    for key, value in options.items():
        command += ["-o", f"{key}={value}"]
    return subprocess.run(
        command + list(arguments), capture_output=True, text=True, timeout=900, cwd=work
    )


def fetch_text(url: str) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=120) as response:
            return response.read()
    except OSError as e:
        raise TfhfError(f"cannot fetch {url}: {e}") from None


@dataclasses.dataclass(frozen=True)
class DebianPackage:
    """A fetched, verified binary package."""

    name: str
    version: str
    sha256: str
    path: Path


def _archive(path: Path, prefix: str) -> tarfile.TarFile:
    """The tar archive `prefix`* (control.tar or data.tar) of the .deb at `path`."""
    with open(path, "rb") as f:
        if f.read(8) != b"!<arch>\n":
            raise TfhfError(f"{path.name} is not a Debian package")
        while header := f.read(60):
            name = header[:16].decode().strip().rstrip("/")
            size = int(header[48:58])
            body = f.read(size)
            f.read(size % 2)  # members start at even offsets
            if name.startswith(prefix):
                break
        else:
            raise TfhfError(f"{path.name} holds no {prefix}")
    if name.endswith(".xz"):
        body = lzma.decompress(body)
    elif not name.endswith((".gz", ".tar")):
        raise TfhfError(f"{path.name}: cannot read its {name}")
    return tarfile.open(fileobj=io.BytesIO(body))


def deb_members(path: Path, under: str = ""):
    """(name, bytes) of each regular file of a .deb's data whose path starts with `under`
    (paths as "usr/share/..."), read without dpkg."""
    with _archive(path, "data.tar") as archive:
        for member in archive:
            relative = member.name.removeprefix("./")
            if member.isfile() and relative.startswith(under):
                yield relative, archive.extractfile(member).read()


def _control_field(path: Path, field: str) -> str:
    with _archive(path, "control.tar") as archive:
        control = archive.extractfile("./control").read().decode("utf-8")
    found = re.search(rf"^{field}: (.+)$", control, re.M)
    if not found:
        raise TfhfError(f"{path.name}: its control file has no {field}")
    return found.group(1).strip()


def _download_with_apt(names: list[str], work: Path) -> list[Path]:
    done = apt_get(work, "update")
    if done.returncode or "W: " in done.stderr:
        reason = (done.stderr.strip().splitlines() or ["no index fetched"])[-1]
        raise TfhfError(f"apt could not fetch Debian's {SUITE} package index: {reason}")
    done = apt_get(work, "download", *names)
    if done.returncode:
        reason = (done.stderr.strip().splitlines() or ["nothing downloaded"])[-1]
        raise TfhfError(f"apt could not download {', '.join(names)}: {reason}")
    return [next(work.glob(f"{name}_*.deb")) for name in names]


def _download_with_https(names: list[str], work: Path) -> list[Path]:
    base = f"{MIRROR}/dists/{SUITE}"
    in_release = fetch_text(f"{base}/InRelease").decode("utf-8")
    listed = "main/binary-all/Packages.xz"
    packed = fetch_text(f"{base}/{listed}")
    if hashlib.sha256(packed).hexdigest() != release_digest(in_release, listed):
        raise TfhfError(f"Debian's {listed} does not match its release file; refusing it")
    stanzas = {}
    for stanza in lzma.decompress(packed).decode("utf-8").split("\n\n"):
        fields = dict(re.findall(r"^([A-Za-z0-9-]+): (.*)$", stanza, re.M))
        if "Package" in fields:
            stanzas[fields["Package"]] = fields
    paths = []
    for name in names:
        if name not in stanzas:
            raise TfhfError(f"Debian {SUITE} main has no architecture-independent package {name}")
        fields = stanzas[name]
        deb = work / Path(fields["Filename"]).name
        deb.write_bytes(fetch_text(f"{MIRROR}/{fields['Filename']}"))
        if sha256_of(deb) != fields["SHA256"]:
            raise TfhfError(f"{deb.name} does not match Debian's package index; refusing it")
        paths.append(deb)
    return paths


def download_packages(names: list[str], folder: Path) -> list[DebianPackage]:
    """The current versions of the binary packages `names` in Debian bookworm main, fetched
    into `folder` (by apt where it can, else over HTTPS) and verified.

    Debian keeps only the current version of a package: the version and digest fetched are
    what a run records.
    """
    via = "apt" if apt_available() else "https"
    print(f"tfhf: fetching Debian {SUITE} packages {', '.join(names)} by {via}", flush=True)
    folder.mkdir(parents=True, exist_ok=True)
    fetched = (_download_with_apt if via == "apt" else _download_with_https)(names, folder)
    return [
        DebianPackage(name, _control_field(path, "Version"), sha256_of(path), path)
        for name, path in zip(names, fetched, strict=True)
    ]
