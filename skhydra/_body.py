"""Custom torch bodies: building one from ``body`` / ``body_params``, and ``body__`` parameters.

``body`` is a :class:`torch.nn.Module` class (built with ``body_params`` at
each fit) or an instance (deep-copied). Each entry of ``body_params`` is
also an estimator parameter ``body__<name>``, as skorch's ``module__``
parameters are, so searches can tune a body's constructor arguments.
"""

import copy

import torch

__all__ = ["BodyParamsMixin", "make_body"]


def make_body(body, params):
    """A fresh custom body, or None for the default MLP.

    Parameters
    ----------
    body : torch.nn.Module class or instance, or None
    params : dict or None
        Constructor arguments of a body class.

    Returns
    -------
    torch.nn.Module or None

    Examples
    --------
    >>> import torch
    >>> from skhydra._body import make_body
    >>> make_body(torch.nn.Linear, {"in_features": 4, "out_features": 2})
    Linear(in_features=4, out_features=2, bias=True)
    """
    params = params or {}
    if body is None:
        if params:
            raise ValueError(
                f"body_params {sorted(params)} were given without a body class; they are "
                "constructor arguments of body=."
            )
        return None
    if isinstance(body, type):
        if not issubclass(body, torch.nn.Module):
            raise TypeError(
                f"body must be a torch.nn.Module class or instance, got the class {body.__name__}."
            )
        try:
            return body(**params)
        except TypeError as exc:
            raise TypeError(
                f"Could not build the body {body.__name__}(**body_params) with "
                f"body_params={params!r}: {exc}"
            ) from exc
    if params:
        raise ValueError(
            f"body_params {sorted(params)} apply to a body class, but body is an "
            f"instance of {type(body).__name__}; pass the class, or no body_params."
        )
    return copy.deepcopy(body)


class BodyParamsMixin:
    """``get_params`` / ``set_params`` that expose ``body_params`` entries as ``body__<name>``."""

    def get_params(self, deep=True):
        """Get parameters for this estimator.

        Parameters
        ----------
        deep : bool, default=True
            Also return the parameters of contained objects, and each entry of
            ``body_params`` as ``body__<name>``.

        Returns
        -------
        params : dict
            Parameter names mapped to their values.
        """
        params = super().get_params(deep=deep)
        if deep and isinstance(self.body_params, dict):
            for key, value in self.body_params.items():
                params[f"body__{key}"] = value
        return params

    def set_params(self, **params):
        """Set the parameters of this estimator.

        ``body__<name>=value`` sets the entry ``name`` of ``body_params`` (a
        constructor argument of the ``body`` class), so searches can tune it.

        Parameters
        ----------
        **params : dict
            Estimator parameters.

        Returns
        -------
        self : estimator instance
            Estimator instance.
        """
        body_args = {
            k[len("body__") :]: params.pop(k) for k in list(params) if k.startswith("body__")
        }
        if body_args:
            merged = params.pop("body_params", self.body_params)
            merged = dict(merged) if isinstance(merged, dict) else {}
            merged.update(body_args)
            params["body_params"] = merged
        return super().set_params(**params)
