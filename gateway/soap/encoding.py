"""The codec of the legacy handleRequest operation: SOAP 1.1 envelopes in, Python values out, and back.

Pure functions, no I/O. Two wire flavours share one Python model: rpc/encoded with Apache
SOAP maps (``wsdl/ctrlPaint.wsdl``) and rpc/literal with ``paintArray`` pairs
(``wsdl/ctrlPaintLiteral.wsdl``).
"""

from __future__ import annotations

import base64
import binascii
import codecs
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from lxml import etree

from gateway.errors import GatewayError
from gateway.limits import MAX_SOAP_REQUEST_BYTES

Flavour = Literal["encoded", "literal"]

SOAP_ENV_NS = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP_ENC_NS = "http://schemas.xmlsoap.org/soap/encoding/"
XSD_NS = "http://www.w3.org/2001/XMLSchema"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
APACHE_SOAP_NS = "http://xml.apache.org/xml-soap"
PAINT_NS = "urn:localhost-paint"
PAINT_TYPES_NS = "http://www.pure360.com/paint"

PART_NAMES = ("contextId", "className", "processName", "entityData", "processData")
BASE64_SUFFIX = "_base64"

_ENVELOPE = f"{{{SOAP_ENV_NS}}}Envelope"
_BODY = f"{{{SOAP_ENV_NS}}}Body"
_ENCODING_STYLE = f"{{{SOAP_ENV_NS}}}encodingStyle"
_ARRAY_TYPE = f"{{{SOAP_ENC_NS}}}arrayType"
_XSI_TYPE = f"{{{XSI_NS}}}type"
# Apache SOAP 2 clients still write the 1999 schema-instance namespace and its xsi:null.
_NIL_ATTRIBUTES = (f"{{{XSI_NS}}}nil", "{http://www.w3.org/1999/XMLSchema-instance}null")

_XML_DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>\n'
_ENCODED_NSMAP = {
    "SOAP-ENV": SOAP_ENV_NS,
    "ns1": PAINT_NS,
    "xsd": XSD_NS,
    "xsi": XSI_NS,
    "ns2": APACHE_SOAP_NS,
    "SOAP-ENC": SOAP_ENC_NS,
}
_LITERAL_NSMAP = {"SOAP-ENV": SOAP_ENV_NS, "ns1": PAINT_NS, "ns2": PAINT_TYPES_NS, "xsi": XSI_NS}
_INT32 = range(-(2**31), 2**31)

# What may precede a DOCTYPE: byte-order marks (as decoded by _as_text), PIs, comments.
_PROLOG_SKIPPED = (("\ufeff", ""), ("\xef\xbb\xbf", ""), ("<?", "?>"), ("<!--", "-->"))
_NOT_SPACE = re.compile(r"\S")
_NOT_XML_CHAR = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


class EnvelopeError(GatewayError):
    """The body is not a SOAP 1.1 handleRequest at all; the endpoint answers with a SOAP Fault."""


class ForbiddenXML(EnvelopeError):
    """The document has a DOCTYPE, and so possibly entity declarations; refused unread."""


