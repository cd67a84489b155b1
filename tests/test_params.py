"""The parameter table: one declaration behind signatures, constraints and docstrings."""

import ast
import inspect
import re

import pytest
from sklearn.utils._param_validation import InvalidParameterError

from skhydra import HydraDistilledClassifier, HydraDistilledRegressor
from skhydra._params import PARAMS

ESTIMATORS = [HydraDistilledClassifier, HydraDistilledRegressor]
TABLE = [p.name for p in PARAMS]


def _signature(cls):
    return list(inspect.signature(cls.__init__).parameters.values())[1:]


def _documented(cls):
    """Parameter names of the class docstring's Parameters section, in order."""
    section = cls.__doc__.split("Parameters\n    ----------\n")[1].split("\n    Attributes\n")[0]
    return re.findall(r"^    (\w+) : ", section, flags=re.MULTILINE)


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_signature_follows_the_table(cls):
    names = [p.name for p in _signature(cls)]
    assert names == [n for n in TABLE if n in names]
    missing = set(TABLE) - set(names)
    classifier_only = {"temperature", "match_aleatoric", "match_epistemic"}
    assert missing == (classifier_only if cls is HydraDistilledRegressor else set())
    assert all(p.kind is p.KEYWORD_ONLY for p in _signature(cls)[1:])


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_docstring_documents_every_parameter_in_signature_order(cls):
    assert _documented(cls) == [p.name for p in _signature(cls)]


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_documented_defaults_are_the_real_defaults(cls):
    for param in _signature(cls):
        entry = re.search(rf"^    {param.name} : .*default=(.+)$", cls.__doc__, re.MULTILINE)
        assert entry, f"{param.name} documents no default"
        assert ast.literal_eval(entry.group(1).strip()) == param.default, param.name


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_every_parameter_has_constraints(cls):
    assert set(cls._parameter_constraints) == {p.name for p in _signature(cls)}


@pytest.mark.parametrize("cls", ESTIMATORS)
@pytest.mark.parametrize(
    "name, value, words",
    [
        ("body_layer_sizes", (16, 0), "tuple of positive ints"),
        ("head_layer_sizes", [4.5], "tuple of positive ints"),
        ("memory_budget", "lots", "str such as '2GB'"),
        ("memory_budget", -1, "range"),
        ("device", "tpu", "cuda:<index>"),
        ("max_epochs", -1, "range"),
        ("augmentation", "rotate", "noise"),
        ("batch_size", "big", "auto"),
    ],
)
def test_bad_values_are_named_by_the_validation(cls, name, value, words):
    with pytest.raises(InvalidParameterError, match=rf"'{name}' parameter.*{re.escape(words)}"):
        cls(**{name: value}).fit([[0.0], [1.0]], [0, 1])


@pytest.mark.parametrize("cls", ESTIMATORS)
@pytest.mark.parametrize("value", ["500MB", "2 GiB", 0, None])
def test_memory_budget_accepts_bytes_and_unit_strings(cls, value):
    assert cls._parameter_constraints["memory_budget"]
    cls(memory_budget=value)._validate_params()  # does not raise
