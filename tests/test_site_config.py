"""The site's configuration: a download button on every page; launch links (Colab, Binder) only when a repository
URL is set in _config.yml (empty by default), so that no page links to an outside service we do not run."""

import importlib.util

import yaml

from .conftest import ROOT


def _theme_options() -> dict:
    cfg = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    return cfg["sphinx"]["config"]["html_theme_options"]


def _ext():
    spec = importlib.util.spec_from_file_location("tdd_book", ROOT / "book" / "_ext" / "tdd_book.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_download_button_on_every_page():
    assert _theme_options()["use_download_button"] is True


def test_launch_links_only_with_a_repository_url():
    opts = _theme_options()
    assert opts.get("repository_url", "") == "", "the default build has no repository URL (no launch link)"
    assert "colab_url" in opts["launch_buttons"]
    launch_options = _ext().launch_options
    kept = launch_options(opts)
    assert "launch_buttons" not in kept and "repository_url" not in kept
    assert kept["use_download_button"] is True
    with_url = launch_options({**opts, "repository_url": "https://github.com/someone/tdd_lite"})
    assert with_url["launch_buttons"]["binderhub_url"] and with_url["repository_url"].endswith("tdd_lite")