class BodyTooLarge(EnvelopeError):
    """The body is over the size limit; refused before parsing."""

    def __init__(self, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(f"request body of {size} bytes is over the limit of {limit} bytes")


class PaintDecodeError(EnvelopeError):
    """A part of the handleRequest cannot be decoded; ``path`` names it, e.g. ``entityData.listName_base64``."""

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        super().__init__(f"{path}: {message}")


@dataclass(frozen=True)
class PaintRequest:
    """One decoded handleRequest call; missing or null strings are None, missing or null maps are {}."""

    context_id: str | None
    class_name: str | None
    process_name: str | None
    entity_data: dict[str, Any]
    process_data: dict[str, Any]
    flavour: Flavour


def parse_envelope(body: bytes, max_bytes: int = MAX_SOAP_REQUEST_BYTES,
                   flavour_hint: Flavour | None = None) -> PaintRequest:
    """Decode a handleRequest envelope of either flavour.

    The flavour is read from the map data when there is any; without it, ``flavour_hint``
    (from the SOAPAction) decides when it names the literal WSDL, else the envelope's
    SOAP-encoding attributes do, and failing those the hint (zeep on the encoded WSDL
    writes none).

    Raises BodyTooLarge over ``max_bytes``, ForbiddenXML for any DOCTYPE, PaintDecodeError
    for a part that cannot be decoded and EnvelopeError for anything else that is not a
    SOAP 1.1 handleRequest.
    """
    envelope = _parse_xml(body, max_bytes)
    if envelope.tag != _ENVELOPE:
        raise EnvelopeError(f"root element is {envelope.tag}, not a SOAP 1.1 Envelope")
    soap_body = _child(envelope, _BODY)
    if soap_body is None:
        raise EnvelopeError("the SOAP Envelope has no Body")
    wrapper = _find_operation(soap_body)
    parts = _parts_by_name(wrapper)
    flavour = _flavour(parts, (envelope, soap_body, wrapper), flavour_hint)
    decoder = _EncodedDecoder(soap_body) if flavour == "encoded" else _LiteralDecoder()
    return PaintRequest(
        context_id=decoder.string_part(parts.get("contextId"), "contextId"),
        class_name=decoder.string_part(parts.get("className"), "className"),
        process_name=decoder.string_part(parts.get("processName"), "processName"),
        entity_data=decoder.map_part(parts.get("entityData"), "entityData"),
        process_data=decoder.map_part(parts.get("processData"), "processData"),
        flavour=flavour,
    )


def encode_result(result: Mapping[str, Any], flavour: Flavour = "encoded") -> bytes:
    """A complete handleRequestResponse envelope whose Result carries ``result``, in dict order.

    Encoded: an Apache ``ns2:Map``; nested mappings are maps (an empty one an empty
    array, which PHP decodes to ``array()`` rather than NULL), lists and tuples SOAP-ENC
    arrays, ints ``xsd:int`` (``xsd:long`` beyond 32 bits), bools ``xsd:boolean``, None
    ``xsi:nil`` and anything else ``xsd:string``. Literal: a paintArray with no whitespace
    between elements; every scalar is a ``str``, lists are ``arr`` keyed "0", "1", ...
    """
    if flavour not in ("encoded", "literal"):
        raise ValueError(f"flavour must be encoded or literal, not {flavour!r}")
    nsmap = _ENCODED_NSMAP if flavour == "encoded" else _LITERAL_NSMAP
    envelope = etree.Element(_ENVELOPE, nsmap=nsmap)
    response = etree.SubElement(etree.SubElement(envelope, _BODY), f"{{{PAINT_NS}}}handleRequestResponse")
    result_element = etree.SubElement(response, "Result")
    if flavour == "encoded":
        envelope.set(_ENCODING_STYLE, SOAP_ENC_NS)
        _write_encoded(result_element, result)
    else:
        _write_paint_array(result_element, result.items())
    return _XML_DECLARATION + etree.tostring(envelope, encoding="UTF-8", xml_declaration=False)


def encode_fault(code: str, message: str) -> bytes:
    """A SOAP 1.1 Fault envelope; ``code`` is ``Client`` or ``Server`` (with or without ``SOAP-ENV:``)."""
    local_code = code.removeprefix("SOAP-ENV:")
    if local_code not in ("Client", "Server"):
        raise ValueError(f"fault code must be Client or Server, not {code!r}")
    envelope = etree.Element(_ENVELOPE, nsmap={"SOAP-ENV": SOAP_ENV_NS})
    fault = etree.SubElement(etree.SubElement(envelope, _BODY), f"{{{SOAP_ENV_NS}}}Fault")
    etree.SubElement(fault, "faultcode").text = f"SOAP-ENV:{local_code}"
    _set_text(etree.SubElement(fault, "faultstring"), message)
    return _XML_DECLARATION + etree.tostring(envelope, encoding="UTF-8", xml_declaration=False)


# -- reading ----------------------------------------------------------------------------


def _parse_xml(body: bytes, max_bytes: int) -> etree._Element:
    if len(body) > max_bytes:
        raise BodyTooLarge(len(body), max_bytes)
    # Checked before parsing as well as after: libxml2 fails on a billion-laughs DTD
    # with a generic syntax error, and the refusal should say why.
    if _prolog_has_doctype(_as_text(body)):
        raise ForbiddenXML("a DOCTYPE is not allowed in a SOAP message")
    parser = etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )
    try:
        root = etree.fromstring(body, parser)
    except etree.XMLSyntaxError as exc:
        raise EnvelopeError(f"the body is not well-formed XML: {exc}") from exc
    docinfo = root.getroottree().docinfo
    # lxml-stubs lack DocInfo.doctype.
    if docinfo.doctype or docinfo.internalDTD is not None or docinfo.externalDTD is not None:  # type: ignore[union-attr]
        raise ForbiddenXML("a DOCTYPE is not allowed in a SOAP message")
    return root


