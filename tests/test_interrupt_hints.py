"""An interrupted command names the exact command that continues it — and that command does."""

from __future__ import annotations

import shlex

import pytest

from depthg_lib.errors import run_cli
from depthg_lib.study import __main__ as study_cli


class _Stop(Exception):
    pass


@pytest.mark.parametrize("argv", [["--profile", "test", "--seeds", "2"],
                                  ["--profile", "test", "--force", "--out", "my dir"],
                                  ["--profile", "test", "--resume"]])
def test_interrupted_study_names_the_command_that_resumes(monkeypatch, capsys, argv):
    calls = []

    def run_study(profile, **kwargs):
        calls.append(kwargs)
        if len(calls) == 1:
            raise KeyboardInterrupt  # Ctrl-C in the middle of the first run
        raise _Stop

    monkeypatch.setattr(study_cli, "run_study", run_study)
    with pytest.raises(SystemExit) as stop:
        run_cli(study_cli.main, argv)  # as `python -m depthg_lib.study` runs it
    assert stop.value.code == 130
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "`python -m depthg_lib.study " in err
    command = err.split("`")[1]
    again = shlex.split(command)[3:]
    assert "--resume" in again and "--force" not in again  # --force would wipe what is stored
    with pytest.raises(_Stop):
        study_cli.main(again)  # the printed command, as given: it resumes, it forgets nothing
    assert calls[1]["resume"] is True and calls[1]["force"] is False
    assert calls[1]["out_dir"] == calls[0]["out_dir"] and calls[1]["seeds"] == calls[0]["seeds"]
