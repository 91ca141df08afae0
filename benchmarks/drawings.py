#!/usr/bin/env python
"""Digits drawn stroke by stroke, in the styles people write them, as PNG files.

    python benchmarks/drawings.py drawings/
    python benchmarks/other_writers.py --models model.npz --drawings drawings/

No person sat at a tablet for these: each style below was drawn by hand as a few pen strokes
(points on a 100x100 page, x rightwards, y downwards; a stroke with more than two points is a
smooth curve through them, a corner is where one stroke ends and the next begins). They cover
conventions MNIST has few of (long-flagged and footed 1s, crossed 7s, open 4s, looped 2s, a
flat-topped 3, slashed 0s) as well as the usual shapes. Each style is written with a fine pen and
a marker, upright and slanted: ``<digit>_<style>_<pen>_<slant>.png``, dark ink on white paper,
280x280, the way the draw-a-digit page or a scan would hand them over.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from scipy.interpolate import splev, splprep

Stroke = list[tuple[float, float]]


def ellipse(cx: float, cy: float, rx: float, ry: float, start: float = -90, sweep: float = 370) -> Stroke:
    """Points along an ellipse, from ``start`` degrees (0 = right, -90 = top) for ``sweep`` degrees."""
    angles = np.radians(np.linspace(start, start + sweep, 13))
    return [(cx + rx * np.cos(a), cy + ry * np.sin(a)) for a in angles]


STYLES: dict[str, dict[str, list[Stroke]]] = {
    "0": {
        "oval": [ellipse(50, 50, 26, 42)],
        "slashed": [ellipse(50, 50, 26, 42), [(30, 82), (70, 18)]],
        "narrow": [ellipse(52, 50, 17, 44, start=-100)],
    },
    "1": {
        "stroke": [[(52, 6), (48, 94)]],
        "flag": [[(30, 34), (55, 6)], [(55, 6), (52, 94)]],
        "flag-foot": [[(30, 30), (56, 6)], [(56, 6), (56, 92)], [(34, 93), (78, 93)]],
        "slant": [[(50, 22), (64, 6)], [(64, 6), (40, 94)]],
    },
    "2": {
        "curve": [[(26, 28), (38, 10), (58, 8), (72, 22), (68, 42), (48, 64), (26, 92)], [(26, 92), (80, 91)]],
        "loop": [
            [
                (26, 26),
                (40, 9),
                (62, 10),
                (71, 30),
                (55, 55),
                (30, 84),
                (24, 93),
                (36, 95),
                (44, 86),
                (56, 90),
                (80, 92),
            ]
        ],
    },
    "3": {
        "round": [
            [(28, 18), (46, 7), (66, 12), (70, 30), (56, 45), (42, 48)],
            [(42, 48), (62, 53), (74, 71), (64, 89), (44, 94), (26, 84)],
        ],
        "flat-top": [
            [(28, 9), (72, 9)],
            [(72, 9), (44, 42)],
            [(44, 42), (64, 49), (74, 69), (63, 88), (42, 94), (25, 85)],
        ],
    },
    "4": {
        "closed": [[(62, 94), (62, 6)], [(62, 6), (22, 66)], [(22, 66), (82, 66)]],
        "open": [[(30, 6), (26, 60)], [(26, 60), (80, 60)], [(63, 22), (63, 95)]],
    },
    "5": {
        "flag": [
            [(30, 10), (72, 10)],
            [(32, 10), (29, 47)],
            [(29, 47), (50, 40), (70, 52), (73, 72), (60, 90), (38, 94), (24, 84)],
        ],
        "sweep": [
            [(32, 8), (28, 46)],
            [(28, 46), (52, 39), (72, 55), (70, 78), (52, 93), (26, 88)],
            [(32, 8), (74, 6)],
        ],
    },
    "6": {
        "curl": [[(66, 8), (46, 24), (31, 52), (30, 80), (46, 94), (66, 88), (70, 68), (55, 54), (38, 59), (31, 72)]],
        "straight": [[(62, 6), (34, 58)], [(34, 58), (33, 80), (48, 94), (66, 86), (69, 66), (53, 54), (34, 60)]],
    },
    "7": {
        "plain": [[(24, 12), (76, 12)], [(76, 12), (42, 94)]],
        "crossed": [[(24, 12), (76, 12)], [(76, 12), (42, 94)], [(40, 52), (74, 50)]],
        "serif": [[(25, 24), (25, 12)], [(25, 12), (76, 12)], [(76, 12), (46, 94)]],
    },
    "8": {
        "one-stroke": [
            [
                (62, 16),
                (47, 7),
                (31, 18),
                (38, 38),
                (60, 54),
                (71, 75),
                (56, 93),
                (35, 91),
                (29, 72),
                (44, 55),
                (64, 38),
                (68, 20),
                (60, 13),
            ]
        ],
        "two-loops": [ellipse(50, 27, 18, 20), ellipse(50, 70, 23, 24)],
    },
    "9": {
        "straight": [ellipse(47, 30, 21, 21, start=0), [(68, 30), (64, 95)]],
        "curved": [ellipse(47, 30, 21, 21, start=0), [(68, 30), (66, 60), (56, 86), (40, 95)]],
    },
}

PENS = {"fine": 7, "marker": 15}  # pen width in pixels on the 280-pixel page
SLANTS = {"upright": 0.0, "slanted": 0.25}  # x shifted by slant * (50 - y): leaning right
SIDE, MARGIN = 280, 30


def smooth(stroke: Stroke) -> np.ndarray:
    """A polyline: the stroke itself if it has two points, else a smooth curve through them."""
    points = np.asarray(stroke, dtype=float)
    if len(points) <= 2:
        return points
    tck, _ = splprep(points.T, s=0, k=min(3, len(points) - 1))
    return np.stack(splev(np.linspace(0, 1, 120), tck), axis=1)


def draw(strokes: list[Stroke], pen: int, slant: float) -> Image.Image:
    """One digit: dark ink on a white 280x280 page, round pen tips."""
    page = Image.new("L", (SIDE, SIDE), 255)
    canvas = ImageDraw.Draw(page)
    scale = (SIDE - 2 * MARGIN) / 100
    for stroke in strokes:
        curve = smooth(stroke)
        x = MARGIN + scale * (curve[:, 0] + slant * (50 - curve[:, 1]))
        y = MARGIN + scale * curve[:, 1]
        points = list(zip(x.tolist(), y.tolist()))
        canvas.line(points, fill=20, width=pen, joint="curve")
        for px, py in (points[0], points[-1]):
            canvas.ellipse((px - pen / 2, py - pen / 2, px + pen / 2, py + pen / 2), fill=20)
    return page


def write_drawings(folder: Path) -> list[Path]:
    """Every style, pen and slant as ``folder/<digit>_<style>_<pen>_<slant>.png``."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for digit, styles in STYLES.items():
        for style, strokes in styles.items():
            for pen_name, pen in PENS.items():
                for slant_name, slant in SLANTS.items():
                    path = folder / f"{digit}_{style}_{pen_name}_{slant_name}.png"
                    draw(strokes, pen, slant).save(path)
                    written.append(path)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="where the PNG files are written")
    written = write_drawings(parser.parse_args().folder)
    print(f"wrote {len(written)} drawings of {len(STYLES)} digits in {sum(map(len, STYLES.values()))} styles")


if __name__ == "__main__":
    main()
