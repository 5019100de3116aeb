"""Walking a config directory: which files are config files, without opening any."""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path

SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class Scan:
    """What a walk of the config directory saw. Equal scans mean nothing to reload.

    `root_error` is set when the directory itself cannot be listed (missing,
    unmounted, unreadable): then nothing is known about its files, which is not
    the same as there being none."""

    files: tuple[tuple[str, int, int], ...] = ()  # (path, mtime_ns, size)
    skipped: tuple[tuple[str, str], ...] = ()  # (path, why): FIFOs, sockets, devices, symlink loops
    unreadable: tuple[tuple[str, str], ...] = ()  # (directory, why)
    root_error: str = ""
    root_dev: int = 0


def _kind_of(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def scan_directory(root: Path) -> Scan:
    """Every *.yaml / *.yml regular file under root, never following directory
    symlinks (no loops) and never opening anything (stat only, so nothing blocks).
    Entries named `..*` are skipped: Kubernetes' atomic writer keeps the real files
    of a ConfigMap volume there and links them from the top level."""
    try:
        st = os.stat(root)
    except OSError as exc:
        return Scan(root_error=exc.strerror or str(exc))
    if not stat.S_ISDIR(st.st_mode):
        return Scan(root_error="not a directory", root_dev=st.st_dev)
    files: list[tuple[str, int, int]] = []
    skipped: list[tuple[str, str]] = []
    unreadable: list[tuple[str, str]] = []
    pending = [str(root)]
    while pending:
        directory = pending.pop()
        try:
            with os.scandir(directory) as it:
                entries = list(it)
        except OSError as exc:
            if directory == str(root):
                return Scan(root_error=exc.strerror or str(exc), root_dev=st.st_dev)
            unreadable.append((directory, exc.strerror or str(exc)))
            continue
        for entry in entries:
            if entry.name.startswith(".."):
                continue
            try:
                if entry.is_dir(follow_symlinks=False):
                    pending.append(entry.path)
                    continue
            except OSError:
                continue
            if not entry.name.endswith(SUFFIXES):
                continue
            try:
                fst = os.stat(entry.path)  # follows a symlinked file (ConfigMap volumes)
            except FileNotFoundError:
                continue  # removed meanwhile, or a dangling symlink: not a config file
            except OSError as exc:
                why = "a symlink loop" if exc.errno == errno.ELOOP else (exc.strerror or str(exc))
                skipped.append((entry.path, why))
                continue
            if not stat.S_ISREG(fst.st_mode):
                skipped.append((entry.path, _kind_of(fst.st_mode)))
                continue
            files.append((entry.path, fst.st_mtime_ns, fst.st_size))
    return Scan(tuple(sorted(files)), tuple(sorted(skipped)), tuple(sorted(unreadable)), "", st.st_dev)
