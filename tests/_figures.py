"""Figure checks shared by the tests: how large a figure's text is when the book shows it."""

from __future__ import annotations

COLUMN_PX = 750  # the book's content column in a 1280 px window (what test_browser measures code blocks against)


def smallest_text_px(fig, column_px: int = COLUMN_PX) -> tuple[float, str]:
    """The smallest visible text of ``fig`` in screen pixels when the book shows it: a PNG of ``width x dpi`` pixels
    is drawn at that size, or scaled down to the column when wider, so a ``s`` pt font appears at
    ``s / 72 * min(dpi, column / width)`` px."""
    import matplotlib

    fig.canvas.draw()
    scale = min(fig.dpi, column_px / fig.get_figwidth()) / 72
    texts = [(t.get_fontsize(), t.get_text()) for t in fig.findobj(matplotlib.text.Text)
             if t.get_visible() and t.get_text().strip() and t.get_figure() is fig]
    size, text = min(texts)
    return size * scale, text
