"""Ids must not be blank, and "blank" means the same to our validators (Rust regex inside
pydantic, Python's `re`) and to a client's JSON Schema validator (ECMAScript regex): the
fuzzer found `\\S` letting a schema-valid U+0085 through to a 422."""

from __future__ import annotations

import re
import sys

import pytest
from pydantic import TypeAdapter, ValidationError

from sme.contracts.events import NOT_BLANK, Identifier, UserId

ECMASCRIPT_SPACE = (
    "\t\n\x0b\x0c\r \xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
)
PYTHON_SPACE = "".join(chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace())


@pytest.mark.parametrize("char", sorted(set(ECMASCRIPT_SPACE) | set(PYTHON_SPACE)))
def test_a_space_of_any_engine_alone_is_blank_everywhere(char: str) -> None:
    assert re.search(NOT_BLANK, char) is None
    for kind in (UserId, Identifier):
        with pytest.raises(ValidationError):
            TypeAdapter(kind).validate_python(char * 3)


@pytest.mark.parametrize("value", ["a", "é", " x ", "\x85a", "用户"])
def test_anything_else_is_an_id(value: str) -> None:
    assert re.search(NOT_BLANK, value)
    assert TypeAdapter(UserId).validate_python(value) == value
