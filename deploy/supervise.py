"""`make up`'s process supervision: the supervisord configuration written from the Procfile, and the check that
no other `make up` is already supervising the same data directory.

    python deploy/supervise.py check DATA_DIR   # refuse a second `make up`; clear a crashed run's socket/pid
    python deploy/supervise.py write DATA_DIR   # write DATA_DIR/supervisor/supervisord.conf, print its path

supervisord (the `supervisor` package) does the supervising; this module only writes its configuration, so the
Procfile stays the one list of processes (read through deploy/procfile.py). One `[program:NAME]` per Procfile
line, run as `bash -c 'exec COMMAND'` (`exec` placed after the line's leading `NAME=value` assignments): bash
expands the line's `${VAR:-default}` and `$$` at each start, and `exec` makes the process *be* the program, so
supervisord's signals reach gunicorn's master or Celery's main process directly.

The configuration is written here rather than by a Procfile exporter (honcho's `export supervisord`): every
option below is a choice of ours, and `make up` no longer needs honcho at all.

Restart policy (supervisor's state machine; docs/operations.md, "`make up` supervision"):

- A program that exits after it reached RUNNING (up for `startsecs`) is restarted at once, whatever its exit
  status (`autorestart=true`): a SIGKILLed worker instance is replaced within its start-up time.
- A program that exits while STARTING (before `startsecs`) enters BACKOFF and is retried after 1 s, then 2 s,
  3 s, ... (the delay grows by one second per failed start); after `startretries` failed starts it is FATAL and
  stays down until `supervisorctl start NAME`. The others keep running either way.

Stopping (Ctrl-C on `make up`, `supervisorctl stop|restart NAME`): SIGTERM to the program's main process only
(`stopasgroup=false`), which drains its own children: Celery's warm shutdown lets running tasks finish (a
prefork child would die of SIGTERM itself, cutting off a provider call we pay for); gunicorn's master stops its
workers gracefully. After `stopwaitsecs` (the longest task's hard time limit plus a margin, from the same
Settings the workers read) the whole process group gets SIGKILL (`killasgroup=true`); a message a killed task
held is unacked (`task_acks_late`) and is delivered again.
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
import re
import socket
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
START_SECS = 5  # up this long = RUNNING; an exit before that is a failed start (BACKOFF)
START_RETRIES = 10  # failed starts in a row before FATAL: 1 + 2 + ... + 10 s = 55 s of retrying
STOP_MARGIN_S = 30  # beyond the longest hard time limit: the worker's own shutdown and the last ack
MAX_SOCKET_PATH = 100  # AF_UNIX paths are limited to 107 bytes on Linux


def _procfile() -> ModuleType:
    """deploy/ is not a package: load its Procfile reader by path (registered first, for its dataclass)."""
    name = "nanoedit_deploy_procfile"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("procfile.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@dataclass(frozen=True, slots=True)
class SupervisorPaths:
    """Where supervisord keeps its files for one data directory."""

    dir: Path

    @classmethod
    def under(cls, data_dir: Path) -> SupervisorPaths:
        return cls(data_dir.resolve() / "supervisor")

    @property
    def conf(self) -> Path:
        return self.dir / "supervisord.conf"

    @property
    def socket(self) -> Path:
        inside = self.dir / "supervisor.sock"
        if len(str(inside)) <= MAX_SOCKET_PATH:
            return inside
        # A deep data directory: a unix socket's path is limited (107 bytes), so one named after the directory.
        digest = hashlib.sha256(str(self.dir).encode()).hexdigest()[:16]
        return Path(tempfile.gettempdir()) / f"nanoedit-supervisor-{digest}.sock"

    @property
    def pidfile(self) -> Path:
        return self.dir / "supervisord.pid"

    @property
    def log(self) -> Path:
        return self.dir / "supervisord.log"


def stop_wait_s(hard_limits_s: tuple[int, ...]) -> int:
    """How long supervisord waits after SIGTERM before SIGKILL: every running task can end within its limit."""
    return max(hard_limits_s) + STOP_MARGIN_S


def _value(text: str) -> str:
    """A value as supervisord's config parser reads it back: `%` is its expansion character."""
    return text.replace("%", "%%")


# Leading `NAME=value` words of a Procfile command (value: plain characters, `${...}`, quoted strings, escapes).
_WORD_PART = r"""\$\{[^}]*\}|'[^']*'|"(?:[^"\\]|\\.)*"|\\.|[^\s'"\\]"""
_ASSIGNMENTS = re.compile(rf"^((?:[A-Za-z_][A-Za-z0-9_]*=(?:{_WORD_PART})*\s+)*)")


def exec_line(command: str) -> str:
    """`command` with `exec` in front of the program: after its leading `NAME=value` assignments, which bash then
    exports to the exec'd program (`exec NAME=value prog` would try to run a program called `NAME=value`)."""
    assignments = _ASSIGNMENTS.match(command)
    prefix = assignments.group(1) if assignments else ""
    return f"{prefix}exec {command[len(prefix):]}"


