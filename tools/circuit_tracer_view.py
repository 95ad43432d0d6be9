"""Draw exported attribution graphs in circuit-tracer's own viewer, offline, and count the page's errors.

circuit-tracer 0.5.0's frontend (`circuit_tracer/frontend/assets/index.html`) loads d3 (with d3-jetpack), dagre and
pako from CDNs, which no machine here can reach. This script copies that frontend into a folder, puts beside it the
same libraries from the npm registry — `d3@7.9.0`, `d3-jetpack@2.3.0` (its UMD build extends the global d3 with the
`.appendMany`/`.at`/`.st`/`d3.nestBy` the viewer calls, loaded through its AMD branch onto the page's d3, with
`d3-collection@1.0.7` for the `nest` it uses; its `d3v7+jetpack.js` bundle patches a second copy of d3-selection
and does not work here; a three-line adapter gives conventions() the `c.drawAxis` method of the jetpack build the
page was written against), `dagre@0.8.5`, `pako@2.1.0` — points the
page's script tags at them (dropping the live-reload client and the .npy reader, which the graph page never uses),
serves it with circuit-tracer's own `local_server.serve(DATA_DIR, frontend_dir=...)`, opens it in Debian Chromium
through playwright (never a downloaded browser), waits for the graph, saves a screenshot and reports the page
errors (uncaught exceptions) and console errors.

    headscope circuits export REPORT --format neuronpedia --out-dir graphs/
    python tools/circuit_tracer_view.py graphs/ --out test-output/circuit_tracer.png [--slug SLUG]

Prints one JSON object: {"page_errors": N, "console_errors": [...], "screenshot": PATH, "nodes_drawn": K}.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from importlib.resources import files
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
PACKAGES = {  # npm package → (file inside the tarball, name the page loads)
    "d3@7.9.0": ("package/dist/d3.min.js", "d3.js"),
    "d3-collection@1.0.7": (
        "package/dist/d3-collection.min.js",
        "d3-collection.js",
    ),  # nest/keys: gone in d3 7
    "d3-jetpack@2.3.0": ("package/build/d3-jetpack.cjs", "d3-jetpack.js"),
    "dagre@0.8.5": ("package/dist/dagre.min.js", "dagre.min.js"),
    "pako@2.1.0": ("package/dist/pako.min.js", "pako.min.js"),
}
CACHE = Path.home() / ".cache" / "headscope" / "npm"
# d3-jetpack's UMD build runs `global.d3 = {}` before extending it (it would wipe d3 7); its AMD branch takes the
# modules as arguments, so a one-off `define` hands it the page's d3 (with d3-collection's nest) and merges what it
# exports (nestBy, conventions, attachTooltip, ...) into d3. `define` is removed again before dagre loads.
JETPACK_BEFORE = (
    "window.define = function (deps, factory) { var ext = {}; "
    "factory(ext, d3, d3, d3, d3, d3, d3, d3, d3, d3); Object.assign(d3, ext); };\nwindow.define.amd = true;\n"
)
# The page was written against transformer-circuits' own jetpack build (2024-07-20), whose conventions() object
# carries `c.drawAxis(svg?)`; npm's 2.3.0 has `d3.drawAxis(c)` instead, so the adapter adds the method.
JETPACK_AFTER = (
    "delete window.define;\n"
    "(function () { var make = d3.conventions; d3.conventions = function (opts) { var c = make(opts); "
    "c.drawAxis = function (svg) { return d3.drawAxis(svg ? Object.assign({}, c, {svg: svg}) : c); }; "
    "return c; }; })();\n"
)


def vendor_files(cache: Path = CACHE) -> dict[str, Path]:
    """The three libraries, fetched once with `npm pack` (the npm registry) into `cache`."""
    cache.mkdir(parents=True, exist_ok=True)
    out = {}
    for spec, (member, name) in PACKAGES.items():
        target = cache / name
        if not target.exists():
            tgz = (
                subprocess.run(
                    ["npm", "pack", spec, "--silent"],
                    cwd=cache,
                    capture_output=True,
                    text=True,
                    check=True,
                    timeout=300,
                )
                .stdout.strip()
                .splitlines()[-1]
            )
            with tarfile.open(cache / tgz) as tar:
                extracted = tar.extractfile(member)
                if extracted is None:
                    raise SystemExit(f"{spec}: no {member} in the package")
                target.write_bytes(extracted.read())
        out[name] = target
    return out


def offline_frontend(dest: Path, libs: dict[str, Path]) -> Path:
    """circuit-tracer's frontend in `dest`, its CDN scripts replaced by ./vendor copies."""
    src = Path(str(files("circuit_tracer") / "frontend" / "assets"))
    shutil.copytree(src, dest, dirs_exist_ok=True)
    (dest / "vendor").mkdir(exist_ok=True)
    for name, path in libs.items():
        shutil.copy(path, dest / "vendor" / name)
    page = (dest / "index.html").read_text(encoding="utf-8")
    page = re.sub(r"<script src='https://[^']*(hotserver-client-ws|npy_v0)\.js'></script>\n", "", page)
    page = re.sub(
        r"<script src='https://[^']*/d3\.js'></script>", "<script src='./vendor/d3.js'></script>", page
    )
    (dest / "vendor" / "jetpack-before.js").write_text(JETPACK_BEFORE, encoding="utf-8")
    (dest / "vendor" / "jetpack-after.js").write_text(JETPACK_AFTER, encoding="utf-8")
    jetpack = "".join(
        f"<script src='./vendor/{name}'></script>"
        for name in ("d3-collection.js", "jetpack-before.js", "d3-jetpack.js", "jetpack-after.js")
    )
    page = re.sub(r"<script src='https://[^']*/jetpack_[0-9-]+\.js'></script>", jetpack, page)
    page = re.sub(
        r"<script src='https://[^']*/dagre\.min\.js'></script>",
        "<script src='./vendor/dagre.min.js'></script>",
        page,
    )
    page = re.sub(
        r"<script src='https://[^']*/pako\.min\.js'></script>",
        "<script src='./vendor/pako.min.js'></script>",
        page,
    )
    if "https://" in page:
        raise SystemExit(
            "index.html still loads a script from the network: " + re.findall(r"https://\S+", page)[0]
        )
    (dest / "index.html").write_text(page, encoding="utf-8")
    return dest


