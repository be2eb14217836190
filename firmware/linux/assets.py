# SPDX-License-Identifier: GPL-2.0-or-later
"""Fetch the Linux guest's kernel and busybox with apt, and build its initramfs.

Usage: ``python -m firmware.linux.assets [fetch|path|initramfs] [--dir DIR]``

* ``fetch`` (the default): download the newest ``linux-image-6.1.0-N-cloud-amd64-unsigned`` (the
  package behind the ``linux-image-cloud-amd64`` metapackage, else the highest N apt knows) and
  ``busybox-static`` with ``apt-get download``, extract them with ``dpkg-deb -x``; download
  ``linux-perf`` and every package it depends on, directly or not (``apt-cache depends
  --recurse``, hard dependencies only), and extract them into one tree; build both initramfs
  images, print the paths.  When apt does not know the packages it runs ``apt-get update``
  first, which needs root.
* ``path``: print the paths of what is already there (``kernel=...``, ``initramfs=...``,
  ``perf_initramfs=...``).
* ``initramfs``: rebuild both initramfs images from the cached packages and freshly compiled
  test programs.

The cache directory is ``--dir``, else ``$PMU_VMM_LINUX_ASSETS``, else firmware/linux/cache/; it
is never committed.  Layout::

    debs/                        the downloaded packages
    kernel/boot/vmlinuz-VERSION  the bzImage (with config-VERSION and System.map-VERSION)
    kernel/PACKAGE               the kernel package's name and version
    busybox/bin/busybox          the static busybox
    perf/debs/                   linux-perf and its dependency closure
    perf/root/                   those packages extracted into one tree
    perf/PACKAGE                 linux-perf's name and version
    programs/                    the compiled test programs (firmware/linux/programs.py)
    initramfs.cpio.gz            the initramfs (firmware/linux/initramfs.py)
    initramfs-perf.cpio          the same plus /bin/perf, the shared libraries it needs
                                 (firmware/linux/libraries.py) and the dynamic loader

The perf image is not compressed: the guest kernel unpacks an uncompressed cpio several
seconds of emulation faster than a gzip one of this size (36 MB, 12 MB compressed).

Only boot/ of the kernel package is kept (its ~90 MB of modules are not needed: the cloud
kernel has what the VMM's guest needs built in).  :func:`ensure_assets` is the entry point for
tests: it fetches what is missing, rebuilds both initramfs images (byte-identical unless a
source changed) and raises :class:`AssetsUnavailable` with a one-line reason when it cannot.

Not supported: other distributions or Debian releases (the package names are Debian 12's),
choosing a kernel version, verifying anything beyond what apt verifies.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from firmware.linux.initramfs import Libraries, build_initramfs
from firmware.linux.libraries import LibraryError, interpreter, needed_libraries
from firmware.linux.programs import ProgramBuildError, build_programs

CACHE_ENV = "PMU_VMM_LINUX_ASSETS"
DEFAULT_CACHE = Path(__file__).resolve().parent / "cache"
KERNEL_METAPACKAGE = "linux-image-cloud-amd64"
# [0-9] rather than \d: apt-cache search takes POSIX regular expressions.
SIGNED_KERNEL_PACKAGE = re.compile(r"linux-image-6\.1\.0-([0-9]+)-cloud-amd64")
UNSIGNED_SUFFIX = "-unsigned"
KERNEL_PACKAGE = re.compile(SIGNED_KERNEL_PACKAGE.pattern + UNSIGNED_SUFFIX)
KERNEL_SEARCH = f"^{KERNEL_PACKAGE.pattern}$"
BUSYBOX_PACKAGE = "busybox-static"
PERF_PACKAGE = "linux-perf"
#: ``apt-cache depends`` options that leave only the hard dependencies (Depends, Pre-Depends).
HARD_DEPENDENCIES_ONLY = ("--no-recommends", "--no-suggests", "--no-conflicts", "--no-breaks", "--no-replaces",
                          "--no-enhances")
APT_TOOLS = ("apt-get", "apt-cache", "dpkg-deb")

DEBS = "debs"
KERNEL = "kernel"
KERNEL_PACKAGE_FILE = "PACKAGE"
BUSYBOX = "busybox"
BUSYBOX_BINARY = "bin/busybox"
PROGRAMS = "programs"
INITRAMFS = "initramfs.cpio.gz"
PERF = "perf"
PERF_ROOT = "root"
PERF_BINARY = "usr/bin/perf"
PERF_INITRAMFS = "initramfs-perf.cpio"


class AssetsUnavailable(Exception):
    """The Linux guest's assets are missing and cannot be fetched or built; the message says why in one line."""


