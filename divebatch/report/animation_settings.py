"""The choices an animation offers (animation.py), importable without numpy or plotly (the
CLI builds its flags from them at start-up)."""

FORMATS = ("gif", "mp4")
SPEEDS = {"slow": 2, "normal": 5, "fast": 10}  # name -> frames (epochs) per second
DEFAULT_SPEED = "normal"
HOLD_S = 4.0       # how long the last frame (the verdict) stays on screen
MAX_FRAMES = 100   # frames of a long race: evenly spaced epochs beyond this