def program_command(command: str) -> str:
    """The `command=` of a Procfile line: `bash -c 'exec COMMAND'`, quoted for supervisord's shlex split."""
    for marker in (" ;", "\t;", " #", "\t#"):
        if marker in command:
            # supervisord's INI parser cuts a value at an inline comment; there is no escape for it.
            raise ValueError(f"a Procfile command may not contain {marker.strip()!r} after a blank "
                             f"(supervisord reads it as a comment): {command!r}")
    quoted = "'" + exec_line(command).replace("'", "'\"'\"'") + "'"
    return _value(f"bash -c {quoted}")


def render(entries: list[tuple[str, str]], paths: SupervisorPaths, *, directory: Path, stop_wait: int) -> str:
    """The supervisord configuration for `entries` (Procfile name, command) in file order."""
    lines = [
        "; Written by deploy/supervise.py from the Procfile at each `make up`; edit the Procfile, not this file.",
        f"; Operator: supervisorctl -c {_value(str(paths.conf))} status|restart NAME|stop NAME|start NAME",
        "",
        "[unix_http_server]",
        f"file={_value(str(paths.socket))}",
        "chmod=0700",
        "",
        "[supervisord]",
        "nodaemon=true",
        f"pidfile={_value(str(paths.pidfile))}",
        f"logfile={_value(str(paths.log))}",
        "logfile_maxbytes=10MB",
        "logfile_backups=2",
        "loglevel=info",
        f"childlogdir={_value(str(paths.dir))}",
        "",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
        "",
        "[supervisorctl]",
        f"serverurl=unix://{_value(str(paths.socket))}",
    ]
    for name, command in entries:
        lines += [
            "",
            f"[program:{name}]",
            f"command={program_command(command)}",
            f"directory={_value(str(directory))}",
            "autostart=true",
            "autorestart=true",
            f"startsecs={START_SECS}",
            f"startretries={START_RETRIES}",
            "stopsignal=TERM",
            f"stopwaitsecs={stop_wait}",
            "stopasgroup=false",
            "killasgroup=true",
            # Every program writes to supervisord's own stdout (the `make up` terminal); JSON lines name their
            # logger and process, supervisor itself cannot prefix.
            "redirect_stderr=true",
            "stdout_logfile=/dev/stdout",
            "stdout_logfile_maxbytes=0",
        ]
    return "\n".join(lines) + "\n"


def _answers(sock: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(2)
        try:
            s.connect(str(sock))
        except OSError:
            return False
    return True


def check(data_dir: Path) -> int:
    """0 when this data directory is free for a new supervisord (a crashed run's socket and pid file are
    removed), 1 with a message when a supervisord is still answering on its socket."""
    paths = SupervisorPaths.under(data_dir)
    if len(str(paths.socket)) > MAX_SOCKET_PATH:
        print(f"nanoedit: the data directory path is too long for supervisord's socket ({paths.socket}); "
              "use a shorter NANOEDIT_DATA_DIR", file=sys.stderr)
        return 1
    pid = paths.pidfile.read_text().strip() if paths.pidfile.exists() else "?"
    if paths.socket.exists() and _answers(paths.socket):
        print(f"nanoedit: another `make up` (supervisord pid {pid}) is already running on {data_dir}. Stop it "
              f"(Ctrl-C there, or: supervisorctl -c {paths.conf} shutdown) or use another NANOEDIT_DATA_DIR",
              file=sys.stderr)
        return 1
    if paths.socket.exists() or paths.pidfile.exists():
        print(f"nanoedit: removing the socket/pid file of a supervisord that did not exit cleanly (pid {pid})",
              file=sys.stderr)
        paths.socket.unlink(missing_ok=True)
        paths.pidfile.unlink(missing_ok=True)
    return 0


def write(data_dir: Path) -> Path:
    """Write the configuration for the Procfile's processes; returns its path."""
    from shared.settings import Settings  # the workers' own limits decide how long a stop may take

    settings = Settings.from_env()
    paths = SupervisorPaths.under(data_dir)
    paths.dir.mkdir(parents=True, exist_ok=True)
    entries = [(e.name, e.command) for e in _procfile().entries()]
    wait = stop_wait_s((settings.preprocess_hard_limit_s, settings.generate_hard_limit_s,
                        math.ceil(settings.webhook_timeout_s)))
    paths.conf.write_text(render(entries, paths, directory=ROOT, stop_wait=wait))
    return paths.conf


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "check":
        return check(Path(argv[1]))
    if len(argv) == 2 and argv[0] == "write":
        try:
            print(write(Path(argv[1])))
        except ValueError as exc:
            print(f"nanoedit: cannot supervise the Procfile: {exc}", file=sys.stderr)
            return 1
        return 0
    print("usage: python deploy/supervise.py check|write DATA_DIR", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
