"""PSU objectives: next-pair negatives are real pairs, so feature presence alone cannot tell
them from positives (the shortcut the zero-attribute random negatives offered)."""
import numpy as np
import tensorflow as tf

from seminar_tf import features as F
from seminar_tf import metrics as M
from seminar_tf.models.registry import model_config
from seminar_tf.tasks.objectives.next_pair import NextPairObjective

from helpers import random_batch, tiny_config, tiny_item_table


def _presence(batch, table, rows, cols):
    """[has attributes, has query, has text, has image] of behaviours (rows, cols)."""
    items = batch[F.HIST_ITEMS].numpy()[rows, cols]
    attrs = batch[F.HIST_ATTRS].numpy()[rows, cols]
    query = batch[F.HIST_QUERY].numpy()[rows, cols]
    return np.stack([(attrs != 0).any(-1), (query != 0).any(-1), table["text_mask"][items],
                     table["image_mask"][items]], 1).astype(np.float64)


def _logistic_auc(x, y, steps=2000, lr=0.5):
    """In-sample AUC of a logistic regression on x (an optimistic, i.e. strict, check)."""
    x = np.concatenate([x, np.ones((len(x), 1))], 1)
    w = np.zeros(x.shape[1])
    for _ in range(steps):
        p = 1 / (1 + np.exp(-x @ w))
        w -= lr * x.T @ (p - y) / len(y)
    return M.auc(y, x @ w)


def test_presence_alone_cannot_tell_sampled_negatives_from_positives():
    cfg = model_config("seminar", tiny_config())
    L, T = cfg.data.max_seq_len, 4
    table = tiny_item_table(cfg)
    batch = random_batch(cfg, batch=64, seed=11, lengths=list(
        np.random.default_rng(1).integers(T + 1, L + 1, 64)))
    mask = batch[F.HIST_ITEMS].numpy() != 0
    # some behaviours without attributes (items lacking side information)
    attrs = batch[F.HIST_ATTRS].numpy() * (np.random.default_rng(2).random(mask.shape) > 0.3
                                           )[..., None]
    batch[F.HIST_ATTRS] = tf.constant(attrs)
    rows, cols = np.nonzero(mask[:, L - T:])
    pos = _presence(batch, table, rows, cols + L - T)
    tf.random.set_seed(0)
    pick, usable = NextPairObjective.sample_positions(tf.constant(mask), 1024)
    assert usable.numpy().all()
    pick = pick.numpy()
    assert mask.reshape(-1)[pick].all()  # only real behaviours are sampled
    neg = _presence(batch, table, pick // L, pick % L)
    y = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
    assert _logistic_auc(np.r_[pos, neg], y) < 0.55
    # the check can fail: negatives as they were (random ids, no attributes, no query)
    ids = np.random.default_rng(3).integers(2, cfg.data.item_vocab_size, 1024)
    old = np.stack([np.zeros(1024), np.zeros(1024), table["text_mask"][ids],
                    table["image_mask"][ids]], 1)
    assert _logistic_auc(np.r_[pos, old], y) > 0.8
