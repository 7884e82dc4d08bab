"""Accessibility basics checked inside a browser page: every form field has a label, and text has enough
contrast with its background (WCAG 2 AA)."""
from __future__ import annotations

from typing import Any

UNLABELLED = """() => [...document.querySelectorAll('input, select, textarea')]
    .filter(e => e.type !== 'hidden' && e.labels.length === 0 && !e.getAttribute('aria-label'))
    .map(e => e.outerHTML)"""

LOW_CONTRAST = """(minimum) => {
  const channel = c => { c /= 255; return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; };
  const rgba = text => text.match(/[\\d.]+/g).map(Number);
  const luminance = ([r, g, b]) => 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b);
  const background = e => {
    for (; e; e = e.parentElement) {
      const c = rgba(getComputedStyle(e).backgroundColor);
      if (c.length < 4 || c[3] > 0.5) return c;
    }
    return [255, 255, 255];
  };
  const low = [];
  for (const e of document.querySelectorAll('body *')) {
    const own = [...e.childNodes].some(n => n.nodeType === 3 && n.textContent.trim());
    const style = getComputedStyle(e);
    const shown = style.visibility !== 'hidden' && e.getClientRects().length > 0;
    if (!own || !shown || e.closest('svg:not(.events-chart)')) continue;
    const colour = e instanceof SVGElement ? style.fill : style.color;
    const a = luminance(rgba(colour)), b = luminance(background(e));
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    if (ratio < minimum) low.push(`${e.tagName} "${e.textContent.trim().slice(0, 30)}" ${ratio.toFixed(2)}`);
  }
  return low;
}"""


def unlabelled_fields(tab: Any) -> list[str]:
    """The form fields of the page no label names (hidden fields aside)."""
    found: list[str] = tab.evaluate(UNLABELLED)
    return found


def low_contrast_text(tab: Any, minimum: float = 4.5) -> list[str]:
    """The page's visible text whose contrast with its background is under ``minimum`` (WCAG AA: 4.5)."""
    found: list[str] = tab.evaluate(LOW_CONTRAST, minimum)
    return found
