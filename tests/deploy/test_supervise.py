"""deploy/supervise.py: the supervisord configuration written from a Procfile, read back by supervisor's own
parser, and the check against a second `make up` on one data directory. Fast: no supervisord is started."""

from __future__ import annotations

import importlib.util
import os
import shlex
import socket
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from supervisor.datatypes import RestartUnconditionally
from supervisor.options import ServerOptions

from tests.support.stack import ROOT


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"nanoedit_deploy_{name}", ROOT / "deploy" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


supervise = _load("supervise")
procfile = _load("procfile")

PROCFILE = """\
# comment lines and blank lines are not processes

web: python -m gunicorn --config deploy/gunicorn.conf.py api.wsgi:app
worker: NANOEDIT_METRICS_PORT=${PORT_X:-9101} python -m celery worker -n w-$$@%h -c ${CONC:-2}
echo: GREETING="hello there" python -c 'import os, sys; print(os.environ["GREETING"], os.getpid(), sys.argv[1:])' \
${ARG:-dflt} %h
"""


def _programs(tmp_path: Path, text: str = PROCFILE) -> tuple[dict[str, Any], Path]:
    """Write `text` as a Procfile, render its configuration, and parse it the way supervisord does."""
    path = tmp_path / "Procfile"
    path.write_text(text)
    paths = supervise.SupervisorPaths.under(tmp_path / "data")
    paths.dir.mkdir(parents=True)
    entries = [(e.name, e.command) for e in procfile.entries(path)]
    paths.conf.write_text(supervise.render(entries, paths, directory=ROOT, stop_wait=150))
    options = ServerOptions()
    options.realize(args=["-c", str(paths.conf)])
    programs = {p.name: p for g in options.process_group_configs for p in g.process_configs}
    return programs, paths.conf


def test_one_program_per_procfile_line_with_the_supervision_options(tmp_path: Path) -> None:
    # Given a Procfile with three processes, comments and a blank line
    # When its configuration is written and read back by supervisor
    programs, conf = _programs(tmp_path)

    # Then there is one program per process line, each restarted, backed off, drained and logged to stdout
    assert set(programs) == {"web", "worker", "echo"}
    for p in programs.values():
        assert p.autorestart is RestartUnconditionally
        assert (p.startsecs, p.startretries) == (supervise.START_SECS, supervise.START_RETRIES)
        assert p.stopsignal == 15 and p.stopwaitsecs == 150
        assert p.stopasgroup is False and p.killasgroup is True
        assert p.redirect_stderr is True and p.stdout_logfile == "/dev/stdout" and p.stdout_logfile_maxbytes == 0
        assert p.directory == str(ROOT)
    text = conf.read_text()
    socket = supervise.SupervisorPaths(conf.parent).socket  # beside the config, or short when that is too deep
    assert f"serverurl=unix://{socket}" in text and "nodaemon=true" in text


def test_commands_keep_their_shell_expansions_for_bash(tmp_path: Path) -> None:
    programs, _ = _programs(tmp_path)
    # Then `${VAR:-default}`, `$$` and `%h` reach bash untouched, with `exec` after the leading assignments
    assert shlex.split(programs["worker"].command) == [
        "bash", "-c",
        "NANOEDIT_METRICS_PORT=${PORT_X:-9101} exec python -m celery worker -n w-$$@%h -c ${CONC:-2}"]
    assert shlex.split(programs["web"].command) == [
        "bash", "-c", "exec python -m gunicorn --config deploy/gunicorn.conf.py api.wsgi:app"]


def test_the_command_runs_as_the_program_itself_with_expansions_applied(tmp_path: Path) -> None:
    # Given the argv supervisord would start for `echo`
    programs, _ = _programs(tmp_path)
    argv = shlex.split(programs["echo"].command)
    env = {k: v for k, v in os.environ.items() if k != "ARG"}

    # When it runs
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=30, env=env, check=True)
    child = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env={**env, "ARG": "given"})
    out, _ = child.communicate(timeout=30)

    # Then bash expanded the defaults and the assignment, and exec made python the process supervisord started
    assert proc.stdout.strip().startswith("hello there ") and proc.stdout.strip().endswith("['dflt', '%h']")
    assert out.startswith("hello there ")
    pid, args = out.strip().removeprefix("hello there ").split(" ", 1)
    assert int(pid) == child.pid
    assert args == "['given', '%h']"


def test_a_command_the_config_format_cannot_carry_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="comment"):
        supervise.program_command("python a.py ; python b.py")


def test_a_second_make_up_on_the_same_data_dir_is_refused_and_a_crashed_one_cleared(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    paths = supervise.SupervisorPaths.under(tmp_path)
    paths.dir.mkdir(parents=True)
    # Given a supervisord answering on the data directory's socket
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as live:
        live.bind(str(paths.socket))
        live.listen(1)
        paths.pidfile.write_text("4242\n")
        # Then a new `make up` there is refused, naming the running one
        assert supervise.check(tmp_path) == 1
        assert "already running" in capsys.readouterr().err and paths.socket.exists()

    # Given only the socket and pid file of a supervisord that died without cleaning up
    # Then they are removed and the data directory is free again
    assert paths.socket.exists()
    assert supervise.check(tmp_path) == 0
    assert not paths.socket.exists() and not paths.pidfile.exists()
    assert "did not exit cleanly" in capsys.readouterr().err


def test_stop_wait_covers_the_longest_hard_time_limit() -> None:
    assert supervise.stop_wait_s((90, 120, 10)) == 120 + supervise.STOP_MARGIN_S


def test_a_deep_data_directory_gets_a_short_socket_path_named_after_it(tmp_path: Path) -> None:
    # Given a data directory so deep that <dir>/supervisor/supervisor.sock would pass the 107-byte unix limit
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    # When supervisord's paths are laid out for it (and for a short directory)
    paths, short = supervise.SupervisorPaths.under(deep), supervise.SupervisorPaths.under(tmp_path)
    # Then the socket moves to a short path that depends on the directory; a short directory keeps its own
    assert len(str(paths.socket)) <= supervise.MAX_SOCKET_PATH and paths.socket.parent != paths.dir
    assert paths.socket != supervise.SupervisorPaths.under(deep / "other").socket
    assert short.socket == short.dir / "supervisor.sock"
    assert supervise.main(["check", str(deep)]) == 0
