"""The ``search``/``filter`` expressions of ``GET /api/v1/users`` and ``/api/v1/logs``, parsed.

Rules from the OpenAPI spec's ``listUsers`` parameters:

* ``search``: any ``profile.*`` attribute and the top-level ``id``, ``status``, ``created``,
  ``activated``, ``statusChanged``, ``lastUpdated`` and ``type.id``; operators ``eq``, ``sw``,
  ``co`` (``co`` only on ``profile.firstName``, ``lastName``, ``email`` and ``login``) and the
  orderings ``lt``/``le``/``gt``/``ge`` (the spec's own ``status lt "STAGED" or status gt
  "STAGED"`` idiom); ``and``, ``or`` and parentheses; string values compared case-insensitively.
  ``credentials.provider.type`` is not a searchable property in the spec, so it is refused.
* ``filter``: only ``status``, ``lastUpdated``, ``id``, ``profile.login``, ``profile.email``,
  ``profile.firstName`` and ``profile.lastName``; only ``eq``, except ``lastUpdated`` which also
  takes ``gt``/``ge``/``lt``/``le``; ``and``/``or``; values compared case-sensitively.

* ``logs`` (the System Log ``filter``): any attribute under the ``LogEvent`` top-level names
  (``eventType``, ``outcome.result``, ``actor.id``, ``target.alternateId``, ``published``, ...);
  ``eq``, ``sw``, ``co`` and the orderings (dates on ``published``); values case-sensitive.

Operators are case-insensitive in all modes; property names are case-sensitive. ``not`` and ``ne`` are
refused (Okta supports neither). Array attributes match when any element does (SCIM).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from emulators.okta.errors import invalid_search

__all__ = ["Predicate", "parse"]

Mode = Literal["search", "filter", "logs"]
Predicate = Callable[[Callable[[str], Any]], bool]

_TOKEN = re.compile(r'\s*(?:(\()|(\))|"((?:[^"\\]|\\.)*)"|([^\s()"]+))')
_TOP_LEVEL = frozenset(
    {"id", "status", "created", "activated", "statusChanged", "lastUpdated", "type.id"}
)
_DATES = frozenset({"created", "activated", "statusChanged", "lastUpdated", "published"})
_LOG_ROOTS = frozenset(
    {
        "actor",
        "authenticationContext",
        "client",
        "debugContext",
        "displayMessage",
        "eventType",
        "legacyEventType",
        "outcome",
        "published",
        "request",
        "securityContext",
        "severity",
        "target",
        "transaction",
        "uuid",
        "version",
    }
)
_CONTAINS_OK = frozenset(
    {"profile.firstName", "profile.lastName", "profile.email", "profile.login"}
)
_FILTERABLE = frozenset(
    {
        "status",
        "lastUpdated",
        "id",
        "profile.login",
        "profile.email",
        "profile.firstName",
        "profile.lastName",
    }
)
_ORDERINGS = frozenset({"lt", "le", "gt", "ge"})
_OPERATORS = frozenset({"eq", "sw", "co"}) | _ORDERINGS


@dataclass(frozen=True, slots=True)
class _Token:
    """A lexical token: ``(``, ``)``, a quoted string, or a bare word."""

    kind: Literal["open", "close", "string", "word"]
    text: str


def _tokens(expression: str) -> list[_Token]:
    """Split an expression into tokens; refuse anything unquoted that is not a word."""
    found: list[_Token] = []
    position = 0
    expression = expression.rstrip()
    while position < len(expression):
        match = _TOKEN.match(expression, position)
        if match is None or match.end() == position:
            raise invalid_search("unbalanced quotes in the expression")
        position = match.end()
        if match.group(1):
            found.append(_Token("open", "("))
        elif match.group(2):
            found.append(_Token("close", ")"))
        elif match.group(3) is not None:
            found.append(_Token("string", re.sub(r"\\(.)", r"\1", match.group(3))))
        else:
            found.append(_Token("word", match.group(4)))
    return found


def _as_date(value: str) -> datetime | None:
    """Parse an ISO-8601 timestamp as Okta writes them (``...000Z``), else None."""
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _compare(actual: Any, operator: str, expected: str, attribute: str, fold: bool) -> bool:
    """Apply one operator to one attribute value (arrays: any element)."""
    if isinstance(actual, list):
        return any(_compare(item, operator, expected, attribute, fold) for item in actual)
    if actual is None:
        return False
    if isinstance(actual, bool):
        actual = "true" if actual else "false"
    left, right = str(actual), expected
    if attribute in _DATES and operator in _ORDERINGS:
        left_date, right_date = _as_date(left), _as_date(right)
        if left_date is None or right_date is None:
            return False
        return {
            "lt": left_date < right_date,
            "le": left_date <= right_date,
            "gt": left_date > right_date,
            "ge": left_date >= right_date,
        }[operator]
    if fold:
        left, right = left.casefold(), right.casefold()
    return {
        "eq": left == right,
        "sw": left.startswith(right),
        "co": right in left,
        "lt": left < right,
        "le": left <= right,
        "gt": left > right,
        "ge": left >= right,
    }[operator]


class _Parser:
    """Recursive descent: ``or`` binds looser than ``and``; parentheses group."""

    def __init__(self, tokens: list[_Token], mode: Mode) -> None:
        self.tokens = tokens
        self.mode = mode
        self.position = 0

    def _peek_word(self) -> str | None:
        """The next token's text, lower-cased, when it is a bare word."""
        if self.position < len(self.tokens) and self.tokens[self.position].kind == "word":
            return self.tokens[self.position].text.lower()
        return None

    def _next(self, what: str) -> _Token:
        """Consume one token or refuse the expression as cut short."""
        if self.position >= len(self.tokens):
            raise invalid_search(f"expected {what} at the end of the expression")
        token = self.tokens[self.position]
        self.position += 1
        return token

    def parse(self) -> Predicate:
        """The whole expression; trailing tokens are an error."""
        if not self.tokens:
            raise invalid_search("the expression is empty")
        predicate = self._or()
        if self.position != len(self.tokens):
            raise invalid_search(f"unexpected {self.tokens[self.position].text!r}")
        return predicate

    def _or(self) -> Predicate:
        """``a or b or ...``."""
        parts = [self._and()]
        while self._peek_word() == "or":
            self.position += 1
            parts.append(self._and())
        return parts[0] if len(parts) == 1 else (lambda get: any(p(get) for p in parts))

    def _and(self) -> Predicate:
        """``a and b and ...``."""
        parts = [self._term()]
        while self._peek_word() == "and":
            self.position += 1
            parts.append(self._term())
        return parts[0] if len(parts) == 1 else (lambda get: all(p(get) for p in parts))

    def _term(self) -> Predicate:
        """A parenthesised expression or ``attribute operator "value"``."""
        token = self._next("a condition")
        if token.kind == "open":
            inner = self._or()
            if self._next("')'").kind != "close":
                raise invalid_search("missing ')'")
            return inner
        if token.kind != "word":
            raise invalid_search(f"expected an attribute name, got {token.text!r}")
        attribute = token.text
        operator = self._next("an operator").text.lower()
        if operator not in _OPERATORS:
            raise invalid_search(f"unsupported operator {operator!r}")
        value = self._next("a value")
        if value.kind == "word" and value.text.lower() in ("true", "false"):
            expected = value.text.lower()
        elif value.kind in ("string", "word") and (
            value.kind == "string" or _is_number(value.text)
        ):
            expected = value.text
        else:
            raise invalid_search(f"expected a quoted value after {attribute} {operator}")
        self._check(attribute, operator)
        fold = self.mode == "search"
        return lambda get: _compare(get(attribute), operator, expected, attribute, fold)

    def _check(self, attribute: str, operator: str) -> None:
        """Refuse what Okta refuses for this mode."""
        if self.mode == "logs":
            if attribute.split(".", 1)[0] not in _LOG_ROOTS:
                raise invalid_search(f"{attribute} is not a property of a log event")
            return
        if self.mode == "filter":
            if attribute not in _FILTERABLE:
                raise invalid_search(f"{attribute} cannot be used in a filter")
            if operator != "eq" and not (attribute == "lastUpdated" and operator in _ORDERINGS):
                raise invalid_search(f"operator {operator} is not supported on {attribute}")
            return
        if attribute not in _TOP_LEVEL and not (
            attribute.startswith("profile.") and len(attribute) > len("profile.")
        ):
            raise invalid_search(f"{attribute} is not a searchable property")
        if operator == "co" and attribute not in _CONTAINS_OK:
            raise invalid_search(f"operator co is not supported on {attribute}")


def _is_number(text: str) -> bool:
    """Unquoted numbers are allowed as values (numeric custom attributes)."""
    return re.fullmatch(r"-?\d+(\.\d+)?", text) is not None


def parse(expression: str, mode: Mode) -> Predicate:
    """Compile an expression for ``mode``; raise OktaApiError (400 E0000031) if invalid."""
    return _Parser(_tokens(expression), mode).parse()
