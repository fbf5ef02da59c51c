"""Hostile files for the store tests: FIFOs, sockets, sparse giants, dangling links, unreadable paths.

Imported by name (pytest puts ``tests/unit`` on ``sys.path``; the ``deny`` fixture is imported by name too).
Everything here makes a real file of the kind; only :class:`Deny` also injects a fault, and only when the
tests run as root (root reads any file whatever its mode, so ``chmod 000`` alone would prove nothing there).
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

GiB = 1024**3


def fifo(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)


def unix_socket(path: Path) -> None:
    """A listening-less Unix socket file at ``path`` (bound from its folder: socket paths are short)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    here = os.getcwd()
    os.chdir(path.parent)
    try:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(path.name)
        sock.close()  # the file stays
    finally:
        os.chdir(here)
    assert stat.S_ISSOCK(os.lstat(path).st_mode)


def sparse(path: Path, size: int, head: bytes = b"name: x\n") -> None:
    """A file of ``size`` bytes that takes no disk (a hole after ``head``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:
        fh.write(head)
        fh.truncate(size)


def dangling(path: Path, target: str = "nowhere.yaml") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(target, path)


class Deny:
    """Make paths (files or folders) unreadable: ``chmod 000``, and as root a PermissionError on opening or
    listing them too (root's permissions would otherwise hide the fault). Undone at the end of the test."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self._monkeypatch = monkeypatch
        self._modes: list[tuple[Path, int]] = []
        self._denied: set[str] = set()

    def __call__(self, path: Path) -> Path:
        self._modes.append((path, stat.S_IMODE(path.stat().st_mode)))
        path.chmod(0)
        if os.geteuid() == 0:
            if not self._denied:
                self._monkeypatch.setattr(os, "open", self._guard(os.open))
                self._monkeypatch.setattr(os, "scandir", self._guard(os.scandir))
            self._denied.add(os.path.realpath(path))
        return path

    def allow(self, path: Path) -> None:
        """Make ``path`` readable again (the store recovers)."""
        for denied, mode in self._modes:
            if denied == path:
                path.chmod(mode)
        self._denied.discard(os.path.realpath(path))

    def _guard(self, real: Callable[..., object]) -> Callable[..., object]:
        def call(target: object, *args: object, **kwargs: object) -> object:
            if isinstance(target, (str, os.PathLike)) and os.path.realpath(os.fspath(target)) in self._denied:
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fspath(target))
            return real(target, *args, **kwargs)

        return call

    def restore(self) -> None:
        for path, mode in reversed(self._modes):
            with contextlib.suppress(OSError):
                path.chmod(mode)


@pytest.fixture
def deny(monkeypatch: pytest.MonkeyPatch) -> Iterator[Deny]:
    """``deny(path)``: the path cannot be read until the test ends (import this fixture by name)."""
    denier = Deny(monkeypatch)
    yield denier
    denier.restore()
