"""Python values as tagged JSON, and back, without running code.

Plain JSON loses types (tuples become lists, arrays lose their dtype), so
containers are tagged: every JSON object :func:`encode` writes is
``{"<tag>": payload}`` with the tags ``tuple``, ``dict`` and ``ndarray``.
:func:`decode` builds only these containers and arrays of the dtypes in
``DTYPE_KINDS``; anything else in a file is an error.

Examples
--------
>>> import numpy as np
>>> from skhydra._jsonvalues import decode, encode
>>> encode((1, np.array(["a", "b"])))
{'tuple': [1, {'ndarray': {'dtype': '<U1', 'shape': [2], 'values': ['a', 'b']}}]}
>>> decode(encode((1, np.array(["a", "b"]))))
(1, array(['a', 'b'], dtype='<U1'))
"""

import numpy as np

__all__ = ["DTYPE_KINDS", "NotJSON", "decode", "encode", "is_json"]

#: Array dtypes a file may hold: bool, integers, floats, strings and objects (strings).
DTYPE_KINDS = set("biufUO")


class NotJSON(TypeError):
    """A value that the file's JSON cannot represent."""


def encode(value):
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, np.generic) and value.dtype.kind in "biuf":
        return value.item()
    if isinstance(value, list):
        return [encode(v) for v in value]
    if isinstance(value, tuple):
        return {"tuple": [encode(v) for v in value]}
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise NotJSON("a dict with keys that are not strings")
        return {"dict": {k: encode(v) for k, v in value.items()}}
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in DTYPE_KINDS:
            raise NotJSON(f"an array of dtype {value.dtype}")
        values = value.ravel().tolist()
        if value.dtype.kind == "O" and not all(
            isinstance(v, (str, bool, int, float)) for v in values
        ):
            raise NotJSON("an object array holding values other than str, int, float, bool")
        return {"ndarray": {"dtype": value.dtype.str, "shape": list(value.shape), "values": values}}
    raise NotJSON(f"a {type(value).__name__}")


def decode(value):
    if isinstance(value, list):
        return [decode(v) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) != 1:
        raise ValueError(f"The file holds a JSON object with keys {sorted(value)}, not one tag.")
    ((tag, payload),) = value.items()
    if tag == "tuple":
        return tuple(decode(v) for v in payload)
    if tag == "dict":
        return {k: decode(v) for k, v in payload.items()}
    if tag == "ndarray":
        dtype = np.dtype(payload["dtype"])
        if dtype.kind not in DTYPE_KINDS:
            raise ValueError(f"The file holds an array of unsupported dtype {dtype}.")
        return np.asarray(payload["values"], dtype=dtype).reshape(payload["shape"])
    raise ValueError(f"The file holds an unknown JSON value tagged {tag!r}.")


def is_json(value):
    try:
        encode(value)
    except NotJSON:
        return False
    return True
