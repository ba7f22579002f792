"""The atomic-write helpers every layer shares: complete under the final name, or nothing."""

import pytest

from declutr.core.atomic import atomic_file, atomic_write_text, staged_directory


def test_atomic_file_replaces_only_on_success(tmp_path):
    target = tmp_path / "out.txt"
    atomic_write_text(target, "old\n")
    with pytest.raises(RuntimeError), atomic_file(target) as file:
        file.write("half-written")
        raise RuntimeError("interrupted")
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]  # no temporary left behind
    with atomic_file(target, "wb") as file:
        file.write(b"new\n")
    assert target.read_bytes() == b"new\n"


def test_atomic_file_refuses_append(tmp_path):
    with pytest.raises(ValueError, match="mode must be"), atomic_file(tmp_path / "x", "a"):
        pass


def test_staged_directory_swaps_whole_folders(tmp_path):
    target = tmp_path / "export"
    with staged_directory(target) as staging:
        (staging / "a.txt").write_text("1")
    assert [p.name for p in target.iterdir()] == ["a.txt"]
    with pytest.raises(KeyboardInterrupt), staged_directory(target) as staging:
        (staging / "b.txt").write_text("2")
        raise KeyboardInterrupt
    assert [p.name for p in target.iterdir()] == ["a.txt"]
    with staged_directory(target) as staging:
        (staging / "b.txt").write_text("2")
    assert [p.name for p in target.iterdir()] == ["b.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]
