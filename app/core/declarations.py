"""What a value breaks of its declared type, in our words.

The request bodies (`app.core.request_bodies`) and the list parameters
(`app.core.list_parameters`) are msgspec Structs, and msgspec decides whether
a document fits one. When it does not, the field at fault and what the API
says about it are found here, from the declaration (read through
`msgspec.inspect`, each field's `extra["noun"]` included) and the value as the
standard library decoded it: never from msgspec's message, whose words are
msgspec's to change. A document is searched in the order msgspec searches it:
its keys in their order, then the required fields it lacks, in declaration
order.
"""
from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass
from typing import Any

import msgspec
import msgspec.inspect

from .errors import ValidationError
from .request_bodies import UUID_EXAMPLE

# What each declared type takes, as the standard library decodes JSON, and what a value of it is called.
_TAKES: dict[type, tuple[type, str]] = {
    msgspec.inspect.IntType: (int, "an integer"),
    msgspec.inspect.StrType: (str, "a string"),
    msgspec.inspect.DictType: (dict, "a JSON object"),
    msgspec.inspect.ListType: (list, "an array"),
    msgspec.inspect.UUIDType: (str, "a UUID string"),
}


@dataclass(frozen=True)
class DeclaredField:
    """A field as declared: its type (without an optional None and its metadata), the `extra` that metadata
    declares, whether it must be given and whether it may be null."""

    name: str
    kind: Any
    extra: dict[str, Any]
    required: bool
    nullable: bool


@dataclass(frozen=True)
class Declaration:
    """A Struct as declared: its fields by wire name, and whether a name it does not declare is refused."""

    fields: dict[str, DeclaredField]
    forbids_unknown: bool


def _field(name: str, kind: Any, required: bool) -> DeclaredField:
    nullable = isinstance(kind, msgspec.inspect.UnionType)  # every union declared here is `X | None`
    if nullable:
        kind = next(t for t in kind.types if not isinstance(t, msgspec.inspect.NoneType))
    extra: dict[str, Any] = {}
    if isinstance(kind, msgspec.inspect.Metadata):
        kind, extra = kind.type, kind.extra or {}
    return DeclaredField(name, kind, extra, required, nullable)


@functools.cache
def declaration(struct: type[msgspec.Struct]) -> Declaration:
    """`struct` as declared, read once: inspecting a declaration costs more than the parse it serves."""
    info = msgspec.inspect.type_info(struct)
    return Declaration({field.encode_name: _field(field.encode_name, field.type, field.required)
                        for field in info.fields}, info.forbid_unknown_fields)


def declared_type(annotation: Any, name: str) -> DeclaredField:
    """A type declared on its own (an `Annotated` alias), as a required field called `name`."""
    return _field(name, msgspec.inspect.type_info(annotation), required=True)


def _is_uuid(text: str) -> bool:
    """Whether msgspec reads `text` as a UUID (it takes fewer spellings than `uuid.UUID`)."""
    try:
        msgspec.convert(text, uuid.UUID)
    except msgspec.ValidationError:
        return False
    return True


def _complaint(value: Any, kind: Any, extra: dict[str, Any]) -> str | None:
    """What `value` breaks of the type `kind`, in the words of its declaration; None if nothing said here."""
    if isinstance(kind, msgspec.inspect.LiteralType):
        if any(type(value) is type(choice) and value == choice for choice in kind.values):  # True is not 1
            return None
        return f"must be {extra.get('noun') or 'one of ' + ', '.join(map(str, kind.values))}"
    if type(kind) not in _TAKES:
        return None
    python_type, noun = _TAKES[type(kind)]
    if not isinstance(value, python_type) or isinstance(value, bool):
        return f"must be {extra.get('noun') or noun}"
    if isinstance(kind, msgspec.inspect.IntType) and (
            (kind.ge is not None and value < kind.ge) or (kind.le is not None and value > kind.le)):
        return f"must be between {kind.ge} and {kind.le}"
    if isinstance(kind, msgspec.inspect.UUIDType) and not _is_uuid(value):
        return f"must be a UUID such as {UUID_EXAMPLE}"
    lengthy = isinstance(kind, (msgspec.inspect.StrType, msgspec.inspect.ListType))
    if lengthy and kind.min_length is not None and len(value) < kind.min_length:
        return f"must be {extra['noun']}" if "noun" in extra else "must not be empty"
    if isinstance(kind, msgspec.inspect.StrType) and kind.max_length is not None and len(value) > kind.max_length:
        return f"must be at most {kind.max_length} characters"
    return None


def value_fault(value: Any, field: DeclaredField) -> ValidationError | None:
    """What `value` breaks of `field`'s declaration, or None if it breaks nothing said here.

    A list's items are not judged: a batch judges each of its events on its own.
    """
    kind = field.kind
    if value is None and field.nullable:
        return None
    if value is None and field.required:
        return ValidationError("is required", field=field.name, code="missing_field")
    if isinstance(kind, msgspec.inspect.ListType) and isinstance(value, list) and kind.max_length is not None \
            and len(value) > kind.max_length:
        return ValidationError(f"must hold at most {kind.max_length} {field.name}", field=field.name,
                               code="batch_too_large")
    complaint = _complaint(value, kind, field.extra)
    return None if complaint is None else ValidationError(complaint, field=field.name)


def first_fault(document: Any, struct: type[msgspec.Struct], root: ValidationError) -> ValidationError | None:
    """The first fault of a decoded `document` against `struct`'s declaration: `root` if it is no JSON object,
    else its first key that is unknown or whose value breaks its field, else the first required field it
    lacks; None if it breaks nothing said here."""
    if not isinstance(document, dict):
        return root
    declared = declaration(struct)
    for name, value in document.items():
        field = declared.fields.get(name)
        if field is None:
            if declared.forbids_unknown:
                return ValidationError(f"unknown field {name!r}", field=name, code="unknown_field")
            continue
        fault = value_fault(value, field)
        if fault is not None:
            return fault
    for name, field in declared.fields.items():
        if field.required and name not in document:
            return ValidationError("is required", field=name, code="missing_field")
    return None
