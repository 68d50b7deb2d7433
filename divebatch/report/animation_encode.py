"""Write an animation's frames (RGB images, animation_draw.FrameImages) to a file.

GIF: Pillow, every frame on one palette, the last frame's most frequent colours (the
finished race holds every colour the earlier frames use; white and the method colours come
first), each pixel mapped to its nearest entry. Exact colours stay exact (Pillow's own
mapping looks colours up by boxes of nearby values and turned white into light grey), lines
keep their colours from frame to frame, and Pillow stores only what changed.
MP4: H.264 through the ffmpeg binary that the imageio-ffmpeg wheel ships (nothing to install
beside pip). Each frame lasts 1 / fps seconds; the last one `hold_s` seconds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

GIF_COLOURS = 128  # the charts' few colours and their anti-aliased edges (about 800 in all)


def frame_durations_ms(count: int, fps: float, hold_s: float) -> list[int]:
    """Milliseconds each GIF frame shows (GIF counts in hundredths of a second)."""
    step = 10 * round(100 / fps)
    return [step] * (count - 1) + [max(step, 10 * round(100 * hold_s))]


def video_frame_count(count: int, fps: float, hold_s: float) -> int:
    """Frames of the MP4: the last one repeated for hold_s seconds at fps."""
    return count - 1 + max(1, round(hold_s * fps))


class GifPalette:
    """One palette for every frame: the last frame's most frequent colours, most frequent
    first; each pixel is mapped to its nearest entry (exact when present)."""

    def __init__(self, image: Image.Image, colours: int = GIF_COLOURS):
        counts = sorted(image.getcolors(image.width * image.height), reverse=True)[:colours]
        self.rgb = np.array([colour for _, colour in counts], dtype=np.int32)  # (colours, 3)
        self.known = np.unique(_packed(image))  # the last frame's colours, sorted
        self.index_of_known = self._nearest(self.known)

    def _nearest(self, packed: np.ndarray) -> np.ndarray:
        channels = np.stack([packed >> 16, (packed >> 8) & 255, packed & 255], axis=1)
        distance = ((channels[:, None, :] - self.rgb[None, :, :]) ** 2).sum(axis=2)
        return distance.argmin(axis=1).astype(np.uint8)

    def apply(self, image: Image.Image) -> Image.Image:
        """The image in mode P on this palette."""
        packed = _packed(image)  # (H, W)
        where = np.searchsorted(self.known, packed).clip(max=len(self.known) - 1)
        index = self.index_of_known[where]
        new = self.known[where] != packed  # colours the last frame lacks: a few pixels
        if new.any():
            colours, inverse = np.unique(packed[new], return_inverse=True)
            index[new] = self._nearest(colours)[inverse]
        out = Image.fromarray(index, "P")
        out.putpalette(self.rgb.astype(np.uint8).ravel().tolist())
        return out


def _packed(image: Image.Image) -> np.ndarray:
    """Each pixel's colour as one int, shape (H, W)."""
    rgb = np.asarray(image, dtype=np.int32)  # (H, W, 3)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def write_gif(images, path: Path, fps: float, hold_s: float) -> None:
    palette = GifPalette(images.last)
    frames = [palette.apply(image) for image in images]
    frames[0].save(path, save_all=True, append_images=frames[1:], loop=0,
                   duration=frame_durations_ms(len(frames), fps, hold_s), optimize=True)


def write_mp4(images, path: Path, fps: float, hold_s: float) -> None:
    import imageio_ffmpeg
    writer = imageio_ffmpeg.write_frames(
        str(path), images.size, fps=fps, codec="libx264", pix_fmt_in="rgb24",
        quality=7, macro_block_size=16, ffmpeg_log_level="error",
        output_params=["-movflags", "+faststart"])
    writer.send(None)  # start ffmpeg
    try:
        for image in images:
            writer.send(image.tobytes())
        for _ in range(video_frame_count(len(images), fps, hold_s) - len(images)):
            writer.send(images.last.tobytes())
    finally:
        writer.close()
