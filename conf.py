"""Sphinx configuration of the documentation site: the pages are docs/*.md (MyST Markdown).

Built strictly, warnings as errors, by `.ci/run` and tests/test_doc_blocks.py:
    sphinx-build -W --keep-going -q -c . docs _site
"""

project = "wbsync"
author = "wbsync contributors"
copyright = "wbsync contributors"  # noqa: A001 (Sphinx's own name for it)

extensions = ["myst_parser"]
source_suffix = {".md": "markdown"}
root_doc = "index"
# GitHub-style anchors for headings, so `page.md#a-section` links work on GitHub and on the site alike.
myst_heading_anchors = 4
html_theme = "furo"
html_title = "wbsync"
