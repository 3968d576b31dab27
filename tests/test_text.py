"""The one tokenizer: Python (Beam) and TensorFlow (graph) forms give equal tokens."""
import numpy as np
import tensorflow as tf

from seminar_tf.text import words, words_tf

TRICKY = ["", " ", "Hello, World!", "iPhone 15 Pro-Max", "ÄÖÜ straße", "İstanbul",
          "\u212aelvin", "ﬁsh ﬂy", "ＡＢＣ１２３", "naïve café", "日本語 テキスト abc",
          "emoji 😀 ok", "tab\tnew\nline", "a" * 5000, "x-y_z.w", "\x00nul\x00byte",
          "\u0130\u0131 DOTTED", "MiXeD123CaSe", "🙂" * 300, "ǅ ǈ ǋ titlecase"]


def fuzzed(n, seed=0):
    """`n` random strings over ASCII, Latin, Greek, CJK, emoji, combining marks and
    controls, of length 0..40."""
    rng = np.random.default_rng(seed)
    pools = [range(0x20, 0x7f), range(0x00, 0x20), range(0xc0, 0x250), range(0x370, 0x400),
             range(0x300, 0x370), range(0x4e00, 0x4e80), range(0x1f600, 0x1f650),
             range(0xff01, 0xff5e), [0x212a, 0x130, 0x131, 0x1e9e, 0xdf]]
    out = []
    for _ in range(n):
        chars = []
        for _ in range(int(rng.integers(0, 41))):
            pool = pools[int(rng.choice(len(pools), p=[.5, .03, .1, .05, .05, .07, .05, .05,
                                                        .1]))]
            chars.append(chr(int(rng.choice(list(pool)))))
        out.append("".join(chars))
    return out


def test_graph_tokens_equal_the_beam_tokens_on_generated_and_fuzzed_text():
    texts = TRICKY + fuzzed(1200) + [
        " ".join(f"Word{int(t)}" for t in np.random.default_rng(k).integers(0, 999, k % 7))
        for k in range(200)]
    assert len(texts) >= 1000
    got = words_tf(tf.constant([t.encode("utf-8") for t in texts])).to_list()
    for text, tokens in zip(texts, got):
        assert [t.decode() for t in tokens] == list(words(text)), repr(text)


def test_definition():
    assert words("Hello, World! 42nd") == ("hello", "world", "42nd")
    assert words("\u212aelvin İstanbul") == ("elvin", "stanbul")  # no non-ASCII folding
    assert words(None) == () and words(b"ABC def") == ("abc", "def")
    assert words_tf(tf.constant([["A b", ""]])).shape.as_list() == [1, 2, None]


def test_beam_records_use_the_shared_tokenizer():
    from beam_pipelines.records import words as beam_words
    for text in TRICKY:
        assert beam_words(text) == words(text)