def _prolog_has_doctype(text: str) -> bool:
    """Whether a DOCTYPE follows the optional byte-order mark, XML declaration, comments and PIs."""
    position = 0
    while (found := _NOT_SPACE.search(text, position)) is not None:
        position = found.start()
        for opening, closing in _PROLOG_SKIPPED:
            if text.startswith(opening, position):
                end = text.find(closing, position + len(opening))
                if end < 0:
                    return False
                position = end + len(closing)
                break
        else:
            return text.startswith("<!DOCTYPE", position)
    return False


def _as_text(body: bytes) -> str:
    """The body as text good enough to find a DOCTYPE in: markup is ASCII in ASCII-based encodings."""
    if body.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return body.decode("utf-16", errors="replace")
    if body.startswith(b"<\0"):
        return body.decode("utf-16-le", errors="replace")
    if body.startswith(b"\0<"):
        return body.decode("utf-16-be", errors="replace")
    return body.decode("latin-1")


# The wrapper's namespaces: the WSDLs' soap:body namespace, the literal WSDL's targetNamespace
# (node-soap builds the wrapper from it) and none. Matched by local name, as PHP's SoapServer does.
_OPERATION_TAGS = (f"{{{PAINT_NS}}}handleRequest", f"{{{PAINT_TYPES_NS}}}handleRequest", "handleRequest")


def _find_operation(soap_body: etree._Element) -> etree._Element:
    children = list(soap_body)
    for child in children:
        if child.tag in _OPERATION_TAGS:
            return child
    found = children[0].tag if children else "nothing"
    raise EnvelopeError(f"the SOAP Body holds {found}, not a {{{PAINT_NS}}}handleRequest")


def _parts_by_name(wrapper: etree._Element) -> dict[str, etree._Element]:
    """The part accessors by local name; a child with an unknown name takes the part at its position."""
    parts: dict[str, etree._Element] = {}
    unnamed: list[tuple[int, etree._Element]] = []
    for position, child in enumerate(wrapper):
        name = etree.QName(child).localname
        if name not in PART_NAMES:
            unnamed.append((position, child))
        elif name in parts:
            raise PaintDecodeError(name, "the part is given twice")
        else:
            parts[name] = child
    for position, child in unnamed:
        if position < len(PART_NAMES):
            parts.setdefault(PART_NAMES[position], child)
    return parts


def _flavour(parts: dict[str, etree._Element], containers: tuple[etree._Element, ...],
             hint: Flavour | None = None) -> Flavour:
    """Literal if a map part holds ``pairs``, encoded if it holds ``item``s; else literal when ``hint`` (what
    the SOAPAction says) is, then judged by SOAP-encoding hints, and failing those by ``hint``.

    The literal SOAPAction goes before the hints: suds puts ``encodingStyle`` on every Envelope,
    literal or not.
    """
    for name in ("entityData", "processData"):
        part = parts.get(name)
        if part is None:
            continue
        if _child_named(part, "pairs") is not None:
            return "literal"
        if len(part) or part.get("href") is not None:
            return "encoded"
    if hint == "literal":
        return "literal"
    encoded_hints = any(node.get(_ENCODING_STYLE) is not None for node in containers) or any(
        part.get(_XSI_TYPE) is not None for part in parts.values()
    )
    return "encoded" if encoded_hints else (hint or "literal")


