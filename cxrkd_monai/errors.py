"""The package's documented input errors.

Every problem with input data (a datalist file, one of its items, an image file) is raised as a subclass of
:class:`InputError`, itself a ``ValueError``, and its message names the file and, for an item, the item and
the key. Catch :class:`InputError` to handle all of them; anything else escaping the package is a bug.
Messages never quote report text or DICOM identifiers (patient data): an item is named by its datalist index
and image file, a value inside a text by its position.

- :class:`InvalidDatalistError`: the datalist file itself cannot be read (not UTF-8: the byte offset is
  named; not JSON: the line and column are named; a missing or malformed list).
- :class:`InvalidItemError`: one item has an invalid value (a label outside {0, 1}, a NaN or infinite
  coordinate, a box with ``x2 <= x1``, report text that cannot be encoded as UTF-8, ...).
- :class:`UnreadableImageError`: an image file that cannot be decoded (truncated, not a valid DICOM, an
  unsupported photometric interpretation or bit depth, mostly non-finite pixels, ...).
"""

from __future__ import annotations

__all__ = ["InputError", "InvalidDatalistError", "InvalidItemError", "UnreadableImageError", "require_utf8"]


class InputError(ValueError):
    """Bad input data; the message names the file (and the item and key where there is one)."""


class InvalidDatalistError(InputError):
    """A datalist file that cannot be read as a MONAI datalist."""


class InvalidItemError(InputError):
    """A datalist item holding an invalid value."""


class UnreadableImageError(InputError):
    """An image file that cannot be decoded or that is not a single-frame chest radiograph."""


def require_utf8(text: str, where: str, error_type: type[InputError] = InvalidItemError) -> str:
    """``text`` unchanged if it can be encoded as UTF-8, else ``error_type`` naming ``where``.

    Python strings can hold lone surrogates (``"\\ud800"``, e.g. from a JSON escape), which no UTF-8 file,
    tokenizer or hash accepts. The error gives the first offending code point and its position, never the text
    around it: the text may be a report, which is patient data and must not reach a log.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise error_type(
            f"{where}: text cannot be encoded as UTF-8: a lone surrogate U+{ord(text[error.start]):04X} at "
            f"position {error.start} of {len(text)} characters."
        ) from None
    return text