def draw(data_dir: Path, out: Path, slug: str | None, port: int) -> dict:
    from circuit_tracer.frontend.local_server import serve
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        frontend = offline_frontend(Path(tmp) / "frontend", vendor_files())
        server = serve(str(data_dir.resolve()), frontend_dir=str(frontend), port=port)
        try:
            return _screenshot(
                sync_playwright,
                f"http://localhost:{port}/index.html" + (f"?slug={slug}" if slug else ""),
                out,
            )
        finally:
            server.stop()


def _screenshot(sync_playwright, url: str, out: Path) -> dict:
    page_errors: list[str] = []
    console: list[str] = []
    failed: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS, headless=True)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.on("pageerror", lambda e: page_errors.append(str(e)))
        page.on("console", lambda m: console.append(m.text) if m.type == "error" else None)
        page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)
        page.goto(url, wait_until="networkidle")
        try:
            page.wait_for_selector(".cg svg circle", state="attached", timeout=60_000)
        except Exception as e:  # keep going: the screenshot and the errors say what went wrong
            page_errors.append(f"no graph drawn: {str(e).splitlines()[0]}")
        page.wait_for_timeout(2000)  # the force layout settles
        drawn = page.locator(".cg svg circle").count()
        out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(out), full_page=True)
        browser.close()
    return {"page_errors": len(page_errors), "errors": page_errors, "console_errors": console, "failed_requests": failed,
            "screenshot": str(out), "nodes_drawn": drawn, "url": url}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "data_dir", type=Path, help="a folder written by `circuits export --format neuronpedia --out-dir`"
    )
    ap.add_argument("--out", type=Path, default=Path("test-output/circuit_tracer.png"))
    ap.add_argument("--slug", default=None, help="which graph (default: the first in graph-metadata.json)")
    ap.add_argument("--port", type=int, default=8032)
    args = ap.parse_args()
    if not (args.data_dir / "graph-metadata.json").is_file():
        sys.exit(f"{args.data_dir} has no graph-metadata.json: export with --out-dir first")
    result = draw(args.data_dir, args.out, args.slug, args.port)
    print(json.dumps(result, indent=1))
    sys.exit(1 if result["page_errors"] else 0)


if __name__ == "__main__":
    main()
