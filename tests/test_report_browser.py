"Open the quickstart's report.html in a real headless Chromium: plots rendered, images loaded, no JavaScript errors."
import html, json, re, subprocess
from pathlib import Path
import pytest
from conftest import CHROME, needs_chromium

ROOT = Path(__file__).resolve().parents[1]
SHOT = ROOT/'.ci'/'out'/'report-screenshot.png'  # the README names this path
pytestmark = needs_chromium('the report')  # skipped without a browser, failed in CI

def chrome(tmp, *args):
    flags = ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
             '--disable-component-update', '--disable-sync', f'--user-data-dir={tmp}/profile',
             '--virtual-time-budget=20000']
    return subprocess.run([CHROME, *flags, *args], capture_output=True, text=True, timeout=180)

def render_check(tmp, page):
    dom = chrome(tmp, '--dump-dom', page.as_uri()).stdout
    m = re.search(r'data-render-check="([^"]*)"', dom)
    assert m, 'the page did not finish loading (no render check in the DOM)'
    return json.loads(html.unescape(m.group(1)))

def test_report_renders_in_chromium(quick_run, tmp_path):
    _, out = quick_run
    check = render_check(tmp_path, out/'report.html')
    assert check['errors'] == [], check['errors']
    assert check['plots'] >= 3 and check['svgs'] >= check['plots'], check  # plotly drew an SVG for each plot
    # the quick run's sets, KRR-ST's among them, every one loaded
    assert check['images'] == 8 and check['images_loaded'] == 8, check
    SHOT.parent.mkdir(parents=True, exist_ok=True)
    chrome(tmp_path, f'--screenshot={SHOT}', '--window-size=1280,3200', (out/'report.html').as_uri())
    assert SHOT.exists() and SHOT.stat().st_size > 20_000 and SHOT.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'

def test_the_check_sees_javascript_errors_and_broken_images(tmp_path):
    "A page with a script error and a broken image fails the same check (so the check above can fail)."
    from kdd_explore.pipeline import write_report
    page = write_report(tmp_path/'bad.html', 'bad',
                        [('x', '<img src="data:image/png;base64,AAAA"><script>undefinedFunction()</script>')])
    check = render_check(tmp_path, page)
    assert any('undefinedFunction' in e for e in check['errors']) and check['images_loaded'] == 0
