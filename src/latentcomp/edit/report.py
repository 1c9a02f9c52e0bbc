"""A small HTML page builder for the demo: sections of image rows and tables, relative image links.

Images are written as PNG files into `<out>/img/` (atomically, through latentcomp.io) and shown
upscaled with `image-rendering: pixelated`; the page itself has no external dependency.
"""

from __future__ import annotations

import html
import math
from pathlib import Path

import torch

from ..io import ensure_dir, save_image, write_text

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;max-width:1400px}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ddd}
p.note{color:#555;max-width:60em}
table.grid{border-collapse:collapse}
table.grid td,table.grid th{padding:3px;text-align:center;vertical-align:top}
table.grid th{font-weight:600;font-size:.85em;color:#444}
table.grid img{width:112px;height:112px;image-rendering:pixelated;display:block;border:1px solid #ccc}
td.cap{font-size:.75em;color:#555}
table.fig{border-collapse:collapse;margin:8px 0}
table.fig td,table.fig th{border:1px solid #ccc;padding:4px 8px}
table.fig th{background:#f4f4f4}td.num{text-align:right;font-variant-numeric:tabular-nums}
"""


class Page:
    def __init__(self, out: str | Path, title: str):
        self.out = ensure_dir(out)
        self.img_dir = ensure_dir(self.out / "img")
        self.title = title
        self.body: list[str] = []
        self._n = 0

    def image(self, img: torch.Tensor, name: str | None = None) -> str:
        """Save one image (C, H, W) in [-1, 1]; returns its relative link."""
        self._n += 1
        fname = f"{name or 'img'}_{self._n:04d}.png"
        save_image(img.detach().cpu(), self.img_dir / fname)
        return f"img/{fname}"

    def h2(self, text: str) -> None:
        self.body.append(f"<h2>{html.escape(text)}</h2>")

    def note(self, text: str) -> None:
        self.body.append(f'<p class="note">{html.escape(text)}</p>')

    def grid(self, columns: list[str], rows: list[list[torch.Tensor | str | None]], captions=None) -> None:
        """A table of images: each row a list of image tensors (C,H,W), text or None; captions per row."""
        out = ['<table class="grid"><tr>' + "".join(f"<th>{html.escape(c)}</th>" for c in columns) + "</tr>"]
        for r, row in enumerate(rows):
            cells = []
            for cell in row:
                if cell is None:
                    cells.append("<td></td>")
                elif isinstance(cell, str):
                    cells.append(f'<td class="cap">{html.escape(cell)}</td>')
                else:
                    cells.append(f'<td><img src="{self.image(cell)}" alt=""></td>')
            out.append("<tr>" + "".join(cells) + "</tr>")
            if captions and captions[r]:
                out.append(f'<tr><td class="cap" colspan="{len(row)}">{html.escape(captions[r])}</td></tr>')
        out.append("</table>")
        self.body.append("\n".join(out))

    def table(self, header: list[str], rows: list[list]) -> None:
        def cell(v):
            if isinstance(v, float):
                txt = "n/a" if math.isnan(v) else (f"{v:.3f}" if abs(v) < 100 else f"{v:.1f}")
                return f'<td class="num">{txt}</td>'
            return f"<td>{html.escape(str(v))}</td>"

        out = ['<table class="fig"><tr>' + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>"]
        out += ["<tr>" + "".join(cell(v) for v in row) + "</tr>" for row in rows]
        out.append("</table>")
        self.body.append("\n".join(out))

    def write(self, name: str = "index.html") -> Path:
        doc = (
            "<!doctype html><html><head><meta charset='utf-8'>"
            f"<title>{html.escape(self.title)}</title><style>{CSS}</style></head><body>"
            f"<h1>{html.escape(self.title)}</h1>\n" + "\n".join(self.body) + "\n</body></html>\n"
        )
        return write_text(self.out / name, doc)


def mask_image(m: torch.Tensor) -> torch.Tensor:
    """(1, H, W) mask in {0, 1} -> an RGB image (white = known)."""
    return (m.float() * 2 - 1).expand(3, -1, -1)


def masked_view(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Image with hidden pixels shown as a light checkerboard, for display."""
    h, w = x.shape[-2:]
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    checker = (((yy // 4 + xx // 4) % 2).float() * 0.25 + 0.5).expand(x.shape[0], -1, -1)
    return x * m + checker * (1 - m)
