"""README's two set-up commands stay the ones CI runs."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _bash_blocks(text: str) -> list[str]:
    blocks, inside, current = [], False, []
    for line in text.splitlines():
        if line.startswith("```bash"):
            inside, current = True, []
        elif line.startswith("```") and inside:
            inside = False
            blocks.append([c for c in current if c.strip() and not c.startswith("#")])
        elif inside:
            current.append(line)
    return blocks


def test_ci_runs_the_readme_test_command():
    quick_start = _bash_blocks((REPO / "README.md").read_text().split("## Quick start", 1)[1])
    install_and_run, install_and_test = quick_start[0], quick_start[1]
    assert len(install_and_run) == 1 and install_and_run[0].endswith("python -m trainer")
    assert len(install_and_test) == 1
    assert install_and_test[0] in (REPO / ".ci" / "run").read_text()
