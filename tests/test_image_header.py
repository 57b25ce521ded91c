"""An image header is read once per file: a rename or hard link finds the reading, a rewrite is read again."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import pyvips

from kie_async.core.image_header import read_header
from kie_async.core.media_sniff import header_problem, sniff_head


def _png(path: Path, width: int, height: int) -> Path:
    pyvips.Image.black(width, height, bands=3).write_to_file(str(path))
    return path


def _count_opens(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    opened: list[str] = []
    real = pyvips.Image.new_from_file

    def counting(name: str, **kwargs: object) -> pyvips.Image:
        opened.append(name)
        return real(name, **kwargs)

    monkeypatch.setattr(pyvips.Image, "new_from_file", staticmethod(counting))
    return opened


def test_the_download_check_reading_serves_the_linked_and_renamed_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tmp = _png(tmp_path / "written.png", 40, 30).rename(tmp_path / ".out.part")  # a download's temp name
    assert header_problem(tmp, sniff_head(tmp.read_bytes()[:64])) is None
    final = tmp.rename(tmp_path / "output_0.png")
    os.link(final, tmp_path / "linked.png")
    opened = _count_opens(monkeypatch)
    for path in (final, tmp_path / "linked.png"):
        header = read_header(path)
        assert (header.width, header.height, header.has_alpha) == (40, 30, False)
        assert header.loader.startswith("pngload") and header.band_format == "uchar"
    assert opened == []


def test_a_rewritten_file_is_read_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _png(tmp_path / "a.png", 40, 30)
    assert read_header(path).width == 40
    replacement = _png(tmp_path / "b.png", 30, 40)
    os.replace(replacement, path)  # another inode under the same name
    assert (read_header(path).width, read_header(path).height) == (30, 40)
    data = _png(tmp_path / "c.png", 50, 20).read_bytes()
    path.write_bytes(data)  # same inode, new content: size and mtime change
    opened = _count_opens(monkeypatch)
    assert read_header(path).width == 50
    assert opened == [str(path)]


def test_a_file_that_is_not_an_image_raises_and_is_not_remembered(tmp_path: Path) -> None:
    path = tmp_path / "x.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    with pytest.raises(pyvips.Error):
        read_header(path)
    _png(tmp_path / "y.png", 8, 8).replace(path)
    assert read_header(path).width == 8


def test_same_inode_size_and_mtime_with_other_pixels_is_read_again(tmp_path: Path) -> None:
    """What inode reuse and a coarse clock can produce: another image under the same inode, size and mtime."""
    wide = _png(tmp_path / "wide.png", 40, 30).read_bytes()
    tall = _png(tmp_path / "tall.png", 30, 40).read_bytes()
    size = max(len(wide), len(tall))
    wide, tall = wide.ljust(size, b"\0"), tall.ljust(size, b"\0")  # bytes after IEND: still readable headers
    path = tmp_path / "reused.png"
    path.write_bytes(wide)
    assert (read_header(path).width, read_header(path).height) == (40, 30)
    before = os.stat(path)
    with path.open("r+b") as fh:  # same inode, same size
        fh.write(tall)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # and the same mtime
    after = os.stat(path)
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (before.st_ino, before.st_size, before.st_mtime_ns)
    assert (read_header(path).width, read_header(path).height) == (30, 40)
