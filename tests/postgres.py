"""A real PostgreSQL 15 server for the test session: `initdb` into a fresh folder, `pg_ctl start` on
127.0.0.1 at a free port with its socket in that folder, one database, stopped and removed at the end.

Import the fixture into the test module that uses it (`from tests.postgres import postgres`).
Without PostgreSQL's binaries the test fails (never skips): install Debian's `postgresql`
(`.ci/run` does). PostgreSQL refuses to run as root, so under root the server runs as the
`postgres` user that package creates, in a folder of its own under the temporary folder (pytest's
are private to root).
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.conftest import free_port


def _bindir() -> Path:
    found = []
    try:
        found.append(subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True).stdout.strip())
    except OSError:
        pass
    found.append("/usr/lib/postgresql/15/bin")
    if shutil.which("initdb"):
        found.append(os.path.dirname(os.path.realpath(shutil.which("initdb"))))
    for folder in found:
        if folder and (Path(folder) / "initdb").exists() and (Path(folder) / "pg_ctl").exists():
            return Path(folder)
    pytest.fail("PostgreSQL's initdb and pg_ctl were not found (pg_config --bindir, /usr/lib/postgresql/15/bin,"
                " PATH): install Debian's `postgresql` package (apt-get install postgresql; .ci/run does)")


@pytest.fixture(scope="session")
def postgres(tmp_path_factory):
    """database(name) -> postgresql://<user>@127.0.0.1:<port>/<name>, a new database of a server this
    session started."""
    bindir = _bindir()
    as_user = None
    if os.geteuid() == 0:
        try:
            as_user = pwd.getpwnam("postgres")
        except KeyError:
            pytest.fail("PostgreSQL does not run as root and there is no `postgres` user: install Debian's"
                        " `postgresql` package, which creates it")
        home = Path(tempfile.mkdtemp(prefix="trainer-postgres-"))
        os.chown(home, as_user.pw_uid, as_user.pw_gid)
    else:
        home = tmp_path_factory.mktemp("postgres")
    user = as_user.pw_name if as_user else pwd.getpwuid(os.geteuid()).pw_name
    data, port = home / "data", free_port()

    def run(*command: str) -> None:
        done = subprocess.run([str(bindir / command[0]), *command[1:]], capture_output=True, text=True,
                              user=as_user.pw_uid if as_user else None, group=as_user.pw_gid if as_user else None,
                              cwd=home, timeout=120)
        assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"

    run("initdb", "-D", str(data), "-U", user, "--auth=trust", "--encoding=UTF8", "--no-sync")
    options = f"-h 127.0.0.1 -p {port} -k {home} -c fsync=off -c max_connections=200"
    run("pg_ctl", "-D", str(data), "-l", str(home / "server.log"), "-o", options, "-w", "-t", "60", "start")

    def database(name: str) -> str:
        run("createdb", "-h", "127.0.0.1", "-p", str(port), "-U", user, name)
        return f"postgresql://{user}@127.0.0.1:{port}/{name}"

    try:
        yield database
    finally:
        run("pg_ctl", "-D", str(data), "-m", "immediate", "-w", "stop")
        if as_user:
            shutil.rmtree(home, ignore_errors=True)
