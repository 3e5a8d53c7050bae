"""Local Sphinx extension of the book (jupyter-book ``sphinx.local_extensions``).

* Each script is included once per page: sphinx-thebe registers its configuration script on every
  ``env-before-read-docs`` event, and a page that declared ``const THEBE_JS_URL`` twice logged
  "Identifier 'THEBE_JS_URL' has already been declared".
* The ipywidgets HTML manager (``_static/widgets/embed-amd.js``) resolves its icon fonts relative to the module id
  require.js gave it, i.e. relative to the page (``notebooks/@jupyter-widgets/html-manager/dist/``: a 404, and its
  ``__jupyter_widgets_assets_path__`` global is overridden by that module path). After the build, the font files
  are copied there next to every page that holds widget state; the favicon is also copied to ``/favicon.ico``.
* Launch links (Colab, Binder) only where a repository is set: ``html_theme_options.repository_url`` in
  ``_config.yml``. sphinx-book-theme builds the links from that URL (and fails on an empty one), so without it the
  ``launch_buttons`` entry is dropped and the pages show only the download button.
* The edition (``TDD_EDITION``: ``student`` or ``instructor``) is shown in the page footer and registered as a Sphinx
  tag, so ``{only} instructor`` blocks appear only in the instructor edition.
"""

from __future__ import annotations

import os

EDITIONS = ("student", "instructor")


def edition() -> str:
    value = os.environ.get("TDD_EDITION", "student").strip().lower() or "student"
    if value not in EDITIONS:
        raise ValueError(f"TDD_EDITION={value!r}: expected one of {EDITIONS}")
    return value


def _dedupe_scripts(app, pagename, templatename, context, doctree) -> None:
    scripts = context.get("script_files")
    if scripts:
        seen, kept = set(), []
        for js in scripts:
            # the same file or inline body: sphinx-thebe's body is registered twice, once with filename None and
            # once with '', so Sphinx's own equality check keeps both
            key = (str(getattr(js, "filename", js) or ""),
                   tuple(sorted((k, str(v)) for k, v in getattr(js, "attributes", {}).items())))
            if key not in seen:
                seen.add(key)
                kept.append(js)
        scripts[:] = kept
    context["tdd_edition"] = edition()


FONT_SUFFIXES = (".woff2", ".woff", ".ttf", ".eot")


def _widget_fonts(app, exception) -> None:
    """Copy the widget manager's fonts to ``<page dir>/@jupyter-widgets/html-manager/dist/`` for widget pages."""
    import shutil
    from pathlib import Path

    if exception is not None or app.builder.format != "html":
        return
    out = Path(app.outdir)
    fonts = [p for p in (out / "_static" / "widgets").glob("*") if p.suffix in FONT_SUFFIXES]
    dirs = {page.parent for page in out.rglob("*.html") if "_static" not in page.parts
            and "application/vnd.jupyter.widget-state+json" in page.read_text(encoding="utf-8", errors="replace")}
    # the folder depends on which module's chunk loads the font CSS: both seen in Chromium
    for d in dirs:
        for dest in (d / "@jupyter-widgets", d / "@jupyter-widgets" / "html-manager" / "dist"):
            dest.mkdir(parents=True, exist_ok=True)
            for f in fonts:
                shutil.copy2(f, dest / f.name)
    # a page without an icon link (index.html, the redirect) makes the browser ask for /favicon.ico
    icon = out / "_static" / "favicon.png"
    if icon.exists():
        shutil.copy2(icon, out / "favicon.ico")


def _add_tag(app, config) -> None:
    app.tags.add(edition())


def launch_options(theme_options: dict) -> dict:
    """``theme_options`` without ``launch_buttons`` (nor an empty ``repository_url``) when no repository URL is
    set; unchanged otherwise."""
    opts = dict(theme_options)
    if not str(opts.get("repository_url") or "").strip():
        opts.pop("launch_buttons", None)
        opts.pop("repository_url", None)
    return opts


def _launch_buttons(app, config) -> None:
    config.html_theme_options = launch_options(config.html_theme_options or {})


def setup(app):
    app.connect("config-inited", _add_tag)
    app.connect("config-inited", _launch_buttons)
    app.connect("html-page-context", _dedupe_scripts, priority=900)
    app.connect("build-finished", _widget_fonts)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
