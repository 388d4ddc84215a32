"""The ``--where`` filter language: a tokenizer and a recursive-descent parser.

    metrics.score.accuracy > 0.9 and (params.lr < 0.01 or not pipeline = 'digits')

Grammar (keywords are case-insensitive)::

    expr       := conjunct ('or' conjunct)*
    conjunct   := negation ('and' negation)*
    negation   := 'not' negation | '(' expr ')' | comparison
    comparison := field op literal | field ['not'] 'in' '(' literal (',' literal)* ')'
                | field ['not'] 'like' string
    op         := '=' | '==' | '!=' | '<>' | '<' | '<=' | '>' | '>='
    field      := name ('.' name)*        (a name is [A-Za-z_][\\w-]* or `back-quoted`)
    literal    := number | 'string' | "string" | true | false | null

Limits. An expression is at most `MAX_LENGTH` characters, `MAX_DEPTH` nested
parentheses or ``not``s, `MAX_TERMS` comparisons and `MAX_VALUES` values in one ``in``
list, and its integers fit in 64 bits: past these a query would exhaust Python's
recursion limit or SQLite's expression depth ("Expression tree is too large") instead
of answering, so they are malformed input, reported with a caret like any other.

The parser only builds a small tree (`Compare`, `And`, `Or`, `Not`); `store.filters`
turns that tree into SQLAlchemy expressions with bound parameters, so nothing a user
types is ever part of the SQL text. A hand-written parser is ~200 lines and gives
errors that point at the column; a parsing library would add a dependency for less.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Union

from flowopt.errors import StoreError

OPERATORS = ("==", "!=", "<>", "<=", ">=", "=", "<", ">")
MAX_LENGTH = 10_000
MAX_DEPTH = 32
MAX_TERMS = 200
MAX_VALUES = 1_000
_INT64 = (-2 ** 63, 2 ** 63 - 1)
KEYWORDS = {"and", "or", "not", "in", "like", "true", "false", "null"}
_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<number>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?(?![\w.]))
  | (?P<string>'(?:[^'\\]|\\.|'')*'|"(?:[^"\\]|\\.)*")
  | (?P<quoted>`[^`]*`)
  | (?P<name>[A-Za-z_][\w-]*)
  | (?P<op>==|!=|<>|<=|>=|=|<|>)
  | (?P<punct>[().,])
""", re.VERBOSE)


class WhereError(StoreError):
    """A malformed filter expression; the hint shows the expression with a caret.
    `option` names where the text came from (``--where`` or ``--order-by``)."""

    def __init__(self, text: str, position: int, message: str, option: str = "--where"):
        self.text, self.position, self.option = text, position, option
        start = max(0, position - 40)  # a long expression is shown around the column only
        shown = ("…" if start else "") + text[start:position + 40] + \
            ("…" if len(text) > position + 40 else "")
        caret = " " * (position - start + (1 if start else 0)) + "^"
        super().__init__(f"malformed {option} at column {position + 1}: {message}",
                         hint=f"\n  {shown}\n  {caret}")


@dataclass(frozen=True)
class Token:
    kind: str  # name, quoted, number, string, op, punct, keyword, end
    text: str
    position: int
    value: Any = None


@dataclass(frozen=True)
class Field:
    path: tuple[str, ...]
    position: int

    @property
    def name(self) -> str:
        return ".".join(self.path)


@dataclass(frozen=True)
class Literal:
    value: Any  # float | int | str | bool | None
    position: int


@dataclass(frozen=True)
class Compare:
    field: Field
    op: str  # =, !=, <, <=, >, >=, in, not in, like, not like
    values: tuple[Literal, ...]  # one, except for `in`
    position: int


@dataclass(frozen=True)
class And:
    items: tuple["Expr", ...]


@dataclass(frozen=True)
class Or:
    items: tuple["Expr", ...]


@dataclass(frozen=True)
class Not:
    item: "Expr"


Expr = Union[Compare, And, Or, Not]


def _unquote(text: str) -> str:
    body, quote = text[1:-1], text[0]
    if quote == "'":
        body = body.replace("''", "'")
    return re.sub(r"\\(.)", r"\1", body)


