"The offline docs site: `tools/docs.py site` builds it, headless Chromium reads it over loopback."
import functools, http.server, subprocess, sys, threading
from urllib.parse import urljoin, urldefrag, urlparse
import pytest
from browser import chromium


@pytest.fixture(scope='module')
def site(root, tmp_path_factory, port):
    "Build the site (executing the notebooks) and serve it on 127.0.0.1."
    out = tmp_path_factory.mktemp('site')
    subprocess.run([sys.executable, 'tools/docs.py', 'site', '--out', str(out)], cwd=root, check=True)
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *a): pass
    handler = functools.partial(Quiet, directory=str(out))
    srv = http.server.ThreadingHTTPServer(('127.0.0.1', port), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield out, f'http://127.0.0.1:{port}/'
    srv.shutdown()


@pytest.fixture(scope='module')
def port():
    from conftest import free_port
    return free_port()


def test_pages_have_headings_and_sidebar(site, artifacts):
    out, base = site
    with chromium() as d:
        d.get(base + 'index.html')
        assert d.find_element('css selector', 'article h1').text.strip() == 'flex-rl'
        assert 'Install' in [h.text.strip() for h in d.find_elements('css selector', 'article h2')]
        nav = [a.text.strip() for a in d.find_elements('css selector', 'nav.md-nav--primary a.md-nav__link') if a.text.strip()]
        assert nav.index('core') < nav.index('cli'), nav  # sidebar in notebook order
        d.save_screenshot(str(artifacts/'docs-index.png'))
        d.get(base + 'core.html')
        assert d.find_element('css selector', 'article h1').text.strip() == 'core'
        api = [h.text.strip() for h in d.find_elements('css selector', 'article h3')]
        assert {'get_paths', 'load_params', 'seed_everything'} <= set(api), api  # show_doc entries rendered
        body = d.find_element('css selector', 'article').text
        assert '#|' not in body and 'default_exp' not in body  # directives stripped, hidden cells hidden
        assert 'did you mean' in body  # outputs of executed cells are shown
        d.save_screenshot(str(artifacts/'docs-core.png'))


def test_no_broken_internal_links(site):
    out, base = site
    pages = sorted(p.relative_to(out).as_posix() for p in out.rglob('*.html') if p.name != '404.html')
    assert len(pages) >= 3, pages
    broken, anchors = [], {}
    with chromium() as d:
        def ids(url):
            if url not in anchors:
                d.get(url)
                anchors[url] = set(d.execute_script("return [...document.querySelectorAll('[id]')].map(e => e.id)"))
            return anchors[url]
        for page in pages:
            d.get(base + page)
            hrefs = d.execute_script("return [...document.querySelectorAll('a[href]')].map(a => a.href)")
            for href in hrefs:
                if urlparse(href).netloc != urlparse(base).netloc: continue  # external (source links, GitHub)
                url, frag = urldefrag(href)
                target = out/urlparse(url).path.lstrip('/')
                if target.is_dir(): target = target/'index.html'
                if not target.exists(): broken.append((page, href))
                elif frag and target.suffix == '.html' and frag not in ids(url): broken.append((page, href))
    assert not broken, broken
