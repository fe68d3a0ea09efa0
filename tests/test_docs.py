"""The README quotes measured figures; each must be one that benchmarks/RESULTS.md, the report of today's
figures, gives."""

import re

from conftest import ROOT


def quoted_figures(markdown: str) -> list[str]:
    """The decimal numbers of a Markdown text's prose (code blocks and inline code left out: commands, not
    figures)."""
    prose = re.sub(r"`[^`]*`", "", re.sub(r"```.*?```", "", markdown, flags=re.S))
    return re.findall(r"(?<![\w.])\d+\.\d+(?![\w.])", prose)


def test_quoted_figures_are_found():
    assert quoted_figures("F1 73.17 ± 0.59 (`--lr 1e-3`, `2.13.0`)\n```\npip install x==1.2\n```\n") == [
        "73.17",
        "0.59",
    ]


def test_every_figure_the_readme_quotes_is_in_results():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    results = (ROOT / "benchmarks" / "RESULTS.md").read_text(encoding="utf-8")
    missing = sorted({figure for figure in quoted_figures(readme) if figure not in results})
    assert not missing, f"figures the README quotes that benchmarks/RESULTS.md does not give: {missing}"
