"""No module under src/ calls a platform's own function outside a check of that platform.

**Guarded**, the rule this file enforces: a use of a POSIX-only name (``os.writev``,
``os.killpg``, ``signal.SIGKILL``, ``import fcntl`` ...) must sit inside an ``if`` statement or
``... if ... else ...`` expression whose test reads ``sys.platform`` or ``os.name``, in the
branch that runs only off Windows; a Windows-only name (``signal.CTRL_BREAK_EVENT``,
``subprocess.CREATE_NEW_PROCESS_GROUP``, ``ctypes.windll`` ...) in the branch that runs only on
Windows. Tests the rule understands: ``sys.platform == "win32"`` / ``!=``,
``sys.platform.startswith("win")``, ``os.name == "nt"`` / ``!=``, ``not`` of one of these, and
``and`` with one of these (its ``if`` branch only). A function-level ``if`` counts, and so does a
module-level one around ``def``s or imports (a platform dispatch). An early ``return`` does not
(the rule reads only the enclosing branches), and neither does ``hasattr``: mypy, run on each
platform in CI, understands ``sys.platform`` checks and nothing else. ``getattr(os, "NAME",
default)`` is portable by itself and is not a use.
"""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

POSIX_ONLY: dict[str, frozenset[str]] = {
    "os": frozenset(
        "writev readv killpg setsid setpgid getpgid getpgrp fork forkpty getuid geteuid getgid "
        "getegid chown lchown fchown mkfifo mknod statvfs fstatvfs sync pipe2 openpty ttyname "
        "nice getloadavg sched_getaffinity sysconf pathconf fpathconf wait3 wait4 WNOHANG "
        "posix_fadvise posix_fallocate".split()
    ),
    "signal": frozenset(
        "SIGKILL SIGHUP SIGQUIT SIGALRM SIGUSR1 SIGUSR2 SIGCHLD SIGPIPE SIGXFSZ SIGSTOP SIGCONT "
        "SIGTSTP SIGWINCH alarm pause setitimer getitimer pthread_kill pthread_sigmask sigwait "
        "siginterrupt".split()
    ),
}
POSIX_MODULES = frozenset("fcntl termios tty pty resource pwd grp posix syslog".split())
WINDOWS_ONLY: dict[str, frozenset[str]] = {
    "os": frozenset({"startfile"}),
    "signal": frozenset({"CTRL_BREAK_EVENT", "CTRL_C_EVENT", "SIGBREAK"}),
    "subprocess": frozenset(
        {"CREATE_NEW_PROCESS_GROUP", "CREATE_NO_WINDOW", "DETACHED_PROCESS", "STARTUPINFO"}
    ),
    "ctypes": frozenset({"windll", "WinDLL", "WINFUNCTYPE", "oledll"}),
}
WINDOWS_MODULES = frozenset("msvcrt winreg _winapi winsound".split())

POSIX, WINDOWS = "posix", "win32"


def _flip(side: str | None) -> str | None:
    return {POSIX: WINDOWS, WINDOWS: POSIX}.get(side or "")


def _is_platform(node: ast.expr) -> bool:
    """``sys.platform`` or ``os.name``."""
    return (
        isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and (node.value.id, node.attr) in {("sys", "platform"), ("os", "name")}
    )


def branches(test: ast.expr) -> tuple[str | None, str | None]:
    """The platform each branch of ``if test`` runs on only: (if branch, else branch)."""
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        body, orelse = branches(test.operand)
        return orelse, body
    if isinstance(test, ast.BoolOp) and isinstance(test.op, ast.And):
        sides = [branches(value)[0] for value in test.values]
        known = [side for side in sides if side is not None]
        return (known[0] if len(set(known)) == 1 else None), None
    if (
        isinstance(test, ast.Compare)
        and len(test.ops) == 1
        and _is_platform(test.left)
        and isinstance(test.comparators[0], ast.Constant)
        and test.comparators[0].value in ("win32", "nt")
    ):
        if isinstance(test.ops[0], ast.Eq):
            return WINDOWS, POSIX
        if isinstance(test.ops[0], ast.NotEq):
            return POSIX, WINDOWS
    if (
        isinstance(test, ast.Call)
        and isinstance(test.func, ast.Attribute)
        and test.func.attr == "startswith"
        and _is_platform(test.func.value)
        and [ast.literal_eval(arg) for arg in test.args] == ["win"]
    ):
        return WINDOWS, POSIX
    return None, None


