// The lessons' website: build_site (kdd_explore.site, nbs/11b_site.ipynb) copies this file to the site's assets/mathjax-config.js.
window.MathJax = {  // what pymdownx.arithmatex marks (class "arithmatex"), typeset as SVG: no font files to load
  tex: {inlineMath: [['\\(', '\\)']], displayMath: [['\\[', '\\]']], processEscapes: true, processEnvironments: true},
  options: {ignoreHtmlClass: '.*|', processHtmlClass: 'arithmatex'},
  svg: {fontCache: 'global'}
};
