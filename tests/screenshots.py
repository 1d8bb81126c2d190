"""The docs' screenshots, reproducible: headless Chromium (`tests/chromium.py`) on a real run's output.

    python -m tests.screenshots report output/demo
        rebuilds output/demo/report.html (`python -m viz.report`) and saves its first screen at
        1280x800 as docs/assets/report_first_screen.png
    python -m tests.screenshots explorer --vector_dir output/demo/vectors --results_dir output/demo
        starts `python -m persona.app` on the embedded model, drives every tab and saves
        docs/assets/app_<tab>.png; prints the answers and timings it shows

    python -m tests.screenshots vectors output/contrast_vectors
        writes evil and pessimistic vectors of the embedded model from a few hand-written contrasting
        answers (`tests/contrast_vectors.py`), for screenshots before a demo run has its own

Needs Debian's `chromium`; everything stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from persona.traits import load_trait
from tests.chromium import Tab, open_browser
from tests.gradio_page import click, free_port, open_tab, press, set_field, value_of

REPO_ROOT = Path(__file__).resolve().parents[1]
ASSETS = REPO_ROOT / "docs" / "assets"
TABS = ["steer", "tokens", "strip", "vectors", "results"]


def report(folder: Path, out: Path) -> None:
    """Rebuild the folder's report and save its first screen at 1280x800."""
    subprocess.run([sys.executable, "-m", "viz.report", str(folder)], check=True)
    page = (folder / "report.html").resolve()
    with tempfile.TemporaryDirectory() as profile, open_browser(Path(profile)) as browser:
        errors, shot = browser.open(page.as_uri(), width=1280, height=800)
        wide = browser.evaluate("document.documentElement.scrollWidth")
    out.write_bytes(shot)
    print(f"{out}: page errors {errors}, scrollWidth {wide} at a 1280-pixel window")


