#!/usr/bin/env python3
"""Screenshots of the report's key figures for the README: docs/report_01.png, report_02.png, report_03.png.

    python scripts/screenshot_report.py                  # build the report (code hidden) into a temporary
                                                         # folder, then take the three pictures
    python scripts/screenshot_report.py --report reports # use a report already built there

Each picture is the key figure of one page with the text just above it, as Chromium draws it
(Debian's /usr/bin/chromium or $GDNLAB_CHROMIUM, driven by the playwright package; install both with
`bash scripts/install_browser.sh`). The page is opened offline. Pictures are written to a temporary
name and then moved into place, so a failed run leaves the earlier ones.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: page -> (picture, title of its key figure: a regular expression)
SHOTS = {"01_kernel_sweep": ("report_01.png", r"^Verify strategies: time per step"),
         "02_nsight_traces": ("report_02.png", r"^Per-phase breakdown"),
         "03_acceptance_length": ("report_03.png", r"^Which option to run per batch")}
VIEW_WIDTH = 1280
#: pixels of page above the figure's top in the picture (its heading and the start of its text)
ABOVE = 150
MAX_BYTES = 1_000_000

_FIND_JS = """(pattern) => {
    const re = new RegExp(pattern);
    const gd = Array.from(document.querySelectorAll('.js-plotly-plot'))
        .find(g => re.test((g.layout && g.layout.title && g.layout.title.text) || ''));
    if (!gd) return null;
    const r = gd.getBoundingClientRect();
    return {x: r.left + window.scrollX, y: r.top + window.scrollY, w: r.width, h: r.height};
}"""


def _chromium() -> str:
    exe = os.environ.get("GDNLAB_CHROMIUM", "/usr/bin/chromium")
    if not Path(exe).exists():
        sys.exit(f"screenshot_report: Chromium not found at {exe}: run `bash scripts/install_browser.sh`")
    return exe


def _build(folder: Path) -> Path:
    sys.path.insert(0, str(ROOT))
    from gdnlab.report import build_report

    return build_report(folder, hide_code=True, raise_on_error=True).parent


def _shoot(page, html: Path, pattern: str, out: Path) -> tuple[int, int]:
    page.goto(html.as_uri(), wait_until="load")
    page.wait_for_function("document.querySelectorAll('.js-plotly-plot .main-svg').length > 0", timeout=30_000)
    page.wait_for_timeout(500)
    box = page.evaluate(_FIND_JS, pattern)
    if box is None:
        titles = page.evaluate("() => Array.from(document.querySelectorAll('.js-plotly-plot'))"
                               ".map(g => (g.layout.title || {}).text)")
        raise SystemExit(f"screenshot_report: no figure titled /{pattern}/ in {html.name}; titles: {titles}")
    top = max(0, box["y"] - ABOVE)
    clip = {"x": 0, "y": top, "width": VIEW_WIDTH, "height": box["y"] + box["h"] + 12 - top}
    tmp = out.with_name(f".{out.name}.tmp.png")
    page.screenshot(path=str(tmp), clip=clip, full_page=True)
    size = tmp.stat().st_size
    if size > MAX_BYTES:
        tmp.unlink()
        raise SystemExit(f"screenshot_report: {out.name} would be {size:,} bytes (over {MAX_BYTES:,})")
    os.replace(tmp, out)
    return int(clip["height"]), size


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--report", type=Path, help="a built report folder (default: build one, code hidden)")
    ap.add_argument("--out", type=Path, default=ROOT / "docs", help="where the pictures go (default: docs/)")
    args = ap.parse_args(argv)
    from playwright.sync_api import sync_playwright

    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="gdnlab-shots-") as tmp:
        folder = args.report or _build(Path(tmp) / "report")
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=_chromium(), headless=True,
                                         args=["--no-sandbox", "--disable-gpu"])
            ctx = browser.new_context(offline=True, viewport={"width": VIEW_WIDTH, "height": 1000})
            page = ctx.new_page()
            page.route(re.compile(r"^(?!file:|data:|blob:|about:).*"), lambda route: route.abort())
            for stem, (name, pattern) in SHOTS.items():
                html = folder / f"{stem}.html"
                if not html.exists():
                    raise SystemExit(f"screenshot_report: {html} missing (build the report first)")
                height, size = _shoot(page, html, pattern, args.out / name)
                print(f"{args.out / name}: {VIEW_WIDTH}x{height} px, {size:,} bytes")
            browser.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
