"""The lessons' website in a real headless Chromium: a lesson's plotly figure renders with no JavaScript error, a formula is
typeset (MathJax, from the site's own copy), a study page draws its table and figure, the API page lists a function's
parameters, and the search finds `distill`, served and opened from disk. Screenshots under .ci/out/.

It checks the full site that tests/run.sh builds when KDD_SITE names it (run.sh sets it); otherwise it builds a small site
(00_core, a notebook made here with a plotly figure and a widget, the study pages) in about a minute."""
import base64, functools, json, os, subprocess, threading, time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
import pytest
from conftest import CHROME, needs_chromium

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT/'.ci'/'out'
pytestmark = needs_chromium('the site')  # skipped without a browser, failed in CI

class Browser:
    "Headless Chromium driven over the DevTools protocol on a pipe (fds 3 and 4): no package beyond the browser."
    def __init__(self, profile):
        r1, w1 = os.pipe(); r2, w2 = os.pipe()
        def fds(): os.dup2(r1, 100); os.dup2(w2, 101); os.dup2(100, 3); os.dup2(101, 4)
        self.proc = subprocess.Popen([CHROME, '--headless', '--no-sandbox', '--disable-gpu',
                                      '--no-first-run', '--disable-sync', '--disable-background-networking',
                                      '--disable-component-update', '--remote-debugging-pipe',
                                      f'--user-data-dir={profile}', '--window-size=1280,1600', 'about:blank'],
                                     pass_fds=(3, 4), preexec_fn=fds, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(r1); os.close(w2)
        self.w, self.r, self.buf, self.n, self.events = os.fdopen(w1, 'wb', 0), os.fdopen(r2, 'rb', 0), b'', 0, []
        target = self.call('Target.createTarget', url='about:blank')['targetId']
        self.session = self.call('Target.attachToTarget', targetId=target, flatten=True)['sessionId']
        for domain in ('Runtime', 'Page', 'Log'): self.call(f'{domain}.enable', page=True)

    def _message(self):
        while b'\0' not in self.buf:
            chunk = self.r.read(1 << 16)
            if not chunk: raise RuntimeError('Chromium closed its DevTools pipe')
            self.buf += chunk
        msg, self.buf = self.buf.split(b'\0', 1)
        return json.loads(msg)

    def call(self, method, page=False, **params):
        self.n += 1
        self.w.write(json.dumps(dict(id=self.n, method=method, params=params,
                                     **({'sessionId': self.session} if page else {}))).encode() + b'\0')
        while (msg := self._message()).get('id') != self.n: self.events.append(msg)
        if 'error' in msg: raise RuntimeError(f"{method}: {msg['error']}")
        return msg.get('result', {})

    def js(self, expr):
        return self.call('Runtime.evaluate', page=True, expression=expr,
                         returnByValue=True).get('result', {}).get('value')

    def wait(self, expr, timeout=20):
        t = time.time()
        while time.time() - t < timeout:
            if (v := self.js(expr)): return v
            time.sleep(0.2)
        return self.js(expr)

    def goto(self, url):
        self.events.clear()
        self.call('Page.navigate', page=True, url=url)
        assert self.wait('document.readyState === "complete"'), f'{url} did not load'

    def errors(self):
        "JavaScript exceptions and console errors (a failed request too: the site must ask no other server) since the last goto."
        out = [e['params']['exceptionDetails'].get('exception', {}).get('description')
               or e['params']['exceptionDetails'].get('text')
               for e in self.events if e.get('method') == 'Runtime.exceptionThrown']
        return out + [f"{e['params']['entry']['text']} {e['params']['entry'].get('url', '')}" for e in self.events
                      if e.get('method') == 'Log.entryAdded' and e['params']['entry']['level'] == 'error']

    def screenshot(self, path):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(self.call('Page.captureScreenshot', page=True, format='png')['data']))
        assert path.stat().st_size > 20_000 and path.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'

    def close(self):
        try: self.call('Browser.close')
        except Exception: pass
        try: self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired: self.proc.kill()

