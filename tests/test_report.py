"""`snakemake --report`: every figure and table of a study under a caption, by category, read in a real browser.

The fast tests hold the report's layout (quagmire.report) against the figures the plots module draws and the
caption files in report/, and render every caption as Snakemake does (Jinja, then reStructuredText) with docutils
set to fail on any warning, so a caption that would show a "System Message" box in the report fails here.

The slow test builds the report of the smoke study (reusing the session's smoke DAG) and renders it in headless
Chromium (Debian's `chromium`): the page's JavaScript must have drawn the landing page (study text, config,
every category) and, driven to list the figures, every figure of the study with its image. Screenshots are kept
in test-artifacts/ at the repository root. Skipped (with the reason) without a chromium binary, except under
CI=true, where it fails instead (.ci/run installs it).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from quagmire import report as layout
from quagmire.analysis import plots

REPO = Path(__file__).resolve().parents[1]
REPORT_DIR = REPO / "report"
ARTIFACTS = REPO / "test-artifacts"
RULE_FILES = sorted((REPO / "rules").glob("*.smk"))


# ---- layout and captions (fast) ----------------------------------------------------------------------------
def test_every_figure_has_a_category_and_a_caption_section() -> None:
    assert set(layout.FIGURES) == set(plots.FIGURES)
    text = (REPORT_DIR / layout.FIGURE_CAPTION).read_text()
    for name in plots.FIGURES:
        assert f'figure == "{name}"' in text, f"report/{layout.FIGURE_CAPTION} has no section for figure {name}"
    assert {category for category, _ in layout.FIGURES.values()} <= set(layout.CATEGORIES)


def test_every_output_kind_has_a_caption_file_and_every_caption_file_is_used() -> None:
    for name, entry in layout.OUTPUTS.items():
        assert (REPORT_DIR / entry.caption).is_file(), f"{name}: report/{entry.caption} is missing"
        assert entry.category in layout.CATEGORIES
    used = {entry.caption for entry in layout.OUTPUTS.values()} | {layout.FIGURE_CAPTION, "workflow.rst"}
    present = {str(p.relative_to(REPORT_DIR)) for p in REPORT_DIR.rglob("*.rst")}
    assert present == used


def test_every_output_kind_is_flagged_in_some_rule() -> None:
    rules = "\n".join(path.read_text() for path in RULE_FILES)
    for name in layout.OUTPUTS:
        assert re.search(rf'in_report\([^\n]*"{name}"', rules), f"no rule flags an output as {name!r}"
    assert "figure_in_report(" in (REPO / "rules" / "analysis.smk").read_text()
    assert re.search(r'^report: "report/workflow.rst"$', (REPO / "Snakefile").read_text(), re.M)


def _fake_snakemake(rule: str, config: dict[str, Any], **wildcards: str) -> SimpleNamespace:
    """What Snakemake hands a caption's Jinja: the job's wildcards, params, rule and the run's config."""
    return SimpleNamespace(
        wildcards=SimpleNamespace(**wildcards),
        params=SimpleNamespace(settings=json.dumps({"dpi": 120, "format": "png"}, sort_keys=True)),
        rule=rule,
        config=config,
    )


def _render(caption: Path, snakemake: SimpleNamespace) -> str:
    """A caption as Snakemake renders it (Jinja with its options, then docutils), failing on any rst warning."""
    jinja2 = pytest.importorskip("jinja2")
    from docutils.core import publish_parts

    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined)
    text = env.from_string(caption.read_text()).render(snakemake=snakemake, categories={}, files=[])
    settings = {"halt_level": 2, "report_level": 2, "warning_stream": False}
    return publish_parts(text, writer="html", settings_overrides=settings)["html_body"]


WILDCARDS = dict(study="smoke", recipe="random_n64_ep1", run="random_n64_ep1", stage="sft", benchmark="math500",
                 kind="sft", name="nemotron", ext="png", paper="paper")
CONFIGS = {
    "study": yaml.safe_load((REPO / "config" / "smoke.yaml").read_text()),
    "paper": yaml.safe_load((REPO / "config" / "paper.yaml").read_text()),
}


