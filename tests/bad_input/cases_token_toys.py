"""Bad inputs of the token toys (fm.data.grid_tokens, markov_digits, ...)."""

# ruff: noqa: E501  (a table: one case per line)
from __future__ import annotations

import jax
import jax.numpy as jnp

import flowjax_fm as fm
from bad_input import Case

D = fm.data
K = jax.random.key(0)

CASES = [
    Case("data.grid_tokens", "name", lambda: D.grid_tokens(K, 4, name="spiral"), ValueError, r"unknown name .spiral.; choose one of"),
    Case("data.grid_tokens", "n=0", lambda: D.grid_tokens(K, 0), ValueError, r"n must be an int >= 1"),
    Case("data.grid_tokens", "vocab=1", lambda: D.grid_tokens(K, 4, vocab=1), ValueError, r"vocab must be an int >= 2"),
    Case("data.grid_token_probs", "vocab=1.5", lambda: D.grid_token_probs("moons", 1.5), ValueError, r"vocab must be an int >= 2"),
    Case("data.markov_chain", "vocab=1", lambda: D.markov_chain(1), ValueError, r"vocab must be an int >= 2"),
    Case("data.markov_digits", "length=0", lambda: D.markov_digits(K, 4, length=0), ValueError, r"length must be an int >= 1"),
    Case("data.markov_log_prob", "float tokens", lambda: D.markov_log_prob(jnp.zeros((2, 3))), ValueError, r"tokens of shape \(B, L\), got shape \(2, 3\)"),
    Case("data.markov_log_prob", "1-D", lambda: D.markov_log_prob(jnp.zeros((3,), jnp.int32)), ValueError, r"got shape \(3,\)"),
    Case("data.markov_log_prob", "out of range", lambda: D.markov_log_prob(jnp.full((2, 3), 10)), ValueError, r"must lie in \[0, 10\)"),
]

EXEMPT = {"data.GRID_BOXES": "a constant (the grid boxes of the token toys)"}