@pytest.fixture(scope='module')
def site(tmp_path_factory):
    "(site folder, a lesson page with a plotly figure): the full site of run.sh (KDD_SITE), else a small one built here."
    full = os.environ.get('KDD_SITE')
    if full and (Path(full)/'api.html').exists(): return Path(full), '07_evaluate.html', '03_ssl.html'
    from kdd_explore.docs import make_notebook
    from kdd_explore.site import build_site
    tmp = tmp_path_factory.mktemp('site')
    demo = make_notebook(tmp/'nbs'/'figure_demo.ipynb', [
        'md:# A figure and a widget\n\n> What a lesson\'s outputs look like on the page.\n\n'
        'A formula, as the lessons write one:\n\n$$\n\\mathcal{L}_{BT} = \\sum_i (1 - \\mathcal{C}_{ii})^2 + \\lambda '
        '\\sum_{i \\neq j} \\mathcal{C}_{ij}^2.\n$$',
        'import plotly.graph_objects as go, ipywidgets as w\nprint("a printed line")\n'
        'go.Figure(go.Scatter(x=[1, 2, 3], y=[1, 4, 9], name="squares"))',
        'class View:  # a widget view with a figure, like kdd_explore.widgets\n'
        '    def __init__(self): self.fig, self.widget = go.Figure(go.Bar(x=["a", "b"], y=[3, 1])), w.IntSlider()\n'
        '    def _ipython_display_(self): display(self.widget)\nView()'])
    import sys
    if str(ROOT) not in sys.path: sys.path.insert(0, str(ROOT))
    from benchmarks.pages.__main__ import write_site_pages  # the study pages, as tests/run.sh writes them
    studies = write_site_pages(tmp/'studies')
    cwd = os.getcwd(); os.chdir(ROOT)  # nbdev's settings are found from the working folder
    try:
        out = build_site(tmp/'site', [ROOT/'nbs'/'00_core.ipynb', demo], n_workers=2,
                         build_dir=tmp/'build', progress=False, pages=[studies])
    finally: os.chdir(cwd)
    return out, 'figure_demo.html', 'figure_demo.html'

@pytest.fixture(scope='module')
def browser(site, tmp_path_factory):
    "A Chromium over the site, served on 127.0.0.1 (the search's worker needs a server, as on GitHub Pages)."
    srv = ThreadingHTTPServer(('127.0.0.1', 0), functools.partial(QuietHandler, directory=str(site[0])))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    b = Browser(tmp_path_factory.mktemp('profile'))
    b.base = f'http://127.0.0.1:{srv.server_address[1]}/'
    yield b
    b.close(); srv.shutdown()

class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args): pass

def test_a_lessons_plotly_figure_renders_with_no_javascript_error(site, browser):
    browser.goto(browser.base + site[1])
    plots = browser.js("document.querySelectorAll('.nb-plotly').length")
    assert plots >= 1, f'no plotly figure on {site[1]}'
    svgs = "document.querySelectorAll('.nb-plotly .main-svg').length"
    # each figure drew its SVG
    assert browser.wait(f"{svgs} >= {plots}"), f'plotly drew {browser.js(svgs)} SVGs for {plots} figures'
    # plotly.js once, from the site
    assert browser.js("[...document.scripts].filter(s => s.src.endsWith('plotly.min.js')).length") == 1
    assert browser.js("document.querySelector('.nb-run a').href").startswith(
        'https://colab.research.google.com/github/')
    assert browser.errors() == [], browser.errors()
    browser.screenshot(OUT/'site-lesson.png')