@pytest.mark.parametrize("config", sorted(CONFIGS))
@pytest.mark.parametrize("caption", sorted({e.caption for e in layout.OUTPUTS.values()} | {"workflow.rst"}))
def test_captions_render_as_clean_restructuredtext(caption: str, config: str) -> None:
    rule = "filter_rl" if caption.startswith("data/filter") else "rule"
    html = _render(REPORT_DIR / caption, _fake_snakemake(rule, CONFIGS[config], **WILDCARDS))
    assert "<strong>" in html or "<h1" in html
    assert "{{" not in html and "{%" not in html
    assert "mailto:" not in html  # pass@large read as an e-mail address: write pass\\@large


@pytest.mark.parametrize("figure", sorted(plots.FIGURES))
def test_each_figure_gets_its_own_caption_section(figure: str) -> None:
    html = _render(REPORT_DIR / layout.FIGURE_CAPTION, _fake_snakemake("plot", CONFIGS["study"], **{
        **WILDCARDS, "figure": figure}))
    assert f"figures/{figure}.png" in html
    assert "Shaped by" in html and "dpi" in html


def test_workflow_text_shows_the_study_config() -> None:
    html = _render(REPORT_DIR / "workflow.rst", _fake_snakemake("", CONFIGS["study"]))
    assert re.search(r"the study <\w+ class=\"docutils literal\">smoke</\w+> \(label: smoke \(seed 0\)\)", html)
    assert "random_n64_ep1" in html and "Study config" in html
    paper = _render(REPORT_DIR / "workflow.rst", _fake_snakemake("", CONFIGS["paper"]))
    assert "config/paper_qwen3_base.yaml" in paper


def test_a_broken_caption_fails_the_render(tmp_path: Path) -> None:
    broken = tmp_path / "broken.rst"
    broken.write_text("**unclosed strong\n\n.. code-block:: json\n\n")
    with pytest.raises(Exception):  # noqa: B017 - docutils raises its SystemMessage at halt_level
        _render(broken, _fake_snakemake("", {}))


# ---- the report of the smoke study in headless Chromium (slow) -------------------------------------------------
def chromium_binary() -> str:
    """The chromium binary, or skip (fail under CI=true, where .ci/run installs it) with the reason."""
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    reason = ("no chromium binary on PATH (chromium, chromium-browser): install Debian's package with "
              "`apt-get install chromium` to render the report")
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true, so the report must be rendered, but {reason}")
    pytest.skip(reason)


def chromium(binary: str, page: Path, *args: str) -> subprocess.CompletedProcess:
    """Headless Chromium on a local page; the virtual time budget lets the page's JavaScript finish first."""
    cmd = [binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           "--no-first-run", "--hide-scrollbars", "--virtual-time-budget=20000", *args, page.as_uri()]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, f"chromium failed ({result.returncode}): {result.stderr[-2000:]}"
    return result


