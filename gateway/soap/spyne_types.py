"""Spyne's API as gateway/soap uses it, with types: the one module that imports Spyne.

Spyne 2.14 ships no type information. For the type checker this module declares the
classes, the decorator and the constant the typed service uses, with the signatures they
have at run time; at run time it hands out Spyne's own objects, so nothing that reaches
the wire passes through it. Before it imports Spyne it installs ``spyne_compat``, the
bridge that lets Spyne 2.14 import on Python 3.12 and later.

The mypy exceptions it needs, all of them here:

- The declarations are not checked against Spyne (there is nothing to check them
  against): they cover only what gateway/soap uses, and the service's tests exercise each.
- A simple type called with attributes (``Unicode(doc=...)``) returns a customised copy
  of the class, not an instance: ``SimpleModel.__new__`` is declared to return a class
  (``type: ignore[misc]``, mypy wants ``__new__`` to return an instance).
- A record type's ``_type_info`` is a list of (name, type) pairs where the type is
  declared and a mapping once Spyne made the class: it is declared ``Any``, and read
  through ``fields_of``.
- ``rpc`` turns a method into the description of an operation, which Spyne calls with
  the request's context in place of ``self``: it is declared to make a static method.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

__all__ = [
    "DEFAULT_NS", "Application", "Array", "Boolean", "ComplexModel", "DateTime", "Double", "Fault", "Integer",
    "MethodContext", "ModelBase", "ServiceBase", "SimpleModel", "Soap11", "Unicode", "WsgiApplication", "fields_of",
    "rpc",
]

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence
    from typing import ClassVar, ParamSpec, TypeVar

    from _typeshed.wsgi import StartResponse, WSGIEnvironment
    from lxml import etree

    _P = ParamSpec("_P")
    _R = TypeVar("_R")
    _S = TypeVar("_S", bound="SimpleModel")
    _C = TypeVar("_C", bound="ComplexModel")

    class ModelBase:
        """A Spyne type: a class describing one XML Schema type."""

    class SimpleModel(ModelBase):
        """A Spyne simple type; called with attributes (doc, min_occurs, ...), a customised copy of it."""

        def __new__(cls: type[_S], **attributes: Any) -> type[_S]: ...  # type: ignore[misc]

    class Unicode(SimpleModel):
        """xs:string."""

    class Integer(SimpleModel):
        """xs:integer."""

    class Double(SimpleModel):
        """xs:double."""

    class Boolean(SimpleModel):
        """xs:boolean."""

    class DateTime(SimpleModel):
        """xs:dateTime."""

    class DEFAULT_NS:
        """As a type's ``__namespace__``: the namespace of the application that serves it."""

    class ComplexModel(ModelBase):
        """A Spyne record type; its instances are records."""

        __namespace__: ClassVar[str | type[DEFAULT_NS]]
        _type_info: ClassVar[Any]

        def __init__(self, **values: Any) -> None: ...

        @classmethod
        def customize(cls: type[_C], **attributes: Any) -> type[_C]: ...

        @classmethod
        def get_type_name(cls) -> str: ...

    def Array(serializer: type[ModelBase], **attributes: Any) -> type[ComplexModel]:
        """The type of a wrapped sequence of ``serializer`` records."""

    class ServiceBase:
        """A group of operations (methods decorated with ``rpc``)."""

    def rpc(*params: type[ModelBase], **options: Any) -> Callable[[Callable[_P, _R]], staticmethod[_P, _R]]:
        """Declare a method an operation taking ``params``; options name arguments and the result."""

    class Fault(Exception):
        """A SOAP Fault, answered to the caller."""

        def __init__(self, faultcode: str = "Server", faultstring: str = "") -> None: ...

    class MethodDescriptor:
        """What Spyne knows of the operation being called."""

        out_message: type[ComplexModel]

    class MethodContext:
        """One call of an operation, as Spyne hands it through."""

        app: Application
        descriptor: MethodDescriptor
        in_document: tuple[etree._Element, object]
        out_string: list[bytes]

    class Soap11:
        """SOAP 1.1 as a Spyne protocol."""

        def __init__(self, validator: str | None = None) -> None: ...

        def create_in_document(self, ctx: MethodContext, charset: str | None = None) -> None: ...

    class Application:
        """Spyne's application: services, their namespace, the protocols in and out."""

        def __init__(self, services: Sequence[type[ServiceBase]], tns: str, name: str | None = None,
                     in_protocol: Soap11 | None = None, out_protocol: Soap11 | None = None) -> None: ...

        def call_wrapper(self, ctx: MethodContext) -> Any: ...

    class Wsdl11:
        """The application's WSDL."""

        def build_interface_document(self, url: str) -> None: ...

        def get_interface_document(self) -> bytes: ...

    class InterfaceDocuments:
        """The application's interface documents."""

        wsdl11: Wsdl11

    class WsgiApplication:
        """An Application as a WSGI application."""

        doc: InterfaceDocuments

        def __init__(self, app: Application, max_content_length: int = ...) -> None: ...

        def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]: ...
else:
    from gateway.soap import spyne_compat

    spyne_compat.install()  # before Spyne's first import: its vendored six needs the bridge on 3.12+

    from spyne import Application, ComplexModel, Fault, MethodContext, ServiceBase, rpc
    from spyne.const.xml import DEFAULT_NS
    from spyne.model import ModelBase, SimpleModel
    from spyne.model.complex import Array
    from spyne.model.primitive import Boolean, DateTime, Double, Integer, Unicode
    from spyne.protocol.soap import Soap11
    from spyne.server.wsgi import WsgiApplication


def fields_of(model: type[ComplexModel]) -> Mapping[str, type[ModelBase]]:
    """A record type's fields, by name, in order."""
    fields: Mapping[str, type[ModelBase]] = model._type_info
    return fields
