"""A server that does not answer in time is said to be one, in one line, not as a bad path
(nats-py's timeout is an ``OSError``: it was once reported as ``(); check the path``)."""

from __future__ import annotations

import nats.errors
import pytest

from swarmlog.cli import cli, main


def test_a_timeout_is_one_line_about_the_server_not_a_path(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def times_out(*args: object, **kwargs: object) -> None:
        raise nats.errors.TimeoutError

    monkeypatch.setattr(cli, "main", times_out)
    with pytest.raises(SystemExit) as exited:
        main(["status"])
    err = capsys.readouterr().err
    assert exited.value.code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert "the server did not answer in time" in err
    assert "check the path" not in err
