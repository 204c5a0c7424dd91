"""engine.atomic: the one way mgc writes a file."""

from __future__ import annotations

from mgc.engine import atomic


def test_a_link_planted_at_the_temporary_name_is_replaced_not_written_through(tmp_path):
    target = tmp_path / "someone-elses.txt"
    target.write_text("keep me")
    out = tmp_path / "marker.json"
    (tmp_path / "marker.json.tmp").symlink_to(target)
    atomic.write_json(out, {"format": "mgc"})
    assert target.read_text() == "keep me"
    assert out.read_text().strip().startswith("{") and not (tmp_path / "marker.json.tmp").exists()


def test_a_killed_writers_temporary_is_replaced(tmp_path):
    out = tmp_path / "a.txt"
    (tmp_path / "a.txt.tmp").write_text("half of an old write")
    atomic.write_text(out, "whole")
    assert out.read_text() == "whole" and not (tmp_path / "a.txt.tmp").exists()