@dataclass(frozen=True)
class Assets:
    """Paths of a ready Linux guest: the bzImage and the two initramfs images."""

    kernel: Path
    initramfs: Path
    kernel_package: str  # "name version"
    perf_initramfs: Path  # the initramfs plus perf
    perf_package: str  # "linux-perf version"


def cache_dir(override: str | os.PathLike | None = None) -> Path:
    """The cache directory: ``override``, else ``$PMU_VMM_LINUX_ASSETS``, else firmware/linux/cache/."""
    chosen = override or os.environ.get(CACHE_ENV) or DEFAULT_CACHE
    return Path(chosen).resolve()


def ensure_assets(cache: Path | None = None) -> Assets:
    """Fetch the packages if they are not in ``cache`` yet, (re)build the initramfs, return the paths."""
    cache = cache_dir() if cache is None else cache
    if _kernel_image(cache) is None or not (cache / BUSYBOX / BUSYBOX_BINARY).is_file():
        fetch(cache)
    if not (cache / PERF / KERNEL_PACKAGE_FILE).is_file():
        fetch_perf(cache)
    build_initramfs_file(cache)
    build_perf_initramfs_file(cache)
    return cached_assets(cache)


def cached_assets(cache: Path) -> Assets:
    """The assets already in ``cache``, without fetching or building anything."""
    kernel = _kernel_image(cache)
    initramfs = cache / INITRAMFS
    perf_initramfs = cache / PERF_INITRAMFS
    if kernel is None or not initramfs.is_file() or not perf_initramfs.is_file():
        raise AssetsUnavailable(f"no Linux guest assets in {cache}: run `python -m firmware.linux.assets fetch`")
    return Assets(kernel, initramfs, (cache / KERNEL / KERNEL_PACKAGE_FILE).read_text().strip(), perf_initramfs,
                  (cache / PERF / KERNEL_PACKAGE_FILE).read_text().strip())


def fetch(cache: Path) -> None:
    """Download and extract the kernel and busybox packages into ``cache``."""
    _require_apt()
    kernel_package = _resolve_kernel_package()
    debs = cache / DEBS
    shutil.rmtree(debs, ignore_errors=True)
    debs.mkdir(parents=True)
    _run(["apt-get", "download", kernel_package, BUSYBOX_PACKAGE], cwd=debs, doing="apt-get download")
    kernel_deb = _one(debs.glob(f"{kernel_package}_*.deb"), f"{kernel_package} .deb in {debs}")
    busybox_deb = _one(debs.glob(f"{BUSYBOX_PACKAGE}_*.deb"), f"{BUSYBOX_PACKAGE} .deb in {debs}")

    version = _run(["dpkg-deb", "--field", str(kernel_deb), "Version"], doing="dpkg-deb --field").strip()
    _extract(kernel_deb, cache / KERNEL, keep="boot")
    (cache / KERNEL / KERNEL_PACKAGE_FILE).write_text(f"{kernel_package} {version}\n")
    _extract(busybox_deb, cache / BUSYBOX, keep="bin")
    if _kernel_image(cache) is None:
        raise AssetsUnavailable(f"{kernel_deb.name} holds no single boot/vmlinuz-* file")


def fetch_perf(cache: Path) -> None:
    """Download linux-perf and its dependency closure and extract them all into one tree in ``cache``."""
    _require_apt()
    if not _apt_knows(PERF_PACKAGE):
        _update_apt_lists(f"apt knows no {PERF_PACKAGE} package")
    packages = _dependency_closure(PERF_PACKAGE)
    perf = cache / PERF
    shutil.rmtree(perf, ignore_errors=True)
    debs = perf / DEBS
    debs.mkdir(parents=True)
    _run(["apt-get", "download", *packages], cwd=debs, doing="apt-get download")
    perf_deb = _one(debs.glob(f"{PERF_PACKAGE}_*.deb"), f"{PERF_PACKAGE} .deb in {debs}")
    version = _run(["dpkg-deb", "--field", str(perf_deb), "Version"], doing="dpkg-deb --field").strip()
    root = perf / (PERF_ROOT + ".partial")
    for deb in sorted(debs.glob("*.deb")):
        _run(["dpkg-deb", "-x", str(deb), str(root)], doing=f"dpkg-deb -x {deb.name}")
    if not (root / PERF_BINARY).is_file():
        raise AssetsUnavailable(f"{perf_deb.name} holds no {PERF_BINARY}")
    root.rename(perf / PERF_ROOT)
    (perf / KERNEL_PACKAGE_FILE).write_text(f"{PERF_PACKAGE} {version}\n")


