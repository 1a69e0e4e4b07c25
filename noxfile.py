"""The test suite on every Python the project supports that is installed here.

    nox                                   # 3.11, 3.12 and 3.13; one not installed is skipped
    nox -s tests-3.13 -- tests/net -q     # one interpreter, arguments passed on to pytest

Each interpreter gets its own virtual environment under .nox/, with the package installed as
people install it (not editable) plus the test extras. CI runs the README's command instead,
one interpreter per job (.github/workflows/ci.yml).
"""

import nox

PYTHONS = ["3.11", "3.12", "3.13"]

nox.options.error_on_missing_interpreters = False  # skipped and said so, not a failure
nox.options.reuse_existing_virtualenvs = True


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """Install the package with its test extras and run pytest (posargs go to pytest)."""
    session.install(".[test]")
    session.run("python", "-m", "pytest", *(session.posargs or ["-n", "auto"]))
