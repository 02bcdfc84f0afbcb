"""Screenshots of the gallery's pages at their opening thresholds (``make gallery``): one PNG
beside each page (and, for :data:`CARD_PAGES`, ``<page>-card.png`` with the most influential
labelled node clicked, its card in the side panel), taken in headless Chromium with no network (selenium 4.51, Debian
chromium-driver: ``make browser``).

    python graphs/screenshots.py graphs/gallery
"""

from __future__ import annotations

import sys
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

#: Pages also shot with their most influential labelled node clicked, showing its card.
CARD_PAGES = ("ioi-neurons", "ioi-components", "dallas-texas")


def main(folder: Path) -> int:
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1600,1000", "--hide-scrollbars"):
        options.add_argument(arg)
    browser = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
    try:
        for page in sorted(folder.glob("*.html")):
            if page.name == "index.html":
                continue
            browser.get(page.resolve().as_uri())
            if browser.execute_script("return document.body.getAttribute('data-ready')") != "1":
                raise SystemExit(f"{page}: the viewer did not start: {browser.get_log('browser')}")
            shot = page.with_suffix(".png")
            browser.save_screenshot(str(shot))
            counts = browser.execute_script("return document.getElementById('counts').textContent")
            sys.stdout.write(f"{shot}: {counts}\n")
            if page.stem in CARD_PAGES:  # the most influential labelled node, clicked: its card
                ids = browser.execute_script("return scryingViewer.labelledIds().filter(scryingViewer.hasCard)")
                heads = [i for i in ids if browser.execute_script("return 'pattern' in scryingViewer.card(arguments[0])", i)]
                ids = heads or ids  # a component page: the most influential head, its pattern shown
                if ids:
                    browser.execute_script("scryingViewer.click(arguments[0])", ids[0])
                    card = page.with_name(page.stem + "-card.png")
                    browser.save_screenshot(str(card))
                    sys.stdout.write(f"{card}: {ids[0]} clicked\n")
    finally:
        browser.quit()
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else "graphs/gallery")))
