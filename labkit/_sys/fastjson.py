"""json.loads/json.dumps on CPython's C scanner and encoder, without importing ``json``.

``import json`` costs ~4-5 ms: json.decoder compiles regular expressions at import, which
pulls in ``re`` (and with it enum, re._parser, re._compiler).  labkit-runtime reads
config.json and reads/writes state.json on every start, so it uses this module instead.
The work is done by the same C code json itself uses (``_json.make_scanner``,
``_json.make_encoder``, ``_json.encode_basestring_ascii``); only the thin Python layer
around it is rewritten here, without regexes:

* loads(): what ``json.loads(data)`` returns for the same input (default options: strict,
  no hooks, float/int/NaN/Infinity as json parses them), but a malformed document raises
  InvalidArgumentError naming ``what`` (e.g. the file) with json's message, line and column.
* dumps(): byte-for-byte ``json.dumps(obj)`` or ``json.dumps(obj, sort_keys=True)`` (ASCII
  output, ", " and ": " separators, NaN/Infinity allowed, circular references refused).

Where ``_json`` is missing (another Python implementation) both fall back to ``json``.
"""

from __future__ import annotations

from labkit import errors

TYPE_CHECKING = False  # not typing's: ~1.5 ms on the start path (mypy: always true)
if TYPE_CHECKING:
    from typing import Any

try:
    import _json
except ImportError:  # pragma: no cover - CPython always has it
    _json = None  # type: ignore[assignment]

__all__ = ["dumps", "loads"]

_WS = " \t\n\r"  # RFC 8259 section 2: the only whitespace JSON allows
_CONSTANTS = {"-Infinity": float("-inf"), "Infinity": float("inf"), "NaN": float("nan")}


class _ScanContext:
    """The attributes _json.make_scanner reads from json.JSONDecoder (json/scanner.py)."""

    __slots__ = ("memo", "object_hook", "object_pairs_hook", "parse_constant", "parse_float",
                 "parse_int", "strict")

    def __init__(self) -> None:
        self.strict = True
        self.object_hook = None
        self.object_pairs_hook = None
        self.parse_float = float
        self.parse_int = int
        self.parse_constant = _CONSTANTS.__getitem__
        self.memo: dict[str, str] = {}


_scan_once = _json.make_scanner(_ScanContext()) if _json is not None else None  # type: ignore[arg-type]


def _not_serializable(o: object) -> object:
    # json.JSONEncoder.default's message, word for word.
    raise TypeError(f"Object of type {o.__class__.__name__} is not JSON serializable")


def _encoder(sort_keys: bool) -> Any:
    # json.JSONEncoder.iterencode(o, _one_shot=True) with the defaults of json.dumps: a
    # markers dict (check_circular), ensure_ascii, no indent, (", ", ": "), allow_nan.
    return _json.make_encoder({}, _not_serializable, _json.encode_basestring_ascii, None,
                              ": ", ", ", sort_keys, False, True)


def _decode(data: bytes) -> str:
    # json.detect_encoding's cases: UTF-8 (with or without a BOM) here; UTF-16/32, which
    # start with a NUL byte or a UTF-16/32 BOM, go to json (never written by labkit).
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8", "surrogatepass")
    return data.decode("utf-8", "surrogatepass")


def _slow_bytes(data: bytes) -> bool:
    return bool(data) and (data[0] == 0 or data.startswith((b"\xff\xfe", b"\xfe\xff"))
                           or (len(data) > 1 and data[1] == 0))


def _bad(what: str, msg: str, doc: str, pos: int) -> errors.InvalidArgumentError:
    line = doc.count("\n", 0, pos) + 1
    col = pos - doc.rfind("\n", 0, pos)
    return errors.InvalidArgumentError(
        what, f"not valid JSON: {msg}: line {line} column {col} (char {pos})")


def loads(data: str | bytes | bytearray, *, what: str = "JSON document") -> Any:
    """Parse one JSON document (json.loads with default options).

    Raises:
        InvalidArgumentError: ``what`` is not valid JSON (message, line and column as json's
            JSONDecodeError gives them), or not UTF-8.
    """
    if isinstance(data, (bytes, bytearray)):
        if _scan_once is None or _slow_bytes(bytes(data)):
            return _json_loads(data, what)
        try:
            doc = _decode(bytes(data))
        except UnicodeDecodeError as err:
            raise errors.InvalidArgumentError(what, f"not valid JSON: not UTF-8 ({err})") from None
    else:
        if _scan_once is None:
            return _json_loads(data, what)
        doc = data
        if doc.startswith("\ufeff"):
            raise _bad(what, "Unexpected UTF-8 BOM (decode using utf-8-sig)", doc, 0)
    start = len(doc) - len(doc.lstrip(_WS))
    try:
        obj, end = _scan_once(doc, start)
    except StopIteration as err:
        raise _bad(what, "Expecting value", doc, err.value) from None
    except ValueError as err:  # json.JSONDecodeError, raised by the C scanner itself
        pos = getattr(err, "pos", None)
        if pos is None:
            raise errors.InvalidArgumentError(what, f"not valid JSON: {err}") from None
        raise _bad(what, getattr(err, "msg", str(err)), doc, pos) from None
    rest = doc[end:]
    end += len(rest) - len(rest.lstrip(_WS))  # trailing whitespace is fine, anything else not
    if end != len(doc):
        raise _bad(what, "Extra data", doc, end)
    return obj


def _json_loads(data: str | bytes | bytearray, what: str) -> Any:
    import json

    try:
        return json.loads(data)
    except json.JSONDecodeError as err:
        raise _bad(what, err.msg, err.doc, err.pos) from None
    except ValueError as err:
        raise errors.InvalidArgumentError(what, f"not valid JSON: {err}") from None


def dumps(obj: Any, *, sort_keys: bool = False) -> str:
    """json.dumps(obj, sort_keys=sort_keys), byte for byte.

    Raises:
        TypeError: a value JSON cannot represent (json's message).
        ValueError: a circular reference.
    """
    if _json is None:
        import json

        return json.dumps(obj, sort_keys=sort_keys)
    if isinstance(obj, str):
        return str(_json.encode_basestring_ascii(obj))
    return "".join(_encoder(sort_keys)(obj, 0))