def _platforms(tree: ast.Module) -> dict[ast.AST, str]:
    """The platform that each guarded node runs on only (nodes outside any guard are absent)."""
    found: dict[ast.AST, str] = {}

    def visit(node: ast.AST, platform: str | None) -> None:
        if platform is not None:
            found[node] = platform
        if isinstance(node, ast.If | ast.IfExp):
            body_side, else_side = branches(node.test)
            visit(node.test, platform)
            body = node.body if isinstance(node.body, list) else [node.body]
            orelse = node.orelse if isinstance(node.orelse, list) else [node.orelse]
            for child in body:
                visit(child, body_side or platform)
            for child in orelse:
                visit(child, else_side or platform)
            return
        for child in ast.iter_child_nodes(node):
            visit(child, platform)

    visit(tree, None)
    return found


def violations(source: str) -> list[str]:
    """Each platform-only use in ``source`` outside its platform's branch: ``line: name``."""
    tree = ast.parse(source)
    platform_of = _platforms(tree)
    bad: list[str] = []

    def check(node: ast.AST, name: str, needs: str) -> None:
        if platform_of.get(node) != needs:
            bad.append(f"{getattr(node, 'lineno', '?')}: {name} outside a {needs} branch")

    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            module, attr = node.value.id, node.attr
            if attr in POSIX_ONLY.get(module, ()) or module in POSIX_MODULES:
                check(node, f"{module}.{attr}", POSIX)
            elif attr in WINDOWS_ONLY.get(module, ()) or module in WINDOWS_MODULES:
                check(node, f"{module}.{attr}", WINDOWS)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
            )
            for name in names:
                top = name.split(".")[0]
                if top in POSIX_MODULES:
                    check(node, f"import {name}", POSIX)
                elif top in WINDOWS_MODULES:
                    check(node, f"import {name}", WINDOWS)
            if isinstance(node, ast.ImportFrom):
                for alias in node.names:
                    if alias.name in POSIX_ONLY.get(node.module or "", ()):
                        check(node, f"from {node.module} import {alias.name}", POSIX)
                    elif alias.name in WINDOWS_ONLY.get(node.module or "", ()):
                        check(node, f"from {node.module} import {alias.name}", WINDOWS)
    return bad


def test_no_module_uses_a_platform_s_own_call_outside_a_check_of_it() -> None:
    modules = sorted(SRC.rglob("*.py"))
    assert len(modules) > 40
    found = {
        str(path.relative_to(SRC)): problems
        for path in modules
        if (problems := violations(path.read_text("utf-8")))
    }
    assert found == {}


GUARDED = [
    'if sys.platform != "win32":\n    os.writev(fd, chunks)',
    'if sys.platform == "win32":\n    os.write(fd, data)\nelse:\n    os.writev(fd, chunks)',
    'if os.name == "nt":\n    pass\nelse:\n    import fcntl',
    'if not sys.platform.startswith("win"):\n    sig = signal.SIGKILL',
    'if sys.platform != "win32" and x:\n    os.killpg(pid, 9)',
    'sig = signal.SIGKILL if sys.platform != "win32" else signal.SIGTERM',
    'def f():\n    if sys.platform == "win32":\n        os.kill(pid, signal.CTRL_BREAK_EVENT)',
    'if sys.platform == "win32":\n    def f(): return subprocess.CREATE_NEW_PROCESS_GROUP',
    'flags = getattr(os, "O_NOFOLLOW", 0)',
]
UNGUARDED = [
    "os.writev(fd, chunks)",
    "import fcntl",
    "from os import killpg",
    'if sys.platform == "win32":\n    os.setsid()',  # the wrong branch
    'if sys.platform != "win32" or x:\n    signal.SIGHUP',  # runs on Windows when x
    'if hasattr(os, "writev"):\n    os.writev(fd, chunks)',
    'if sys.platform == "win32":\n    return\nos.getpgid(pid)',  # an early return
    "flags = subprocess.CREATE_NEW_PROCESS_GROUP",
    'if sys.platform == "win32":\n    msvcrt.locking(fd, 1, 1)\nfcntl.flock(fd, 2)',
    'if sys.platform != "win32":\n    import msvcrt',
]


@pytest.mark.parametrize("source", GUARDED)
def test_the_rule_accepts_a_use_inside_its_platform_s_branch(source: str) -> None:
    assert violations(textwrap.dedent(source)) == []


@pytest.mark.parametrize("source", UNGUARDED)
def test_the_rule_refuses_a_use_outside_its_platform_s_branch(source: str) -> None:
    assert len(violations(textwrap.dedent(source))) == 1