class _EncodedDecoder:
    """Decodes SOAP-encoded values: Apache maps, SOAP-ENC arrays, structs, scalars and multi-refs."""

    # Multi-refs let a small document name one subtree many times; this caps the decoded
    # size at a small multiple of the document instead of letting it grow exponentially.
    _EXPANSION_LIMIT = 4

    def __init__(self, soap_body: etree._Element) -> None:
        self._by_id: dict[str, etree._Element] = {}
        count = 0
        for element in soap_body.iter():
            count += 1
            ident = element.get("id")
            if ident is not None:
                self._by_id.setdefault(ident, element)
        self._budget = self._EXPANSION_LIMIT * count
        self._open_refs: set[str] = set()

    def string_part(self, element: etree._Element | None, path: str) -> str | None:
        value = None if element is None else self.value(element, path)
        if value is None:
            return None
        if not isinstance(value, str):
            raise PaintDecodeError(path, "expected a string")
        return value.strip() or None

    def map_part(self, element: etree._Element | None, path: str) -> dict[str, Any]:
        value = None if element is None else self.value(element, path)
        if isinstance(value, dict):
            return value
        if value is None or value == [] or (isinstance(value, str) and not value.strip()):
            return {}
        raise PaintDecodeError(path, "expected a map")

    def value(self, element: etree._Element, path: str) -> Any:
        self._budget -= 1
        if self._budget < 0:
            raise PaintDecodeError(path, "multi-references expand the document too far")
        ref = element.get("href")
        if ref is None:
            return self._inline_value(element, path)
        ident = ref.removeprefix("#")
        target = self._by_id.get(ident)
        if not ref.startswith("#") or target is None:
            raise PaintDecodeError(path, f"href {ref!r} names no element of the Body")
        if ident in self._open_refs:
            raise PaintDecodeError(path, f"href {ref!r} is part of a reference cycle")
        self._open_refs.add(ident)
        try:
            return self.value(target, path)
        finally:
            self._open_refs.discard(ident)

    def _inline_value(self, element: etree._Element, path: str) -> Any:
        if _is_nil(element):
            return None
        children = list(element)
        declared = _local_type(element)
        is_array = declared == "Array" or element.get(_ARRAY_TYPE) is not None
        if not children:
            if declared == "Map":
                return {}
            if is_array:
                return []
            return element.text or ""
        all_items = all(etree.QName(child).localname == "item" for child in children)
        if all_items and any(self._has_key(item) for item in children):
            return self._map(children, path)
        if all_items or is_array:
            return [self.value(item, f"{path}[{index}]") for index, item in enumerate(children)]
        # A SOAP-ENC struct: accessor names are the keys.
        names = [etree.QName(child).localname for child in children]
        return _decode_base64_keys(
            ((name, self.value(child, f"{path}.{name}")) for name, child in zip(names, children, strict=False)), path
        )

    def _has_key(self, item: etree._Element) -> bool:
        return _child_named(self._item(item), "key") is not None

    def _item(self, item: etree._Element) -> etree._Element:
        """A map item, or the element its href names (items themselves are never nil or scalar)."""
        ref = item.get("href")
        return item if ref is None else self._by_id.get(ref.removeprefix("#"), item)

    def _map(self, items: list[etree._Element], path: str) -> dict[str, Any]:
        pairs = []
        for index, item in enumerate(items):
            target = self._item(item)
            key_element = _child_named(target, "key")
            if key_element is None:
                raise PaintDecodeError(f"{path}[{index}]", "a map item has no key")
            key = self.value(key_element, f"{path}[{index}].key")
            if not isinstance(key, str):
                raise PaintDecodeError(f"{path}[{index}].key", "a map key must be a scalar")
            key = key.strip()
            value_element = _child_named(target, "value")
            value = None if value_element is None else self.value(value_element, f"{path}.{key}")
            pairs.append((key, value))
        return _decode_base64_keys(pairs, path)


class _LiteralDecoder:
    """Decodes rpc/literal values: plain strings and paintArray pairs."""

    def string_part(self, element: etree._Element | None, path: str) -> str | None:
        if element is None or _is_nil(element):
            return None
        if len(element):
            raise PaintDecodeError(path, "expected a string")
        return (element.text or "").strip() or None

    def map_part(self, element: etree._Element | None, path: str) -> dict[str, Any]:
        if element is None or _is_nil(element):
            return {}
        return self._paint_array(element, path)

    def _paint_array(self, element: etree._Element, path: str) -> dict[str, Any]:
        pairs = []
        for index, pair in enumerate(element):
            if etree.QName(pair).localname != "pairs":
                raise PaintDecodeError(f"{path}[{index}]", f"expected pairs, found {etree.QName(pair).localname}")
            key_element = _child_named(pair, "key")
            if key_element is None or len(key_element):
                raise PaintDecodeError(f"{path}[{index}]", "a pair needs a string key")
            key = (key_element.text or "").strip()
            pairs.append((key, self._pair_value(_child_named(pair, "value"), f"{path}.{key}")))
        return _decode_base64_keys(pairs, path)

    def _pair_value(self, element: etree._Element | None, path: str) -> Any:
        if element is None or _is_nil(element):
            return None
        text = _child_named(element, "str")
        if text is not None:
            return None if _is_nil(text) else text.text or ""
        nested = _child_named(element, "arr")
        if nested is not None:
            return None if _is_nil(nested) else self._paint_array(nested, path)
        return None


