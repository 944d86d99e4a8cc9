"""Sphinx configuration of the course book (`make book`; built by `python -m depthg_lib.book`).

The source folder is assembled by the builder from one run (`runs/<profile>/`): the executed
chapters, the landing page made from `book/index.md` and the notes in `docs/`. Nothing is
executed here and nothing is fetched: MathJax comes from the `sphinx-mathjax-offline` package,
the theme's fonts and scripts from its own wheel, widget scripts are switched off.
"""

project = "DepthG, step by step"
author = "the DepthG course"
copyright = "the DepthG course authors"

extensions = ["myst_nb", "sphinx-mathjax-offline"]  # the second one is its import name

# Notebooks were executed by the course runner; the book only renders what they hold.
nb_execution_mode = "off"
nb_ipywidgets_js = {}  # default loads require.js and the widget manager from a CDN
nb_merge_streams = True  # a chapter's prints read as one block, not one box per flush
# `display(Markdown(...))` output is parsed like the notebooks' own Markdown (tables, math);
# the default, CommonMark, leaves every table a chapter prints as `| … |` text.
nb_render_markdown_format = "myst"

myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
myst_heading_anchors = 3  # `[text](#a-heading)` links inside a page resolve

exclude_patterns = ["_build", "**.ipynb_checkpoints"]
suppress_warnings = []  # keep every warning: the builder runs Sphinx with -W

html_theme = "sphinx_book_theme"
html_static_path = ["_static"]  # book/_static: relative to this file
html_css_files = ["course.css"]
html_title = "DepthG, step by step"
html_last_updated_fmt = None
html_copy_source = False  # the executed notebooks are big; the pages carry their outputs
html_show_sourcelink = False
html_theme_options = {
    "show_navbar_depth": 1,
    "show_toc_level": 2,
    "home_page_in_toc": True,
    "use_download_button": False,
    "use_fullscreen_button": False,
    "use_repository_button": False,
    "navigation_with_keys": False,
    "show_prev_next": True,
}
# The theme reads its colour mode from here; left empty it logs an error in the console.
html_context = {"default_mode": "light"}