def tokenize(text: str) -> list[Token]:
    if len(text) > MAX_LENGTH:
        raise WhereError(text[:60] + "…", 0, f"the expression is longer than {MAX_LENGTH:,} "
                                            "characters")
    tokens: list[Token] = []
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            if text[position] in "'\"":
                raise WhereError(text, position, "unterminated string")
            raise WhereError(text, position, f"unexpected character {text[position]!r}")
        kind, lexeme = match.lastgroup or "", match.group()
        if kind == "number":
            value: Any = float(lexeme) if any(c in lexeme for c in ".eE") else int(lexeme)
            if isinstance(value, int) and not _INT64[0] <= value <= _INT64[1]:
                raise WhereError(text, position, "an integer beyond 64 bits")
            if isinstance(value, float) and value in (float("inf"), float("-inf")):
                raise WhereError(text, position, "a number too large for a float")
            tokens.append(Token("number", lexeme, position, value))
        elif kind == "string":
            tokens.append(Token("string", lexeme, position, _unquote(lexeme)))
        elif kind == "quoted":
            tokens.append(Token("name", lexeme, position, lexeme[1:-1]))
        elif kind == "name" and lexeme.lower() in KEYWORDS:
            tokens.append(Token("keyword", lexeme, position, lexeme.lower()))
        elif kind == "name":
            tokens.append(Token("name", lexeme, position, lexeme))
        elif kind != "space":
            tokens.append(Token(kind, lexeme, position, lexeme))
        position = match.end()
    tokens.append(Token("end", "", len(text)))
    return tokens


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.tokens = tokenize(text)
        self.index = 0
        self.depth = 0
        self.terms = 0

    @property
    def token(self) -> Token:
        return self.tokens[self.index]

    def advance(self) -> Token:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def error(self, message: str, token: Token | None = None) -> WhereError:
        token = token or self.token
        found = "the end of the expression" if token.kind == "end" else repr(token.text)
        return WhereError(self.text, token.position, f"{message}, found {found}")

    def keyword(self, word: str) -> bool:
        if self.token.kind == "keyword" and self.token.value == word:
            self.index += 1
            return True
        return False

    def punct(self, char: str) -> bool:
        if self.token.kind == "punct" and self.token.value == char:
            self.index += 1
            return True
        return False

    def parse(self) -> Expr:
        if self.token.kind == "end":
            raise WhereError(self.text, 0, "the expression is empty")
        expr = self.disjunction()
        if self.token.kind != "end":
            raise self.error("expected 'and', 'or' or the end")
        return expr

    def disjunction(self) -> Expr:
        items = [self.conjunction()]
        while self.keyword("or"):
            items.append(self.conjunction())
        return items[0] if len(items) == 1 else Or(tuple(items))

    def conjunction(self) -> Expr:
        items = [self.negation()]
        while self.keyword("and"):
            items.append(self.negation())
        return items[0] if len(items) == 1 else And(tuple(items))

    def negation(self) -> Expr:
        start = self.token
        if self.keyword("not"):
            self.enter(start)
            item = self.negation()
            self.depth -= 1
            return Not(item)
        if self.punct("("):
            self.enter(start)
            expr = self.disjunction()
            if not self.punct(")"):
                raise self.error("expected ')'")
            self.depth -= 1
            return expr
        self.terms += 1
        if self.terms > MAX_TERMS:
            raise WhereError(self.text, start.position,
                             f"more than {MAX_TERMS} comparisons in one expression")
        return self.comparison()

    def enter(self, token: Token) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise WhereError(self.text, token.position,
                             f"more than {MAX_DEPTH} nested parentheses or 'not's")

    def field(self) -> Field:
        start = self.token
        if start.kind != "name":
            raise self.error("expected a field such as metrics.NAME, params.NAME, pipeline, "
                             "status or started_at")
        path = [self.advance().value]
        while self.punct("."):
            if self.token.kind not in ("name", "keyword", "number"):
                raise self.error("expected a name after '.'")
            path.append(str(self.advance().text).strip("`"))
        return Field(tuple(path), start.position)

    def literal(self) -> Literal:
        token = self.token
        if token.kind in ("number", "string"):
            self.index += 1
            return Literal(token.value, token.position)
        if token.kind == "keyword" and token.value in ("true", "false", "null"):
            self.index += 1
            return Literal({"true": True, "false": False, "null": None}[token.value], token.position)
        raise self.error("expected a number, a 'string', true, false or null")

    def comparison(self) -> Compare:
        field = self.field()
        op_token = self.token
        negated = self.keyword("not")
        if self.keyword("in"):
            if not self.punct("("):
                raise self.error("expected '(' after 'in'")
            values = [self.literal()]
            while self.punct(","):
                if len(values) >= MAX_VALUES:
                    raise self.error(f"more than {MAX_VALUES} values in one 'in' list")
                values.append(self.literal())
            if not self.punct(")"):
                raise self.error("expected ',' or ')'")
            return Compare(field, "not in" if negated else "in", tuple(values), op_token.position)
        if self.keyword("like"):
            pattern = self.literal()
            if not isinstance(pattern.value, str):
                raise WhereError(self.text, pattern.position, "'like' takes a 'string' pattern")
            return Compare(field, "not like" if negated else "like", (pattern,), op_token.position)
        if negated:
            raise self.error("expected 'in' or 'like' after 'not'")
        if op_token.kind != "op":
            raise self.error("expected a comparison (=, !=, <, <=, >, >=, in, like)")
        self.index += 1
        op = {"==": "=", "<>": "!="}.get(op_token.text, op_token.text)
        return Compare(field, op, (self.literal(),), op_token.position)


def parse(text: str) -> Expr:
    """Parse a filter expression into its tree (raises `WhereError`)."""
    return _Parser(text).parse()


def comparisons(expr: Expr) -> list[Compare]:
    """Every comparison in the tree, left to right."""
    if isinstance(expr, Compare):
        return [expr]
    if isinstance(expr, Not):
        return comparisons(expr.item)
    return [c for item in expr.items for c in comparisons(item)]