class VisibleText(HTMLParser):
    """The text a reader sees in a DOM (script and style contents left out) and the sources of its images."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self.images: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self._hidden += 1
        if tag == "img":
            self.images.append(dict(attrs).get("src") or "")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self._hidden -= 1

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.parts.append(data)

    @classmethod
    def of(cls, dom: str) -> VisibleText:
        parser = cls()
        parser.feed(dom)
        return parser

    @property
    def text(self) -> str:
        return " ".join("".join(self.parts).split())


def embedded(html: str, name: str) -> Any:
    """A JSON object the report embeds as `<script id="NAME"> var NAME = {...}; </script>`."""
    match = re.search(rf'<script id="{name}">\s*var {name} = (.*?);\s*</script>', html, re.S)
    assert match, f"the report embeds no `var {name}`"
    return json.loads(match.group(1))


# Shows every figure of the report: a search for the figures folder in the result list, the predictor scatter (or
# the first figure) opened. It waits for the app (React renders after the page's scripts ran) and calls the app's
# own view switch.
DRIVER = """<script>
(function show() {
  if (typeof app === "undefined" || !app) { setTimeout(show, 50); return; }
  var figures = Object.keys(results).filter(function (p) { return p.indexOf("/figures/") >= 0; }).sort();
  var open = figures.filter(function (p) { return p.indexOf("/predictor_scatter.") >= 0; }).concat(figures)[0];
  app.setView({navbarMode: "searchresults", searchTerm: "/figures/", content: "img",
               contentPath: results[open].data_uri, resultPath: open});
})();
</script>
"""
# Changes nothing on the landing page: records where its title sits (px from the window's top) once drawn. The
# report centers its content pane, so a page taller than the window would put its top out of reach (negative).
TITLE_PROBE = """<script>
(function probe() {
  var title = document.querySelector("#app h1");
  if (!title) { setTimeout(probe, 50); return; }
  setTimeout(function () { document.body.setAttribute("data-title-top", title.getBoundingClientRect().top); }, 500);
})();
</script>
"""


def with_script(html: str, script: str) -> str:
    """The report with `script` run last (before the final </body>: the libraries' text may hold that tag too)."""
    head, body_end, tail = html.rpartition("</body>")
    return head + script + body_end + tail


@pytest.mark.slow
def test_report_of_the_smoke_study_renders_in_chromium(smoke_study: tuple[Path, Path], tmp_path: Path) -> None:
    from dagrun import snakemake

    binary = chromium_binary()
    workdir, configfile = smoke_study
    config = yaml.safe_load(configfile.read_text())
    study = config["study"]
    figures = config.get("plots", {}).get("figures", list(plots.FIGURES))
    page = tmp_path / "report.html"
    snakemake(workdir, configfile, "--report", str(page))
    html = page.read_text()
    print(f"report of the smoke study: {page.stat().st_size} bytes")

    # what the report holds: every figure and table, by category, each with a rendered caption
    results, categories = embedded(html, "results"), embedded(html, "categories")
    assert list(categories) and set(categories) == set(layout.CATEGORIES)
    for figure in figures:
        path = f"results/{study}/figures/{figure}.png"
        assert path in results, f"figure {figure} is not in the report"
        assert results[path]["data_uri"].startswith("data:image/png;") and results[path]["mime_type"] == "image/png"
        assert path in categories[layout.FIGURES[figure][0]][config.get("label", study)]
    for table in ("recipes", "tidy", "predictors", "predictor_values", "passk_sweep"):
        assert f"results/{study}/tables/{table}.csv" in results
    for path, result in results.items():
        assert result["caption"].strip(), f"{path} has no caption"
        assert "System Message" not in result["caption"], f"{path}: the caption's rst has an error"
    assert any(p.endswith("grading_report.md") for p in results)
    assert any(p.endswith("train_stats.json") for p in results)

    # the landing page, as a browser draws it: the study's text and config, every category in the menu
    ARTIFACTS.mkdir(exist_ok=True)
    probed = tmp_path / "report-probed.html"
    probed.write_text(with_script(html, TITLE_PROBE))
    dom = chromium(binary, probed, "--window-size=1400,1000", "--dump-dom").stdout
    landing = VisibleText.of(dom)
    top = re.search(r'data-title-top="(-?[\d.]+)"', dom)
    assert top and float(top.group(1)) >= 0, f"the landing page's title is out of view: {top and top.group(1)}"
    for category in layout.CATEGORIES:
        assert category in landing.text, f"category {category!r} not drawn"
    assert "Does the post-SFT score predict the post-RL score?" in landing.text
    assert "Study config" in landing.text and '"study": "smoke"' in landing.text
    assert "System Message" not in landing.text
    chromium(binary, page, "--window-size=1400,1000", f"--screenshot={ARTIFACTS / 'report.png'}")

    # every figure, listed and shown by the page's own code
    driven = tmp_path / "report-figures.html"
    driven.write_text(with_script(html, DRIVER))
    shown = VisibleText.of(chromium(binary, driven, "--dump-dom").stdout)
    for figure in figures:
        assert f"figures/{figure}.png" in shown.text, f"figure {figure} not listed in the rendered page"
    assert any(src.startswith("data:image/png;") for src in shown.images), "no figure drawn"
    chromium(binary, driven, "--window-size=1400,1000", f"--screenshot={ARTIFACTS / 'report-figures.png'}")
    for shot in ("report.png", "report-figures.png"):
        assert (ARTIFACTS / shot).stat().st_size > 10_000
        print(f"screenshot: {ARTIFACTS / shot}")
