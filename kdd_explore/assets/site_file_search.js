// The lessons' website: build_site (kdd_explore.site, nbs/11b_site.ipynb) copies this file to the site's assets/file-search.js.
// Search for a site opened from disk (file://), where a browser refuses the worker that Material's search runs in.
// Served (http, https), this does nothing and Material's own search answers.
(function () {
  if (location.protocol !== 'file:') return;
  var me = document.currentScript.src, root = me.slice(0, me.length - 'assets/file-search.js'.length);
  var docs = null, waiting = [];
  function index(done) {
    if (docs) return done();
    waiting.push(done);
    if (waiting.length > 1) return;
    var s = document.createElement('script');
    s.src = root + 'search/search_index.js';  // the same index as search_index.json, as a script: a page from disk may load it
    s.onload = function () { docs = window.__kdd_search_index.docs; waiting.forEach(function (f) { f(); }); };
    document.head.appendChild(s);
  }
  function strip(h) { var d = document.createElement('div'); d.innerHTML = h; return d.textContent || ''; }
  function search(q) {
    var terms = q.toLowerCase().split(/\s+/).filter(Boolean), hits = [];
    if (!terms.length) return hits;
    docs.forEach(function (d) {
      var title = strip(d.title).toLowerCase(), text = strip(d.text).toLowerCase(), score = 0;
      for (var i = 0; i < terms.length; i++) {
        var t = terms[i], inTitle = title.indexOf(t) >= 0, inText = text.indexOf(t) >= 0;
        if (!inTitle && !inText) return;
        score += (title === t ? 100 : 0) + (inTitle ? 10 : 0) + (inText ? 1 : 0);
      }
      hits.push({doc: d, score: score, text: text});
    });
    return hits.sort(function (a, b) { return b.score - a.score; }).slice(0, 30);
  }
  function show(q) {
    var list = document.querySelector('.md-search-result__list'), meta = document.querySelector('.md-search-result__meta');
    if (!list) return;
    var hits = search(q);
    list.innerHTML = '';
    hits.forEach(function (h) {
      var li = document.createElement('li'), a = document.createElement('a'), art = document.createElement('article');
      var t = document.createElement('h1'), p = document.createElement('p'), at = h.text.indexOf(q.toLowerCase().split(/\s+/)[0]);
      li.className = 'md-search-result__item'; a.className = 'md-search-result__link'; art.className = 'md-search-result__article md-typeset';
      a.href = root + h.doc.location; t.textContent = strip(h.doc.title);
      p.textContent = strip(h.doc.text).slice(Math.max(0, at - 60), Math.max(0, at - 60) + 200);
      art.appendChild(t); art.appendChild(p); a.appendChild(art); li.appendChild(a); list.appendChild(li);
    });
    if (meta) meta.textContent = hits.length ? hits.length + ' matching document' + (hits.length > 1 ? 's' : '') : 'No matching documents';
  }
  function run(q) { index(function () { show(q); }); }
  document.addEventListener('DOMContentLoaded', function () {
    var input = document.querySelector('.md-search__input'), toggle = document.getElementById('__search');
    if (!input) return;
    input.addEventListener('input', function () { run(input.value); });
    input.addEventListener('focus', function () { index(function () {}); });
    var q = new URLSearchParams(location.search).get('q');
    if (q) { input.value = q; if (toggle) toggle.checked = true; run(q); }
  });
})();
