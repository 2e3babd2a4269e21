"""A pixel canvas drawn with Unicode braille: each character cell holds 2x4 dots (pure).

Dot numbering in a cell (Unicode braille patterns start at U+2800):

    (0,0) 0x01   (1,0) 0x08
    (0,1) 0x02   (1,1) 0x10
    (0,2) 0x04   (1,2) 0x20
    (0,3) 0x40   (1,3) 0x80

A cell takes the colour of the last layer that drew in it: series drawn later win, so the
highlighted one goes last.
"""

from __future__ import annotations

_DOTS = ((0x01, 0x02, 0x04, 0x40), (0x08, 0x10, 0x20, 0x80))
BRAILLE_BASE = 0x2800


class BrailleCanvas:
    def __init__(self, width: int, height: int) -> None:
        if width < 1 or height < 1:
            raise ValueError(f"a canvas needs at least one cell, got {width}x{height}")
        self.width = width  # cells
        self.height = height
        self._bits = [[0] * width for _ in range(height)]
        self._layer: list[list[int | None]] = [[None] * width for _ in range(height)]

    @property
    def pixel_width(self) -> int:
        return self.width * 2

    @property
    def pixel_height(self) -> int:
        return self.height * 4

    def dot(self, px: int, py: int, layer: int) -> None:
        """Set one dot; (0, 0) is the top-left pixel. Dots outside are ignored."""
        if not (0 <= px < self.width * 2 and 0 <= py < self.height * 4):
            return
        cx, cy = px // 2, py // 4
        self._bits[cy][cx] |= _DOTS[px % 2][py % 4]
        self._layer[cy][cx] = layer

    def line(self, x0: int, y0: int, x1: int, y1: int, layer: int) -> None:
        """Bresenham between two pixels, both ends included."""
        dx, dy = abs(x1 - x0), -abs(y1 - y0)
        sx = 1 if x0 < x1 else -1
        sy = 1 if y0 < y1 else -1
        err = dx + dy
        # The number of steps is bounded by the longer side, so a far-off point cannot hang it.
        for _ in range(dx - dy + 1):
            self.dot(x0, y0, layer)
            if x0 == x1 and y0 == y1:
                break
            e2 = 2 * err
            if e2 >= dy:
                err += dy
                x0 += sx
            if e2 <= dx:
                err += dx
                y0 += sy

    def vline(self, px: int, layer: int, dotted: bool = True) -> None:
        for py in range(0, self.height * 4, 2 if dotted else 1):
            self.dot(px, py, layer)

    def cells(self) -> list[list[tuple[str, int | None]]]:
        """Rows of (character, layer); an empty cell is a space with layer None."""
        return [
            [
                (chr(BRAILLE_BASE + bits) if bits else " ", layer if bits else None)
                for bits, layer in zip(bits_row, layer_row, strict=True)
            ]
            for bits_row, layer_row in zip(self._bits, self._layer, strict=True)
        ]
