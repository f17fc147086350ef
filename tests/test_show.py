"""stages/show.py: captions OpenCV can draw, whatever the text."""
import numpy as np

from stages.show import caption_band, drawable


def test_a_caption_of_a_file_name_that_is_not_utf8_is_drawn_not_a_crash():
    """``b'caf\\xe9.mp4'`` reaches Python as ``'caf\\udce9.mp4'``; OpenCV's text functions took the
    whole `pipeline predict --out` run down with a segfault on it."""
    name = b"caf\xe9 \xc3\xa9t\xc3\xa9.mp4".decode("utf-8", "surrogateescape")
    assert drawable(name) == "caf? ?t?.mp4"  # (the valid UTF-8 é is one character)
    band = caption_band(200, f"{name}: jump 0.91")
    assert band.shape[1] == 200 and (band > 24).any()  # something was drawn
    assert np.array_equal(caption_band(200, "plain"), caption_band(200, drawable("plain")))


def test_a_title_of_such_a_name_is_printable():
    from stages.show import printable

    name = b"caf\xe9 \xc3\xa9t\xc3\xa9.mp4".decode("utf-8", "surrogateescape")
    assert printable(name) == "caf? \u00e9t\u00e9.mp4"  # valid UTF-8 kept, the stray byte replaced
