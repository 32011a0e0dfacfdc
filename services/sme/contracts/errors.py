"""Field errors for cross-field checks, shared by the configuration contracts."""

from __future__ import annotations

from pydantic import ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

Loc = tuple[str | int, ...]


def field_errors(model: str, errors: list[tuple[Loc, str, object]]) -> ValidationError:
    """Cross-field checks run on the whole model, but each error names the field to fix:
    raised inside a validator, these locations nest under the model's own path."""
    return ValidationError.from_exception_data(
        model,
        [
            InitErrorDetails(type=PydanticCustomError("value_error", message), loc=loc, input=value)
            for loc, message, value in errors
        ],
    )
