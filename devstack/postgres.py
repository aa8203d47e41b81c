"""A private PostgreSQL cluster in a directory, for local development and tests.

It uses the machine's PostgreSQL server binaries (installing Debian's ``postgresql``
package when they are missing and we are root), runs ``initdb`` once per workdir and
``pg_ctl`` to start and stop. PostgreSQL refuses to run as root, so under root the
cluster belongs to an unprivileged system user (``callboard-pg``) and every server
command runs through ``runuser``. Authentication is ``trust`` on loopback only: the
cluster is for this machine's developer and tests, never for anything exposed.
"""

from __future__ import annotations

import logging
import os
import pwd
import re
import shutil
import stat
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import psycopg
from psycopg import sql

from devstack.processes import DevstackError, Service, port_in_use, tail

log = logging.getLogger(__name__)

DEFAULT_OS_USER = "callboard-pg"
DEFAULT_ROLE = "callboard"
# A Unix socket path must fit in sockaddr_un.sun_path (108 bytes on Linux, 104 on macOS).
_MAX_SOCKET_PATH = 100


def _version_key(path: Path) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", path.parent.name)) or (0,)


def find_pg_bin_dir() -> Path | None:
    """The directory holding initdb and pg_ctl: $PATH first, then Debian's newest."""
    on_path = shutil.which("initdb")
    if on_path is not None:
        # Debian links single tools into PATH; the real directory has all of them.
        directory = Path(on_path).resolve().parent
        if (directory / "pg_ctl").exists():
            return directory
    candidates = sorted(
        (path for path in Path("/usr/lib/postgresql").glob("*/bin") if (path / "initdb").exists()),
        key=_version_key,
    )
    return candidates[-1] if candidates else None


def ensure_postgres_installed() -> Path:
    """Return the server binaries' directory, installing Debian's package if needed."""
    found = find_pg_bin_dir()
    if found is not None:
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise DevstackError(
            "PostgreSQL server binaries (initdb, pg_ctl) were not found; install them "
            "(Debian/Ubuntu: `sudo apt-get install postgresql`, macOS: `brew install postgresql`)"
        )
    log.warning("PostgreSQL server binaries not found; installing Debian's postgresql package")
    # The package would otherwise create and start a "main" cluster on port 5432, where
    # `callboard up` wants to listen; this file is read before that cluster is made, and
    # UCF_FORCE_CONFFOLD keeps it when the package installs its own version of it.
    createcluster = Path("/etc/postgresql-common/createcluster.conf")
    if not createcluster.exists():
        createcluster.parent.mkdir(parents=True, exist_ok=True)
        createcluster.write_text("create_main_cluster = false\n")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive", "UCF_FORCE_CONFFOLD": "1"}
    for command in (
        ["apt-get", "update"],
        ["apt-get", "install", "-y", "--no-install-recommends", "postgresql"],
    ):
        result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
        if result.returncode != 0:
            output = (result.stdout + result.stderr).strip()[-4000:]
            raise DevstackError(f"`{' '.join(command)}` failed:\n{output}")
    found = find_pg_bin_dir()
    if found is None:
        raise DevstackError("installed the postgresql package but still found no initdb")
    return found


