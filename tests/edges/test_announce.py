"""What `planloop up` prints once it is up: every address and path whole, in one piece, whatever the width."""

from __future__ import annotations

import pytest

from planloop import cli

STATE = {
    "pid": 4242,
    "postgres": {"dsn": "postgresql://postgres@127.0.0.1:54329/planloop", "embedded": True},
    "temporal": {"address": "127.0.0.1:7233", "namespace": "default", "embedded": False, "ui_url": ""},
    "task_queue": "planloop",
    "api": {"url": "http://127.0.0.1:8360", "docs_url": "http://127.0.0.1:8360/docs"},
    # Longer than any terminal, and with brackets that rich would read as markup.
    "data_dir": "/srv/planning-office/" + "very-long-folder-name/" * 6 + "data[eu]",
}


def test_the_announcement_keeps_long_paths_whole_and_shows_brackets_as_they_are(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli.out, "_width", 40)  # narrow; undone to the width read from the environment
    cli._announce(STATE, 1.5)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "planloop is up (pid 4242, ready in 1.5 s)"
    assert lines[-1] == "Press Ctrl-C to stop."
    assert f"Data folder  {STATE['data_dir']}" in lines
    assert "PostgreSQL   postgresql://postgres@127.0.0.1:54329/planloop  embedded" in lines
    assert "Temporal     127.0.0.1:7233  namespace default, task queue planloop, external" in lines
    assert not any(line.startswith("Temporal UI") for line in lines)  # an external Temporal: no UI of ours
    assert len(lines) == 7
