"""A local mosquitto broker for ``lmtwin serve --demo`` and the tests: 127.0.0.1 only,
a free port, a temporary config, anonymous access, no persistence.

    with Mosquitto(folder) as broker:      # started; stopped (and waited for) on exit
        ... broker.port ...

mosquitto is the Debian package (``scripts/system-deps.sh`` installs it). On Linux the
broker is told to die with the thread that started it, so a killed parent leaves no
orphan behind.
"""

from __future__ import annotations

import getpass
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on now (the OS picks it)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether ``port`` can be bound on ``host`` now."""
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def listening(port: int, host: str = "127.0.0.1") -> bool:
    try:
        socket.create_connection((host, port), timeout=0.2).close()
        return True
    except OSError:
        return False


def mosquitto_binary() -> str | None:
    """The mosquitto executable, or None when it is not installed."""
    for path in (shutil.which("mosquitto"), "/usr/sbin/mosquitto"):
        if path and Path(path).exists():
            return path
    return None


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    import ctypes
    import signal

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGTERM))


def _user() -> list[str]:
    try:
        return [f"user {getpass.getuser()}"]
    except (OSError, KeyError):  # no name for this uid: mosquitto's default
        return []


class Mosquitto:
    """A real mosquitto on 127.0.0.1, stoppable and restartable on the same port.

    Args:
        folder: where the config file goes (a temporary folder).
        extra: more config lines (e.g. ``max_queued_messages 100000``).
    """

    def __init__(self, folder: Path, extra: tuple[str, ...] = ()) -> None:
        binary = mosquitto_binary()
        if binary is None:
            raise FileNotFoundError("mosquitto is not installed (Debian package mosquitto; "
                                    "scripts/system-deps.sh installs it)")
        self.binary = binary
        self.port = free_port()
        self.conf = Path(folder) / "mosquitto.conf"
        # run as the starting user: started by root, mosquitto would switch to its own
        # user, and a change of user clears the die-with-parent signal
        self.conf.write_text("\n".join([f"listener {self.port} 127.0.0.1",
                                        "allow_anonymous true", "persistence false",
                                        *_user(), *extra]) + "\n")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    def start(self, timeout: float = 10.0) -> None:
        # its own session: a Ctrl-C in the terminal reaches the parent, which stops the
        # broker last, after the clients have disconnected
        self.proc = subprocess.Popen(
            [self.binary, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None)
        deadline = time.monotonic() + timeout
        while not listening(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"mosquitto did not start on 127.0.0.1:{self.port}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def __enter__(self) -> Mosquitto:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
