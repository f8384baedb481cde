"""A report shows hostile names as text (markdown, HTML and figures), and a failure half-way
leaves no half folder: the report is built aside and moved into place."""

from __future__ import annotations

import dataclasses
import html
import re
from pathlib import Path

import pytest
from test_fhs_profile import make_results, synthetic_run

from layerprobe.fhs import build_report
from layerprobe.fhs import report as report_module
from layerprobe.fhs.markdown import markdown_to_html, md_escape
from layerprobe.testing import stores

HOSTILE = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "cost $\\frac{1$ study",
    "a|b\\|c **bold** `code` [x](javascript:alert(1)) ~~s~~ &amp; & <ins>u</ins>",
    "back\\slash\\",
    "line\nbreak",
]
RAW_TAG = re.compile(r"<(?!/?ins>)")
"""A ``<`` that is not our own underline markup."""


@pytest.mark.parametrize("text", HOSTILE)
def test_md_escape_shows_exactly_the_characters(text: str) -> None:
    plain = text.replace("\n", " ").replace("`", "'")  # the two changes md_escape makes: one line, no code span
    shown = html.escape(plain, quote=False)
    escaped = md_escape(text)
    assert not RAW_TAG.search(escaped) and "`" not in escaped and "<ins>" not in escaped
    assert markdown_to_html(f"- {escaped}").split("<body>\n")[1].startswith(f"<ul><li>{shown}</li></ul>")
    assert f"<td>{shown}</td><td>2</td>" in markdown_to_html(f"| a | b |\n|---|---|\n| {escaped} | 2 |")
    assert f'alt="{html.escape(plain)}: x"' in markdown_to_html(f"![{escaped}: x](f.png)")
    in_code = md_escape(text, code=True)  # a code span it cannot leave: no backtick, no raw tag
    assert "`" not in in_code and not RAW_TAG.search(in_code) and "\n" not in in_code
    assert markdown_to_html(f"- `{in_code}`").count("<code>") == 1


@pytest.fixture(scope="module")
def hostile_results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A results table whose dataset, model, adapter and (through the store) class names and prompt are hostile."""
    root = tmp_path_factory.mktemp("hostile")
    classes = ("<img src=x onerror=alert(1)>", "<script>alert(2)</script>")
    run = stores.synthetic_run(10, {"vision/mean": (2, 8)})
    meta = dataclasses.replace(run.meta, prompt_template="Is it $x$? <script>alert(3)</script>", candidates=classes, class_names=classes,
                               manifest_sha256=run.samples.digest(classes))  # fmt: skip
    stores.write_synthetic_store(root / "runs" / "base.zarr", dataclasses.replace(run, meta=meta))
    base = synthetic_run("base", "org/<script>alert(4)</script>", HOSTILE[2] + " " + HOSTILE[1], final=0.7)
    tuned = synthetic_run("tuned", "org/<script>alert(4)</script>", HOSTILE[2] + " " + HOSTILE[1], adapter="lora/<b onmouseover=x>$y$", shift=0.05, rng=1)
    path = root / "results.parquet"
    make_results([{**base, "store": "runs/base.zarr"}, {**tuned, "store": None}]).write_parquet(path)
    return path


def test_hostile_names_are_text_everywhere(hostile_results: Path, tmp_path: Path) -> None:
    rep = build_report(hostile_results, tmp_path / "rep")  # "$\frac{1$" used to crash matplotlib's mathtext
    for path in (rep.markdown, rep.profile_md):
        text = path.read_text()
        assert not RAW_TAG.search(text), f"raw markup in {path.name}"
        assert "&lt;img src=x onerror=alert(1)&gt;" in text and "cost $\\\\frac{1$ study" in text
    text = rep.markdown.read_text()
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in text and "Is it $x$? &lt;script&gt;alert(3)&lt;/script&gt;" in text  # from the store
    page = rep.html.read_text()
    tags = set(re.findall(r"<(/?[a-z0-9]+)", page))
    assert tags <= {"html", "/html", "head", "/head", "meta", "title", "/title", "style", "/style", "body", "/body", "h1", "/h1", "h2", "/h2",
                    "p", "/p", "ul", "/ul", "li", "/li", "table", "/table", "thead", "/thead", "tbody", "/tbody", "tr", "/tr", "th", "/th",
                    "td", "/td", "strong", "/strong", "ins", "/ins", "code", "/code", "figure", "/figure", "img"}  # fmt: skip
    assert "&lt;img src=x onerror=alert(1)&gt;" in page and page.count("<img ") == len(re.findall(r"!\[", text))
    svg = next(p for p in rep.figures if p.suffix == ".svg").read_text()
    assert "cost $\\frac{1$ study &lt;img src=x onerror=alert(1)&gt;" in svg  # drawn as the characters, not as math


def test_a_failure_half_way_leaves_no_half_folder(hostile_results: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "reports" / "busi"

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("figure failed")

    real = report_module.plot_llm_sites
    monkeypatch.setattr(report_module, "plot_llm_sites", broken)
    with pytest.raises(RuntimeError, match="figure failed"):
        build_report(hostile_results, out)
    assert not out.exists() and list(out.parent.iterdir()) == []  # no folder, no temporary left
    monkeypatch.setattr(report_module, "plot_llm_sites", real)
    first = build_report(hostile_results, out)  # the rerun works
    before = first.markdown.read_text()
    (out / "my-notes.txt").write_text("mine")
    monkeypatch.setattr(report_module, "plot_llm_sites", broken)
    with pytest.raises(RuntimeError):
        build_report(hostile_results, out, html_page=False)
    assert first.markdown.read_text() == before and first.html.is_file()  # the previous report is intact
    monkeypatch.setattr(report_module, "plot_llm_sites", real)
    again = build_report(hostile_results, out, html_page=False)
    assert again.html is None and not (out / "report.html").exists()  # our stale page goes, with our old figures
    assert (out / "my-notes.txt").read_text() == "mine" and sorted(p.name for p in out.parent.iterdir()) == ["busi"]
    assert all(p.is_file() and p.parent == out / "figures" for p in again.figures)
