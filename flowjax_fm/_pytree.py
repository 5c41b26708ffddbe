"""Frozen pytree dataclasses: the one way this package declares hyperparameter objects.

Float hyperparameters are pytree *leaves* (they can be traced, swept and differentiated
without recompiling); fields that change shapes or Python control flow are marked with
:func:`static_field` and become part of the treedef.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

import jax

__all__ = ["pytree_dataclass", "static_field", "hash_key"]

T = TypeVar("T")


def static_field(**kwargs: Any) -> Any:
    """A dataclass field that is part of the treedef (hashable, not traced)."""
    metadata = dict(kwargs.pop("metadata", {}) or {})
    metadata["static"] = True
    return dataclasses.field(metadata=metadata, **kwargs)


def pytree_dataclass(cls: type[T]) -> type[T]:
    """Make ``cls`` a frozen dataclass registered as a JAX pytree.

    Fields whose metadata has ``static=True`` (see :func:`static_field`) are metadata of
    the treedef; every other field is a child (leaf or sub-pytree).

    Validation (``__post_init__``) runs when a user builds the object, never when JAX
    rebuilds it: ``jit``, ``vmap`` and ``jax.tree.map`` unflatten with tracers, ``None`` or
    placeholder objects in the leaves, which a range check must not see. So unflattening
    fills the fields directly, as equinox does for its modules (``__check_init__`` runs on
    construction only); ``jax.tree_util.register_dataclass`` would call ``__init__``.

    Examples:
      >>> import jax
      >>> @pytree_dataclass
      ... class Scale:
      ...     factor: float = 2.0
      ...     def __post_init__(self):
      ...         if self.factor <= 0:
      ...             raise ValueError("factor must be > 0")
      >>> jax.tree_util.tree_leaves(Scale(3.0))
      [3.0]
      >>> jax.tree.map(lambda _: None, Scale(3.0)).factor is None  # not validated
      True
    """
    cls = dataclasses.dataclass(frozen=True)(cls)
    data_fields, meta_fields = [], []
    for f in dataclasses.fields(cls):
        (meta_fields if f.metadata.get("static", False) else data_fields).append(f.name)
    data_names, meta_names = tuple(data_fields), tuple(meta_fields)
    keys = tuple(jax.tree_util.GetAttrKey(name) for name in data_names)

    def flatten_with_keys(obj):
        children = [(k, getattr(obj, n)) for k, n in zip(keys, data_names, strict=True)]
        return children, tuple(getattr(obj, n) for n in meta_names)

    def flatten(obj):
        return [getattr(obj, n) for n in data_names], tuple(getattr(obj, n) for n in meta_names)

    def unflatten(meta, children):
        obj = object.__new__(cls)
        for n, v in zip(meta_names, meta, strict=True):
            object.__setattr__(obj, n, v)
        for n, v in zip(data_names, children, strict=True):
            object.__setattr__(obj, n, v)
        return obj

    jax.tree_util.register_pytree_with_keys(cls, flatten_with_keys, unflatten, flatten)
    return cls


class _ById:
    """An unhashable object wrapped to hash (and compare) by identity."""

    def __init__(self, obj):
        self.obj = obj

    def __hash__(self):
        return id(self.obj)

    def __eq__(self, other):
        return isinstance(other, _ById) and other.obj is self.obj


def hash_key(obj):
    """``obj`` itself if it is hashable, else a wrapper that hashes it by identity.

    What a compiled program is cached on (static parts of a step) must hash; an unhashable
    static object then still caches, per object.

    Examples:
      >>> hash_key(3) == 3, hash_key([1]) == hash_key([1])
      (True, False)
    """
    try:
        hash(obj)
    except TypeError:
        return _ById(obj)
    return obj
