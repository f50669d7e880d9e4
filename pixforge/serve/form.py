"""The translate request's multipart body, parsed in a thread (on the event loop, parsing a 3 MB upload took
over 0.1 s, during which nothing else was answered)."""

from __future__ import annotations

from dataclasses import dataclass

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from pixforge.serve.inputs import RequestError


@dataclass
class Upload:
    """A file field of the form: its bytes."""

    filename: str
    data: bytes


Field = tuple[str, "str | Upload"]


def parse_form(body: bytes, content_type: str) -> list[Field]:
    """The fields of a ``multipart/form-data`` body in order (a name may repeat); 400/422 for a bad body."""
    kind, params = parse_options_header(content_type)
    if kind != b"multipart/form-data" or not params.get(b"boundary"):
        raise RequestError(422, "The request must be multipart/form-data with the uploads as file fields.")
    fields: list[Field] = []
    part: dict[str, bytearray] = {}
    header: dict[str, bytearray] = {}

    def begin() -> None:
        part.clear()
        part.update(headers=bytearray(), data=bytearray())

    def header_field(data: bytes, start: int, end: int) -> None:
        header.setdefault("field", bytearray()).extend(data[start:end])

    def header_value(data: bytes, start: int, end: int) -> None:
        header.setdefault("value", bytearray()).extend(data[start:end])

    def header_end() -> None:
        if bytes(header.get("field", b"")).lower() == b"content-disposition":
            part["headers"] = bytearray(header.get("value", b""))
        header.clear()

    def data(chunk: bytes, start: int, end: int) -> None:
        part["data"].extend(chunk[start:end])

    def end() -> None:
        _, disposition = parse_options_header(bytes(part["headers"]))
        name = disposition.get(b"name", b"").decode("latin-1")
        if b"filename" in disposition:
            fields.append((name, Upload(disposition[b"filename"].decode("latin-1"), bytes(part["data"]))))
        else:
            fields.append((name, part["data"].decode("utf-8", errors="replace")))

    callbacks = {
        "on_part_begin": begin,
        "on_header_field": header_field,
        "on_header_value": header_value,
        "on_header_end": header_end,
        "on_part_data": data,
        "on_part_end": end,
    }
    try:
        parser = MultipartParser(params[b"boundary"], callbacks)  # type: ignore[arg-type]
        parser.write(body)
        parser.finalize()
    except FormParserError:
        raise RequestError(400, "The multipart body is malformed.") from None
    return fields