def _decode_base64_keys(pairs: Iterable[tuple[str, Any]], path: str) -> dict[str, Any]:
    """Build a dict from (key, value) pairs, decoding ``<name>_base64`` entries into ``<name>``.

    A later key wins over an earlier one, as in PHP; that includes ``name`` against
    ``name_base64``.
    """
    decoded: dict[str, Any] = {}
    for key, value in pairs:
        if key.endswith(BASE64_SUFFIX) and key != BASE64_SUFFIX:
            value = _from_base64(value, f"{path}.{key}")
            key = key.removesuffix(BASE64_SUFFIX)
        decoded[key] = value
    return decoded


def _from_base64(value: Any, path: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise PaintDecodeError(path, "a _base64 value must be a string")
    try:
        return base64.b64decode("".join(value.split()), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise PaintDecodeError(path, f"not base64 of UTF-8 text ({exc})") from exc


def _child(element: etree._Element, tag: str) -> etree._Element | None:
    return next((child for child in element if child.tag == tag), None)


def _child_named(element: etree._Element, localname: str) -> etree._Element | None:
    """The first child with this local name, in no namespace or any."""
    return next((child for child in element if etree.QName(child).localname == localname), None)


def _is_nil(element: etree._Element) -> bool:
    return any((element.get(name) or "").strip() in ("true", "1") for name in _NIL_ATTRIBUTES)


def _local_type(element: etree._Element) -> str:
    """The local part of the element's xsi:type (``Map`` for ``ns2:Map``), or ""."""
    return (element.get(_XSI_TYPE) or "").rpartition(":")[2]


# -- writing ----------------------------------------------------------------------------


def _write_encoded(element: etree._Element, value: Any) -> None:
    if value is None:
        element.set(f"{{{XSI_NS}}}nil", "true")
    elif isinstance(value, Mapping) and value:
        element.set(_XSI_TYPE, "ns2:Map")
        for key, item_value in value.items():
            item = etree.SubElement(element, "item")
            key_element = etree.SubElement(item, "key")
            key_element.set(_XSI_TYPE, "xsd:string")
            _set_text(key_element, str(key))
            _write_encoded(etree.SubElement(item, "value"), item_value)
    elif isinstance(value, (Mapping, list, tuple)):
        # An empty mapping is written as an empty array, as PHP's own SoapServer does:
        # PHP clients decode an empty ns2:Map to NULL but an empty array to array().
        items = () if isinstance(value, Mapping) else value
        element.set(_XSI_TYPE, "SOAP-ENC:Array")
        element.set(_ARRAY_TYPE, f"xsd:anyType[{len(items)}]")
        for item_value in items:
            _write_encoded(etree.SubElement(element, "item"), item_value)
    else:
        element.set(_XSI_TYPE, _xsd_type(value))
        _set_text(element, _scalar_text(value))


def _write_paint_array(element: etree._Element, items: Iterable[tuple[Any, Any]]) -> None:
    for key, value in items:
        pair = etree.SubElement(element, f"{{{PAINT_TYPES_NS}}}pairs")
        _set_text(etree.SubElement(pair, f"{{{PAINT_TYPES_NS}}}key"), str(key))
        holder = etree.SubElement(pair, f"{{{PAINT_TYPES_NS}}}value")
        if isinstance(value, Mapping):
            _write_paint_array(etree.SubElement(holder, f"{{{PAINT_TYPES_NS}}}arr"), value.items())
        elif isinstance(value, (list, tuple)):
            _write_paint_array(etree.SubElement(holder, f"{{{PAINT_TYPES_NS}}}arr"), enumerate(value))
        else:
            text = etree.SubElement(holder, f"{{{PAINT_TYPES_NS}}}str")
            if value is None:
                text.set(f"{{{XSI_NS}}}nil", "true")
            else:
                _set_text(text, _scalar_text(value))


def _xsd_type(value: Any) -> str:
    if isinstance(value, bool):
        return "xsd:boolean"
    if isinstance(value, int):
        return "xsd:int" if value in _INT32 else "xsd:long"
    return "xsd:string"


def _scalar_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (bytes, bytearray)):
        raise TypeError("bytes cannot go into a SOAP response; decode or base64-encode them first")
    return str(value)


def _set_text(element: etree._Element, text: str) -> None:
    try:
        element.text = text
    except (ValueError, UnicodeEncodeError):
        # XML 1.0 cannot carry control characters or lone surrogates at all; a response
        # must stay well-formed, so they become U+FFFD.
        element.text = _NOT_XML_CHAR.sub("\ufffd", text)