def build_initramfs_file(cache: Path) -> Path:
    """Build the initramfs from the cached busybox and freshly built programs; rewrite it only if it changed."""
    return _write_if_changed(cache / INITRAMFS, build_initramfs(_busybox(cache), _programs(cache)))


def build_perf_initramfs_file(cache: Path) -> Path:
    """Build the perf initramfs (uncompressed): the initramfs's members plus perf and its libraries."""
    root = cache / PERF / PERF_ROOT
    perf = root / PERF_BINARY
    if not perf.is_file():
        raise AssetsUnavailable(f"no perf in {cache}: run `python -m firmware.linux.assets fetch`")
    try:
        loader = interpreter(perf)
        libraries = {soname: path.read_bytes() for soname, path in needed_libraries(perf, root).items()}
    except LibraryError as error:
        raise AssetsUnavailable(str(error)) from None
    if loader is None:
        raise AssetsUnavailable(f"{perf} is not dynamically linked")
    programs = {**_programs(cache), "perf": perf.read_bytes()}
    data = build_initramfs(_busybox(cache), programs, Libraries(libraries, loader), compress=False)
    return _write_if_changed(cache / PERF_INITRAMFS, data)


def _busybox(cache: Path) -> bytes:
    busybox = cache / BUSYBOX / BUSYBOX_BINARY
    if not busybox.is_file():
        raise AssetsUnavailable(f"no busybox in {cache}: run `python -m firmware.linux.assets fetch`")
    return busybox.read_bytes()


def _programs(cache: Path) -> dict[str, bytes]:
    try:
        programs = build_programs(cache / PROGRAMS)
    except ProgramBuildError as error:
        raise AssetsUnavailable(str(error)) from None
    return {name: path.read_bytes() for name, path in programs.items()}


def _write_if_changed(target: Path, data: bytes) -> Path:
    """Write ``data`` to ``target`` atomically, unless it already holds exactly that (keeps its mtime)."""
    if not target.is_file() or target.read_bytes() != data:
        partial = target.with_name(target.name + ".partial")
        partial.write_bytes(data)
        partial.replace(target)
    return target


def _require_apt() -> None:
    missing = [tool for tool in APT_TOOLS if shutil.which(tool) is None]
    if missing:
        raise AssetsUnavailable(f"cannot fetch the Linux guest: {', '.join(missing)} not found (needs Debian 12)")


def _update_apt_lists(why: str) -> None:
    """``apt-get update``, which needs root; ``why`` says what made it necessary."""
    if os.geteuid() != 0:
        raise AssetsUnavailable(f"{why}, and updating its lists needs root")
    _run(["apt-get", "update"], doing="apt-get update")


def _dependency_closure(package: str) -> list[str]:
    """``package`` and every real package it needs, directly or not (apt resolves virtual ones)."""
    listed = _run(["apt-cache", "depends", "--recurse", *HARD_DEPENDENCIES_ONLY, package],
                  doing=f"apt-cache depends {package}")
    # Unindented lines name the packages of the closure; "<name>" ones are virtual and have no .deb.
    names = {line for line in listed.splitlines() if line and not line[0].isspace() and not line.startswith("<")}
    if package not in names:
        raise AssetsUnavailable(f"apt-cache depends does not list {package} itself")
    return sorted(names)


def _resolve_kernel_package() -> str:
    """The newest kernel package name apt knows, updating apt's lists first (as root) if it knows none."""
    name = _known_kernel_package()
    if name is None:
        _update_apt_lists(f"apt knows no {KERNEL_SEARCH} or {BUSYBOX_PACKAGE} package")
        name = _known_kernel_package()
    if name is None:
        raise AssetsUnavailable(f"apt knows no {KERNEL_SEARCH} or {BUSYBOX_PACKAGE} package (needs Debian 12)")
    return name


