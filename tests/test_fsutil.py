"""Atomic writes leave files and directories with the modes a plain open / mkdir gives under the umask."""

from __future__ import annotations

import os
import stat

import pytest

from atkd.fsutil import atomic_dir, atomic_write_text


@pytest.fixture
def umask():
    def set_mask(mask: int) -> None:
        os.umask(mask)

    old = os.umask(0o022)
    yield set_mask
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077])
def test_atomic_writes_follow_the_umask(tmp_path, umask, mask):
    umask(mask)
    plain_file, plain_dir = tmp_path / "plain.txt", tmp_path / "plain"
    plain_file.write_text("x")
    plain_dir.mkdir()
    atomic_write_text(tmp_path / "a.txt", "hello")
    with atomic_dir(tmp_path / "d") as d:
        (d / "inside.txt").write_text("y")
    with atomic_dir(tmp_path / "d") as d:  # replacing an existing directory too
        (d / "inside.txt").write_text("z")
        (d / "sub").mkdir(mode=0o700)  # as safetensors and tempfile write: private whatever the umask
        (d / "sub" / "weights.bin").write_bytes(b"w")
        os.chmod(d / "sub" / "weights.bin", 0o600)
    assert _mode(tmp_path / "a.txt") == _mode(plain_file) == 0o666 & ~mask
    assert _mode(tmp_path / "d") == _mode(plain_dir) == 0o777 & ~mask
    assert _mode(tmp_path / "d" / "inside.txt") == 0o666 & ~mask
    assert _mode(tmp_path / "d" / "sub") == 0o777 & ~mask
    assert _mode(tmp_path / "d" / "sub" / "weights.bin") == 0o666 & ~mask
    assert (tmp_path / "d" / "inside.txt").read_text() == "z"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "d", "plain", "plain.txt"]