def test_the_api_page_lists_a_functions_parameters(browser):
    browser.goto(browser.base + 'api.html#execute_notebook')
    rows = browser.js("""(() => { let h = document.getElementById('execute_notebook'), el = h && h.nextElementSibling;
        for (; el && !/^H[1-3]$/.test(el.tagName); el = el.nextElementSibling) {  // the entry's table (Material wraps it in divs)
            let t = el.tagName === 'TABLE' ? el : el.querySelector('table');
            if (t) return [...t.querySelectorAll('tbody tr')].map(r => r.innerText); }
        return null; })()""")
    assert rows and rows[0].startswith('src') and 'the notebook to execute' in rows[0], rows
    assert [r.split('\t')[0] for r in rows] == ['src', 'dest', 'skip', 'basepath'], rows
    assert rows[0].split('\t')[1] == 'str | Path', rows  # the type reads as written (no escaping backslash)
    assert browser.errors() == [], browser.errors()
    browser.screenshot(OUT/'site-api.png')

def test_the_search_finds_distill(browser):
    browser.goto(browser.base + 'index.html?q=distill')  # Material's search reads the query from ?q=
    hits = browser.wait("[...document.querySelectorAll('.md-search-result__item a')].map(a => a.getAttribute('href'))")
    assert hits and any(h.split('?')[0].endswith('api.html') and h.endswith('#distill') for h in hits), hits
    assert browser.errors() == [], browser.errors()
    browser.screenshot(OUT/'site-search.png')

def test_a_formula_is_typeset_offline(site, browser):
    "The lesson's $$...$$ is typeset by MathJax into SVG (no font files, no CDN): one formula at least, with its symbols drawn."
    browser.goto(browser.base + site[2])
    n = browser.js("document.querySelectorAll('.arithmatex').length")
    assert n >= 1, f'no formula on {site[2]}'
    drawn = "document.querySelectorAll('.arithmatex mjx-container svg').length"
    assert browser.wait(f"{drawn} >= {n}"), f'MathJax drew {browser.js(drawn)} of {n} formulas'
    glyphs = browser.js("[...document.querySelectorAll('.arithmatex mjx-container svg')].map(s => "
                        "s.querySelectorAll('use, path').length)")
    # every formula drew its glyphs (none an empty box), one a whole formula
    assert min(glyphs) >= 1 and max(glyphs) > 5, glyphs
    assert browser.js("[...document.scripts].some(s => s.src.endsWith('assets/mathjax/tex-svg-full.js'))")
    # no TeX left raw
    assert '$' not in browser.js("document.querySelector('article').innerText.split('Run this "
                                 "notebook')[1].split('import')[0]")
    assert browser.errors() == [], browser.errors()
    browser.screenshot(OUT/'site-formula.png')

def test_a_study_page_shows_its_source_table_and_figure(site, browser):
    "The protocol matrix's page, generated from benchmarks/results/protocol_study.json: its source, its 16-row table, its figure drawn."
    browser.goto(browser.base + 'studies/protocol.html')
    assert 'benchmarks/results/protocol_study.json' in browser.js("document.querySelector('.study-source').innerText")
    rows = browser.js("document.querySelector('article table').querySelectorAll('tbody tr').length")
    assert rows == 16, rows  # 2 students x 2 probes x 2 label sources x 2 fractions
    assert browser.wait("document.querySelectorAll('.nb-plotly "
                        ".main-svg').length >= 1"), 'the study figure was not drawn'
    assert browser.errors() == [], browser.errors()
    browser.screenshot(OUT/'site-study.png')

def test_the_search_works_from_disk(site, tmp_path_factory):
    "Opened straight from disk (file://), where a browser refuses Material's search worker, the search still finds `distill`."
    b = Browser(tmp_path_factory.mktemp('profile_file'))
    try:
        b.goto(f'file://{site[0]}/index.html?q=distill')
        hits = b.wait("[...document.querySelectorAll('.md-search-result__item a')].map(a => a.getAttribute('href'))")
        assert hits and any(h.split('?')[0].endswith('api.html#distill') for h in hits), hits
        assert b.errors() == [], b.errors()
    finally: b.close()
