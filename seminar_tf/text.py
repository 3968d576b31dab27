"""The one query / title tokenizer, in Python (the Beam job) and in TensorFlow (the graph).

A token is a maximal run of ASCII digits and lower-case ASCII letters after ASCII letters
are lower-cased; every other character (punctuation, spaces, any non-ASCII character)
separates tokens. Both forms follow this definition byte for byte: Python's `str.lower`
would map some non-ASCII characters to ASCII (the Kelvin sign to "k", "İ" to "i" and a
combining dot), which `tf.strings.lower` does not, so neither form uses it.
"""
from __future__ import annotations

import re
from typing import Tuple

WORD_PATTERN = "[0-9a-z]+"
_WORD_RE = re.compile(WORD_PATTERN)
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def words(text) -> Tuple[str, ...]:
    """Tokens of `text` (str, or UTF-8 bytes; None is empty)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    return tuple(_WORD_RE.findall((text or "").translate(_ASCII_LOWER)))


def words_tf(text):
    """Tokens of a string tensor (any shape S) as a RaggedTensor (S + [None]) of strings."""
    import tensorflow as tf
    spaced = tf.strings.regex_replace(tf.strings.lower(text), "[^0-9a-z]+", " ")
    return tf.strings.split(tf.strings.strip(spaced))
