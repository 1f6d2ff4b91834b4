"""Both reports rendered by headless Chromium from disk: the screenshot is not blank and every figure decodes.

Chromium is the Debian package (``apt-get install chromium``; ``make test`` installs it where it can). The page is
opened as a ``file://`` URL with networking features off, as a reader opens the file; a copy of the page with a small
script that counts the images the browser decoded (``naturalWidth > 0``) is dumped as DOM after loading.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cxrkd_monai.report import write_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
COUNT_DECODED_IMAGES = """<script>
window.addEventListener("load", () => {
  const images = Array.from(document.images);
  document.body.dataset.decoded = images.filter((image) => image.complete && image.naturalWidth > 0).length
    + "/" + images.length;
});
</script></body>"""

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium is not installed (Debian: apt-get install chromium); make test installs it"
)


def _chromium(profile: Path, *arguments: str) -> subprocess.CompletedProcess:
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        *arguments,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=180)


@pytest.fixture(scope="module")
def reports(vkd_runs, fracture_run, phantom, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("browser_reports")
    return {
        "vkd": write_report(
            vkd_runs["vkd"][0],
            compare=[vkd_runs["baseline"][0]],
            output_dir=root / "vkd",
            datalist=phantom / "datalist_vkd.json",
            num_resamples=50,
        ),
        "fracture": write_report(
            fracture_run[0],
            output_dir=root / "fracture",
            datalist=phantom / "datalist_fracture.json",
            num_resamples=50,
            **fracture_run[1]["overrides"],
        ),
    }


@pytest.mark.parametrize("kind", ["vkd", "fracture"])
def test_screenshot_is_not_blank(reports, kind, tmp_path):
    screenshot = tmp_path / "page.png"
    result = _chromium(
        tmp_path / "profile", f"--screenshot={screenshot}", "--window-size=1280,2000", reports[kind].resolve().as_uri()
    )
    assert screenshot.is_file(), result.stderr[-2000:]
    pixels = np.asarray(Image.open(screenshot).convert("L"), dtype=np.float64)
    assert pixels.shape == (2000, 1280)
    assert pixels.std() > 20.0  # a blank or single-colour page has almost none
    assert (pixels < 128).mean() > 0.05  # the header band, text and figures draw dark pixels
    # the figures are drawn: below the header, the page is not one flat colour in any 200-pixel band
    assert all(pixels[top : top + 200].std() > 5.0 for top in range(200, 2000, 200))


@pytest.mark.parametrize("kind", ["vkd", "fracture"])
def test_browser_decodes_every_figure(reports, kind, tmp_path):
    page = tmp_path / "report.html"
    page.write_text(reports[kind].read_text().replace("</body>", COUNT_DECODED_IMAGES))
    result = _chromium(tmp_path / "profile", "--dump-dom", "--virtual-time-budget=10000", page.as_uri())
    decoded = re.search(r'data-decoded="(\d+)/(\d+)"', result.stdout)
    assert decoded, result.stdout[-2000:] + result.stderr[-2000:]
    assert int(decoded.group(2)) == len(list((reports[kind].parent / "figures").glob("*.png"))) >= 4
    assert decoded.group(1) == decoded.group(2)
