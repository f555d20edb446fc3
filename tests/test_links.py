"Links that work from a clone: every relative link of the README, the course's README and the notebooks' Markdown names a file of the repository, and none points at the project's own host, which is not published yet."
import configparser, json, re
from pathlib import Path
from urllib.parse import unquote, urlparse
import pytest
from conftest import ROOT

LINK = re.compile(r'!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+(?:"[^"]*"|\'[^\']*\'))?\s*\)'  # [text](target "title")
                  r'|<(https?://[^>\s]+)>|href="([^"]+)"')  # <https://...>, href="..."

def _markdown(path:Path) -> str:
    "The Markdown of a file: the file itself, or a notebook's Markdown cells."
    if path.suffix != '.ipynb': return path.read_text()
    return '\n\n'.join(''.join(c['source']) for c in json.loads(path.read_text())['cells'] if c['cell_type'] == 'markdown')

def _strip_code(md:str) -> str:
    "Markdown without fenced blocks and inline code, where a link-like text is not a link."
    return re.sub(r'`[^`\n]*`', '', re.sub(r'```.*?```', '', md, flags=re.S))

def links(path:Path) -> list:
    "Every link target in `path`'s Markdown (outside code)."
    return [next(g for g in m.groups() if g) for m in LINK.finditer(_strip_code(_markdown(path)))]

DOCS = [ROOT/'README.md', ROOT/'nbs'/'course'/'README.md', *sorted((ROOT/'nbs').rglob('*.ipynb'))]
DOCS = [p for p in DOCS if '.ipynb_checkpoints' not in p.parts and '_proc' not in p.parts]

def _own_hosts() -> set:
    "The project's public addresses, from settings.ini alone (doc_host, git_url): unpublished while the repository is private."
    cfg = configparser.ConfigParser(); cfg.read(ROOT/'settings.ini')
    s = cfg['DEFAULT']
    hosts = {urlparse(s['doc_host']).netloc}
    git = urlparse(s['git_url'])
    return hosts | {git.netloc + git.path.rstrip('/'), f"colab.research.google.com/github{git.path.rstrip('/')}"}

def test_the_link_finder_reads_markdown_links_and_skips_code():
    md = "[a](nbs/00_core.ipynb) `[b](nope.md)` <https://example.org/x> ![i](img.png 'x')\n```\n[c](no.md)\n```"
    found = [next(g for g in m.groups() if g) for m in LINK.finditer(_strip_code(md))]
    assert found == ['nbs/00_core.ipynb', 'https://example.org/x', 'img.png']

@pytest.mark.parametrize('doc', DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_names_a_file_of_the_repository(doc):
    bad = []
    for t in links(doc):
        u = urlparse(t)
        if u.scheme or t.startswith('#') or t.startswith('mailto:'): continue
        target = (doc.parent/unquote(u.path)).resolve()
        if not target.exists(): bad.append(t)
    assert not bad, f"{doc.relative_to(ROOT)}: links to files that are not in the repository: {bad}"

@pytest.mark.parametrize('doc', DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_no_link_points_at_the_projects_unpublished_host(doc):
    hosts = _own_hosts()
    bad = [t for t in links(doc) if urlparse(t).scheme and any(h in t for h in hosts)]
    assert not bad, f"{doc.relative_to(ROOT)}: links to the project's unpublished address ({sorted(hosts)}): {bad}"

def test_the_public_address_lives_only_in_settings_ini():
    hosts = _own_hosts()
    texts = {p: p.read_text() for p in [ROOT/'README.md', ROOT/'nbs'/'course'/'README.md',
                                        *(p for p in (ROOT/'kdd_explore').glob('*.py') if p.name != '_modidx.py')]}  # nbdev's index copies settings.ini
    bad = [p.relative_to(ROOT).as_posix() for p, t in texts.items() if any(h in t for h in hosts)]
    assert not bad, f"the project's address is written outside settings.ini in {bad}"
