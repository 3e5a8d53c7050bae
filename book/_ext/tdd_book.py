"""Local Sphinx extension of the book (jupyter-book ``sphinx.local_extensions``).

* Each script is included once per page: sphinx-thebe registers its configuration script on every
  ``env-before-read-docs`` event, and a page that declared ``const THEBE_JS_URL`` twice logged
  "Identifier 'THEBE_JS_URL' has already been declared".
* The ipywidgets HTML manager (``_static/widgets/embed-amd.js``) resolves its icon fonts relative to the module id
  that require.js gave it (``notebooks/@jupyter-widgets/html-manager/dist/``, a 404); the global
  ``__jupyter_widgets_assets_path__`` it reads first points it at ``_static/widgets/`` instead.
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
            key = (str(js), tuple(sorted((k, str(v)) for k, v in getattr(js, "attributes", {}).items())))
            if key not in seen:
                seen.add(key)
                kept.append(js)
        scripts[:] = kept
    pathto = context.get("pathto")
    if pathto is not None:
        rel = pathto("_static/widgets/", 1)
        app.add_js_file(None, body=f'window.__jupyter_widgets_assets_path__ = new URL("{rel}", document.baseURI).href;',
                        priority=100)
    context["tdd_edition"] = edition()


def _add_tag(app, config) -> None:
    app.tags.add(edition())


def setup(app):
    app.connect("config-inited", _add_tag)
    app.connect("html-page-context", _dedupe_scripts, priority=900)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
