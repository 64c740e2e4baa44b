"""The README's Python examples run as written."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_blocks_run():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "the README should contain at least one python example"
    for block in blocks:
        exec(compile(block, str(README), "exec"), {})


def test_readme_gives_the_ci_test_command():
    ci = (README.parent / ".ci" / "run").read_text()
    assert "python -m pytest -q" in README.read_text()
    assert "python -m pytest -q" in ci


def _shell_commands() -> list[str]:
    """The README's shell commands, continuation lines joined and comments dropped."""
    commands = []
    for block in re.findall(r"```(?:bash|sh)\n(.*?)```", README.read_text(), flags=re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            for part in re.split(r"&&|\|", line):
                commands.append(part.strip())
    return commands


def test_readme_formers_commands_parse():
    """Every `formers ...` command in the README names real subcommands, flags and files."""
    import shlex

    from formers.cli.main import build_parser

    parser = build_parser()
    found = [c for c in _shell_commands() if c.startswith("formers ")]
    assert len(found) >= 10, found
    for command in found:
        argv = shlex.split(re.split(r"\s[<>]", command)[0])[1:]  # no redirections
        try:
            args = parser.parse_args(argv)
        except SystemExit:
            raise AssertionError(f"the README's command does not parse: {command}") from None
        config = getattr(args, "config", None)
        if config is not None:
            assert (README.parent / config).is_file(), f"{command}: no file {config}"
