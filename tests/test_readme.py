"""The README's quick start and CI must not drift apart."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def quick_start_commands() -> list[str]:
    text = (ROOT / "README.md").read_text("utf-8")
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```(?:sh|bash|console)\n(.+?)\n```", section)


def test_quick_start_is_two_commands_demo_then_tests() -> None:
    commands = quick_start_commands()
    assert len(commands) == 2, commands
    demo, tests = commands
    assert "--demo" in demo
    assert "pytest" in tests
    assert "\n" not in demo
    assert "\n" not in tests


def test_ci_runs_exactly_the_readme_test_command() -> None:
    _, test_command = quick_start_commands()
    script = (ROOT / ".ci" / "run").read_text("utf-8")
    lines = [line.strip() for line in script.splitlines() if line.strip()]
    assert lines[-1] == test_command


def test_github_workflow_runs_ci_script() -> None:
    workflow = (ROOT / ".github" / "workflows" / "ci.yml").read_text("utf-8")
    assert "bash .ci/run" in workflow


def test_ci_runs_every_platform_and_python_the_package_claims() -> None:
    workflow = (ROOT / ".github" / "workflows" / "ci.yml").read_text("utf-8")
    pyproject = (ROOT / "pyproject.toml").read_text("utf-8")
    noxfile = (ROOT / "noxfile.py").read_text("utf-8")
    assert "os: [ubuntu-latest, macos-latest, windows-latest]" in workflow
    claimed = re.findall(r"Programming Language :: Python :: (3\.\d+)", pyproject)
    assert claimed == ["3.11", "3.12", "3.13"]
    assert f"python: {[*claimed]}".replace("'", '"') in workflow
    assert f"PYTHONS = {[*claimed]}".replace("'", '"') in noxfile
    # Windows runs the same command with its own venv paths.
    _, test_command = quick_start_commands()
    windows = (
        test_command.replace("python3 -m venv", "python -m venv")
        .replace(".venv/bin/pip install", ".venv\\Scripts\\python -m pip install")
        .replace(".venv/bin/python", ".venv\\Scripts\\python")
        .replace("'", '"')
    )
    step = workflow.split("shell: cmd", 1)[1].split("\n      - ", 1)[0]
    folded = " ".join(step.split("run: >-", 1)[1].split())
    assert folded == windows
