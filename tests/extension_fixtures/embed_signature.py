"""A new serving signature for the extension test: the candidates' pair vectors."""
from seminar_tf.workflows.signatures import (EXAMPLES, Signature, examples_warmup,
                                             parse_examples)


def embed(module, features):
    """`examples` -> `target` (B, d): each Example's (query, item) pair vector."""
    return {"target": module.model.encode_target(features)["pair"]}


SIGNATURE = Signature(parse_examples, embed, EXAMPLES, examples_warmup)