def _known_kernel_package() -> str | None:
    """The kernel package to fetch, or None if apt's lists lack it or busybox-static."""
    if not _apt_knows(BUSYBOX_PACKAGE):
        return None
    return _kernel_package_from_metapackage() or _kernel_package_from_search()


def _kernel_package_from_metapackage() -> str | None:
    """The unsigned twin of the image the metapackage depends on, if apt has it."""
    depends = subprocess.run(["apt-cache", "depends", KERNEL_METAPACKAGE], capture_output=True, text=True).stdout
    for dependency in re.findall(r"^\s*Depends:\s*(\S+)$", depends, re.MULTILINE):
        if SIGNED_KERNEL_PACKAGE.fullmatch(dependency) and _apt_knows(dependency + UNSIGNED_SUFFIX):
            return dependency + UNSIGNED_SUFFIX
    return None


def _kernel_package_from_search() -> str | None:
    """The unsigned 6.1 cloud image with the highest ABI number in apt's lists."""
    found = subprocess.run(
        ["apt-cache", "search", "--names-only", KERNEL_SEARCH], capture_output=True, text=True
    ).stdout
    abi = {}
    for line in found.splitlines():
        package = KERNEL_PACKAGE.fullmatch(line.split(" ", 1)[0])
        if package is not None:
            abi[package.group(0)] = int(package.group(1))
    return max(abi, key=abi.__getitem__) if abi else None


def _apt_knows(package: str) -> bool:
    shown = subprocess.run(["apt-cache", "show", "--no-all-versions", package], capture_output=True, text=True)
    return shown.returncode == 0 and bool(shown.stdout.strip())


def _extract(deb: Path, destination: Path, *, keep: str) -> None:
    """Extract ``deb`` and keep only its top-level directory ``keep``, replacing ``destination``."""
    unpacked = destination.with_name(destination.name + ".partial")
    shutil.rmtree(unpacked, ignore_errors=True)
    _run(["dpkg-deb", "-x", str(deb), str(unpacked)], doing=f"dpkg-deb -x {deb.name}")
    for entry in unpacked.iterdir():
        if entry.name == keep:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    shutil.rmtree(destination, ignore_errors=True)
    unpacked.rename(destination)


def _kernel_image(cache: Path) -> Path | None:
    images = sorted((cache / KERNEL / "boot").glob("vmlinuz-*"))
    has_package_file = (cache / KERNEL / KERNEL_PACKAGE_FILE).is_file()
    return images[0] if len(images) == 1 and has_package_file else None


def _one(paths, what: str) -> Path:
    found = sorted(paths)
    if len(found) != 1:
        raise AssetsUnavailable(f"expected one {what}, found {len(found)}")
    return found[0]


def _run(command: list[str], *, doing: str, cwd: Path | None = None) -> str:
    """Run ``command``; on failure raise AssetsUnavailable with its most telling output line."""
    try:
        result = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    except OSError as error:
        raise AssetsUnavailable(f"{doing} failed: {error.strerror}") from None
    if result.returncode != 0:
        lines = (result.stderr + result.stdout).strip().splitlines() or [f"exit status {result.returncode}"]
        reason = next((line for line in lines if line.startswith("E:")), lines[-1])
        raise AssetsUnavailable(f"{doing} failed: {reason}")
    return result.stdout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m firmware.linux.assets", description=__doc__.splitlines()[0])
    parser.add_argument("command", nargs="?", default="fetch", choices=("fetch", "path", "initramfs"))
    parser.add_argument("--dir", help=f"cache directory (default: ${CACHE_ENV}, else {DEFAULT_CACHE})")
    arguments = parser.parse_args(argv)
    cache = cache_dir(arguments.dir)
    try:
        if arguments.command == "fetch":
            fetch(cache)
            fetch_perf(cache)
        if arguments.command != "path":
            build_initramfs_file(cache)
            build_perf_initramfs_file(cache)
        assets = cached_assets(cache)
    except AssetsUnavailable as error:
        print(f"{parser.prog}: {error}", file=sys.stderr)
        return 1
    print(f"kernel={assets.kernel}")
    print(f"initramfs={assets.initramfs}")
    print(f"perf_initramfs={assets.perf_initramfs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