def _wait_up(url: str, server: subprocess.Popen, timeout: float = 900.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"python -m persona.app exited with {server.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            time.sleep(2)
    raise TimeoutError(f"{url} did not answer in {timeout:.0f} s")


def _choose(tab: Tab, dropdown: str, value: str) -> None:
    """Type a custom value (a vector path) into a Gradio dropdown that allows one."""
    set_field(tab, f"{dropdown} input", value)
    tab.wait(f"({value_of(dropdown + ' input')}) !== ''")


def _pick_option(tab: Tab, dropdown: str, text: str) -> None:
    """Open a Gradio dropdown (focus its input) and pick the option reading `text` (its list is outside `dropdown`)."""
    tab.js(f"(el => {{ el.focus(); el.click(); }})(document.querySelector('{dropdown} input'))")
    find = f"[...document.querySelectorAll('li.item')].find(li => li.getAttribute('aria-label') === {json.dumps(text)})"
    tab.wait(f"{find} !== undefined")
    tab.js(f"{find}.dispatchEvent(new MouseEvent('mousedown', {{bubbles: true}}))")


def _window(tab: Tab, height: int, width: int = 1280) -> None:
    metrics = dict(width=width, height=height, deviceScaleFactor=1, mobile=False)
    tab.browser.send("Emulation.setDeviceMetricsOverride", tab.session, **metrics)


def _shoot(tab: Tab, name: str) -> None:
    """Save the whole page once Gradio is idle: the window grown from 900 pixels to its height (at most 2400)."""
    tab.wait("!document.body.innerText.includes('processing |')", 900)
    _window(tab, 900)
    height = min(int(tab.js("document.documentElement.scrollHeight")), 2400)
    _window(tab, height)
    time.sleep(1)
    path = ASSETS / f"app_{name}.png"
    path.write_bytes(tab.screenshot())
    print(f"saved {path} (1280x{height})")


def explorer(args: argparse.Namespace) -> None:
    """Start the explorer on the embedded model, drive each tab, save a screenshot of each."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    command = [sys.executable, "-m", "persona.app", "--vector_dir", str(args.vector_dir)]
    command += ["--results_dir", str(args.results_dir), "--port", str(port)]
    vector = str(Path(args.vector_dir) / args.vector)
    prompt = args.prompt or load_trait(args.trait, "eval").questions[0]
    server = subprocess.Popen(command, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    try:
        _wait_up(url, server)
        with tempfile.TemporaryDirectory() as profile, open_browser(Path(profile), timeout=1800) as browser:
            tab = Tab(browser, width=1280, height=900)
            tab.navigate(url)
            tab.wait("document.querySelector('#steer-generate') !== null")
            if "steer" in args.tabs:
                set_field(tab, "#steer-prompt textarea", prompt)
                _choose(tab, "#steer-vector-0", vector)
                set_field(tab, "#steer-layer-0 input[type=number]", args.layer)
                set_field(tab, "#steer-coef-0 input[type=number]", args.coef)
                click(tab, f"#steer-positions input[value={args.positions}]")
                set_field(tab, "#steer-max-tokens input[type=number]", args.max_tokens)
                for _ in range(args.repeat):
                    print("steer:", press(tab, "#steer-generate", "#steer-status textarea", timeout=900))
                for side in ("unsteered", "steered"):
                    score = tab.js(f"document.querySelector('#steer-{side}-score').innerText")
                    print(f"{side} [{score.strip()}]: {tab.js(value_of(f'#steer-{side} textarea'))!r}")
                _shoot(tab, "steer")

            if "tokens" in args.tabs:
                open_tab(tab, "Token view")
                _choose(tab, "#tokens-vector", vector)
                set_field(tab, "#tokens-layer input[type=number]", args.layer)
                print("tokens:", press(tab, "#tokens-run", "#tokens-status textarea", timeout=900))
                _shoot(tab, "tokens")

            if "strip" in args.tabs:
                open_tab(tab, "Coefficient strip")
                _choose(tab, "#strip-vector", vector)
                set_field(tab, "#strip-layer input[type=number]", args.layer)
                print("strip:", press(tab, "#strip-run", "#strip-status textarea", timeout=900))
                for i in range(5):
                    label = tab.js(
                        f"document.querySelector('#strip-answer-{i} label, #strip-answer-{i} span').innerText"
                    )
                    print(f"  {label.strip()}: {tab.js(value_of(f'#strip-answer-{i} textarea'))!r}")
                _shoot(tab, "strip")

            if "vectors" in args.tabs:
                open_tab(tab, "Vectors")
                set_field(tab, "#vectors-layer input[type=number]", args.layer)
                print("vectors:", press(tab, "#vectors-run", "#vectors-status textarea", timeout=900))
                tab.wait("document.querySelectorAll('#vectors-heatmap img, #vectors-heatmap svg').length > 0")
                _shoot(tab, "vectors")

            if "results" in args.tabs:
                open_tab(tab, "Results")
                print("results:", press(tab, "#results-load", "#results-status textarea", timeout=900))
                if args.cell:
                    _pick_option(tab, "#results-cell", args.cell)
                    tab.wait(f"({value_of('#results-status textarea')}).endsWith({json.dumps(args.cell)})", 300)
                tab.wait("document.querySelector('#results-answers').innerText.trim().length > 0", 300)
                _shoot(tab, "results")

            outside = [u for u in tab.requested_urls() if not u.startswith((url, "data:", "blob:"))]
            print(f"page errors: {tab.errors()}; requests outside {url}: {outside}")
    finally:
        server.terminate()
        server.wait(timeout=60)


def vectors(folder: Path) -> None:
    """The contrast vectors of the embedded model, written into `folder`."""
    from persona.models import load_model
    from tests.contrast_vectors import CONTRASTS, contrast_vector

    folder.mkdir(parents=True, exist_ok=True)
    lm = load_model("smollm2-135m", device="cpu", dtype="float32")
    for trait in CONTRASTS:
        print(f"wrote {contrast_vector(lm, folder, trait)}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.screenshots", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="page", required=True)
    rep = sub.add_parser("report", help="the report's first screen")
    rep.add_argument("folder", type=Path, help="a results folder, e.g. output/demo")
    rep.add_argument("--out", type=Path, default=ASSETS / "report_first_screen.png")
    vec = sub.add_parser("vectors", help="contrast vectors of the embedded model")
    vec.add_argument("folder", type=Path)
    app = sub.add_parser("explorer", help="every tab of the explorer")
    app.add_argument("--vector_dir", type=Path, default=Path("output/demo/vectors"))
    app.add_argument("--results_dir", type=Path, default=Path("output/demo"))
    app.add_argument("--vector", default="evil_response_avg_diff.pt", help="file in --vector_dir to steer with")
    app.add_argument("--trait", default="evil", help="the default prompt is this trait's first held-out question")
    app.add_argument("--prompt", default="", help="the prompt to steer (default: see --trait)")
    app.add_argument("--layer", type=int, default=10)
    app.add_argument("--coef", type=float, default=3.0)
    app.add_argument("--positions", default="all", choices=("response", "prompt", "all"))
    app.add_argument("--max_tokens", type=int, default=48)
    app.add_argument("--repeat", type=int, default=2, help="Generate this often (the later runs time a warm model)")
    app.add_argument("--tabs", nargs="+", default=TABS, choices=TABS, help="the tabs to shoot (tokens needs steer)")
    app.add_argument(
        "--cell", default="", help="the Results tab's cell, e.g. steering/evil_steer_all_layer_10_coef_3.0.csv"
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    ns = parse_args()
    if ns.page == "report":
        report(ns.folder, ns.out)
    elif ns.page == "vectors":
        vectors(ns.folder)
    else:
        explorer(ns)