def _ensure_os_user(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    result = subprocess.run(
        [
            "useradd",
            "--system",
            "--user-group",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            "/usr/sbin/nologin",
            name,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        # Exit status 9 means a concurrent start created the user first.
        return pwd.getpwnam(name)
    except KeyError:
        raise DevstackError(
            f"could not create system user {name!r} to own the cluster: {result.stderr.strip()}"
        ) from None


def _open_path_for_others(path: Path) -> None:
    """Let other users traverse every directory above path.

    Under root the server runs as another user, which needs search (x) permission on
    each ancestor of its data directory; pytest's base temp dir and home directories are
    often 0700. Only the x bit is added: nobody gains the right to list or write them.
    """
    for directory in reversed(path.parents):
        mode = directory.stat().st_mode
        if not mode & stat.S_IXOTH:
            directory.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)


class PostgresCluster(Service):
    """A PostgreSQL server on 127.0.0.1:port with its data under workdir."""

    def __init__(
        self,
        workdir: Path,
        port: int = 5432,
        database: str = "callboard",
        *,
        durable: bool = True,
        role: str = DEFAULT_ROLE,
        os_user: str = DEFAULT_OS_USER,
        max_connections: int = 200,
    ) -> None:
        self.workdir = Path(workdir).absolute()
        self.port = port
        self.database = database
        self.durable = durable
        self.role = role
        self.os_user = os_user
        self.max_connections = max_connections
        self._bin_dir: Path | None = None

    @property
    def url(self) -> str:
        """SQLAlchemy URL (psycopg 3 driver) of the cluster's database."""
        return f"postgresql+psycopg://{self.role}@127.0.0.1:{self.port}/{self.database}"

    @property
    def data_dir(self) -> Path:
        return self.workdir / "data"

    @property
    def log_path(self) -> Path:
        return self.workdir / "postgres.log"

    @property
    def socket_dir(self) -> Path:
        return self.workdir / "run"

    @property
    def pid(self) -> int | None:
        """The postmaster's pid while the server runs."""
        if not self.is_running():
            return None
        try:
            return int((self.data_dir / "postmaster.pid").read_text().split()[0])
        except (OSError, IndexError, ValueError):
            return None

    def is_running(self) -> bool:
        if not (self.data_dir / "PG_VERSION").exists():
            return False
        result = self._run([self._bin("pg_ctl"), "status", "-D", str(self.data_dir)], check=False)
        return result.returncode == 0

    def start(self, timeout: float = 60.0) -> None:
        """Start the server (initialising the cluster on first use) and create the database."""
        if self.is_running():
            running_on = self._configured_port()
            if running_on is not None and running_on != self.port:
                raise DevstackError(
                    f"the cluster in {self.workdir} already runs on port {running_on}; "
                    f"stop it first to move it to port {self.port}"
                )
        else:
            self._prepare_workdir()
            if not (self.data_dir / "PG_VERSION").exists():
                self._initdb()
            self._write_config()
            if port_in_use(self.port):
                raise DevstackError(
                    f"cannot start PostgreSQL: 127.0.0.1:{self.port} is already in use "
                    "(another PostgreSQL? choose another port)"
                )
            result = self._run(
                [
                    self._bin("pg_ctl"),
                    "start",
                    "-D",
                    str(self.data_dir),
                    "-l",
                    str(self.log_path),
                    "-w",
                    "-t",
                    str(max(1, int(timeout))),
                ],
                check=False,
            )
            if result.returncode != 0:
                raise DevstackError(
                    f"PostgreSQL did not start ({result.stderr.strip() or result.stdout.strip()}); "
                    f"see {self.log_path}:\n{self._log_tail()}"
                )
        self._create_database(time.monotonic() + timeout)

    def stop(self, timeout: float = 60.0) -> None:
        """Stop the server with a fast shutdown (open sessions are rolled back)."""
        if not self.is_running():
            return
        result = self._run(
            [
                self._bin("pg_ctl"),
                "stop",
                "-D",
                str(self.data_dir),
                "-m",
                "fast",
                "-w",
                "-t",
                str(max(1, int(timeout))),
            ],
            check=False,
        )
        if result.returncode != 0 and self.is_running():
            raise DevstackError(f"PostgreSQL did not stop: {result.stderr.strip()}")

    def _as_server_user(self) -> bool:
        return os.geteuid() == 0

    def _bin(self, name: str) -> str:
        if self._bin_dir is None:
            self._bin_dir = ensure_postgres_installed()
        return str(self._bin_dir / name)

    def _run(self, command: Sequence[str], *, check: bool) -> subprocess.CompletedProcess[str]:
        argv = list(command)
        if self._as_server_user():
            if shutil.which("runuser") is None:
                raise DevstackError(
                    "running as root needs `runuser` (util-linux) to drop to a user"
                )
            argv = ["runuser", "-u", self.os_user, "--", *argv]
        # The server user may not be able to enter the caller's directory.
        cwd = self.workdir if self.workdir.exists() else None
        result = subprocess.run(argv, capture_output=True, text=True, cwd=cwd, check=False)
        if check and result.returncode != 0:
            raise DevstackError(
                f"`{' '.join(command)}` failed:\n{(result.stdout + result.stderr).strip()}"
            )
        return result

    def _prepare_workdir(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.workdir.chmod(0o755)
        self.socket_dir.mkdir(exist_ok=True)
        if self._as_server_user():
            account = _ensure_os_user(self.os_user)
            _open_path_for_others(self.workdir)
            for path in (self.workdir, self.socket_dir, self.data_dir, self.log_path):
                if path.exists():
                    os.chown(path, account.pw_uid, account.pw_gid)
            if not self.log_path.exists():
                self.log_path.touch(mode=0o644)
                os.chown(self.log_path, account.pw_uid, account.pw_gid)

    def _initdb(self) -> None:
        command = [
            self._bin("initdb"),
            "-D",
            str(self.data_dir),
            "--username",
            self.role,
            "--auth",
            "trust",
            "--encoding",
            "UTF8",
            "--locale",
            "C",
        ]
        if not self.durable:
            command.append("--no-sync")
        self._run(command, check=True)
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write("\n# Settings managed by devstack/postgres.py.\n")
            conf.write("include = 'callboard.conf'\n")

    def _write_config(self) -> None:
        socket_dir = str(self.socket_dir)
        if len(socket_dir) + len("/.s.PGSQL.65535") > _MAX_SOCKET_PATH:
            # Clients here connect over TCP; a socket that cannot be bound would stop the
            # server from starting at all.
            socket_dir = ""
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": f"'{socket_dir}'",
            "max_connections": str(self.max_connections),
            "timezone": "'UTC'",
            "log_timezone": "'UTC'",
        }
        if not self.durable:
            # A throwaway test cluster: losing it in a power cut costs nothing.
            settings |= {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
        path = self.data_dir / "callboard.conf"
        path.write_text("".join(f"{key} = {value}\n" for key, value in settings.items()))
        if self._as_server_user():
            account = pwd.getpwnam(self.os_user)
            os.chown(path, account.pw_uid, account.pw_gid)

    def _configured_port(self) -> int | None:
        try:
            text = (self.data_dir / "callboard.conf").read_text()
        except OSError:
            return None
        found = re.search(r"^port = (\d+)$", text, re.MULTILINE)
        return int(found.group(1)) if found else None

    def _create_database(self, deadline: float) -> None:
        conninfo = f"host=127.0.0.1 port={self.port} user={self.role} dbname=postgres"
        while True:
            try:
                with psycopg.connect(conninfo, autocommit=True, connect_timeout=5) as conn:
                    exists = conn.execute(
                        "SELECT 1 FROM pg_database WHERE datname = %s", (self.database,)
                    ).fetchone()
                    if exists is None:
                        conn.execute(
                            sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.database))
                        )
                    return
            except psycopg.errors.DuplicateDatabase:
                return
            except psycopg.OperationalError as exc:
                # Right after pg_ctl returns the server may still refuse ("starting up").
                if time.monotonic() > deadline:
                    raise DevstackError(
                        f"PostgreSQL on 127.0.0.1:{self.port} did not accept connections: {exc}\n"
                        f"{self._log_tail()}"
                    ) from exc
                time.sleep(0.2)

    def _log_tail(self) -> str:
        return tail(self.log_path)
