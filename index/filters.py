"""User filter expressions, parsed and re-rendered so that nothing a user types reaches Milvus verbatim.

The language is small on purpose::

    expr       := or_expr
    or_expr    := and_expr ("or" and_expr)*
    and_expr   := not_expr ("and" not_expr)*
    not_expr   := "not" not_expr | "(" expr ")" | comparison
    comparison := field OP literal | field ["not"] "in" "[" literal ("," literal)* "]"
    OP         := == | != | < | <= | > | >=
    field      := video_id | duration_s | clip_count | created_at
                | metadata["key"] | meta.key            (key: [A-Za-z0-9_.-]{1,64})
    literal    := "double-quoted string" (escapes: \\" and \\\\) | int | float | true | false

Keywords are case-insensitive. Types are checked against the field:

- `video_id` takes strings; `duration_s` and `created_at` (unix seconds) take numbers; `clip_count` takes ints.
- Metadata values are stored as strings, so metadata compares only with string literals, as strings
  (`<` is lexicographic: "10" < "9"). A number or boolean against metadata is rejected with a hint to quote
  it, rather than silently matching nothing. No field is boolean, so `true`/`false` are always rejected.
- A metadata key that a video lacks never matches, not even `!=` or `not in` (Milvus's null semantics).

The output is fully parenthesised Milvus syntax for one collection: on `clips` (and `segments`) the video-level
fields are the denormalised `video_*` copies (see index.schema), so the same filter works in every search.

The service ANDs conjuncts of its own to the user's filter (`RowScope`: the request's tenant and the model versions
it serves, `visual_model` on videos and clips, `text_model` on segments). They are nodes of the same tree, never
user text: the language has no field that names a tenant or a model version, so no filter can widen them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Union

from vidstrata.spec.validation import METADATA_KEY_RE

MAX_FILTER_LENGTH = 1024
MAX_DEPTH = 16
MAX_LIST_ITEMS = 256
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1

Collection = Literal["videos", "clips", "segments"]
COLLECTIONS: tuple[Collection, ...] = ("videos", "clips", "segments")
Scalar = Union[str, int, float, bool]

# Field name in the filter language -> (type, name in the videos collection, name in the clips collection).
_FIELDS: dict[str, tuple[str, str, str]] = {
    "video_id": ("string", "video_id", "video_id"),
    "duration_s": ("number", "duration_s", "video_duration_s"),
    "clip_count": ("int", "clip_count", "video_clip_count"),
    "created_at": ("number", "created_at", "video_created_at"),
}
_KEYWORDS = {"and", "or", "not", "in", "true", "false"}
_OPERATORS = ("==", "!=", "<=", ">=", "<", ">")


class FilterError(ValueError):
    """The filter is not in the language; `position` is the 0-based character offset of the problem."""

    def __init__(self, message: str, position: int) -> None:
        super().__init__(f"invalid filter at position {position}: {message}")
        self.position = position


@dataclass(frozen=True)
class _Token:
    kind: str  # "op", "punct", "string", "number", "ident", "keyword", "meta", "end"
    text: str
    pos: int
    value: Scalar | None = None


_TOKEN_RE = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<op>==|!=|<=|>=|<|>)
  | (?P<punct>[()\[\],])
  | (?P<number>-?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?)
  | (?P<meta>meta\.[A-Za-z0-9_.-]+)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<quote>")
    """,
    re.VERBOSE,
)


def _read_string(expr: str, start: int) -> tuple[str, int]:
    """Read a double-quoted string starting at its opening quote; returns the value and the end offset."""
    out: list[str] = []
    i = start + 1
    while i < len(expr):
        ch = expr[i]
        if ch == '"':
            return "".join(out), i + 1
        if ch == "\\":
            if i + 1 < len(expr) and expr[i + 1] in '"\\':
                out.append(expr[i + 1])
                i += 2
                continue
            raise FilterError('only \\" and \\\\ escapes are allowed in strings', i)
        if ord(ch) < 0x20 or ord(ch) == 0x7F:
            raise FilterError("control characters are not allowed in strings", i)
        out.append(ch)
        i += 1
    raise FilterError("unterminated string", start)


def _number(text: str, pos: int) -> int | float:
    if re.fullmatch(r"-?\d+", text):
        value = int(text)
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise FilterError(f"integer {text} is out of the 64-bit range", pos)
        return value
    number = float(text)
    if not math.isfinite(number):
        raise FilterError(f"number {text} is not finite", pos)
    return number


def _tokenize(expr: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    while pos < len(expr):
        if expr[pos] == '"':
            value, end = _read_string(expr, pos)
            tokens.append(_Token("string", expr[pos:end], pos, value))
            pos = end
            continue
        match = _TOKEN_RE.match(expr, pos)
        if match is None:
            raise FilterError(f"unexpected character {expr[pos]!r}", pos)
        kind, text = match.lastgroup or "", match.group()
        if kind == "number":
            tokens.append(_Token("number", text, pos, _number(text, pos)))
        elif kind == "ident" and text.lower() in _KEYWORDS:
            lower = text.lower()
            value = {"true": True, "false": False}.get(lower)
            tokens.append(_Token("keyword", lower, pos, value))
        elif kind != "space":
            tokens.append(_Token(kind, text, pos))
        pos = match.end()
    tokens.append(_Token("end", "", len(expr)))
    return tokens


@dataclass(frozen=True)
class _Field:
    name: str  # a key of _FIELDS, or "metadata"
    kind: str  # "string", "number", "int", "metadata"
    key: str = ""

    @property
    def label(self) -> str:
        return f"metadata[{quote_string(self.key)}]" if self.kind == "metadata" else self.name

    def render(self, collection: Collection) -> str:
        if self.kind == "metadata":
            return self.label
        _, videos_name, clips_name = _FIELDS[self.name]
        return videos_name if collection == "videos" else clips_name  # segments carry the clips' copies


@dataclass(frozen=True)
class _Compare:
    field: _Field
    op: str
    value: Scalar

    def render(self, collection: Collection) -> str:
        return f"({self.field.render(collection)} {self.op} {_literal(self.value)})"


@dataclass(frozen=True)
class _In:
    field: _Field
    values: tuple[Scalar, ...]
    negated: bool

    def render(self, collection: Collection) -> str:
        name = self.field.render(collection)
        if self.field.kind == "metadata":
            # Milvus Lite rejects `json["k"] in [...]`, so spell it as a disjunction everywhere.
            inner = " or ".join(f"{name} == {_literal(v)}" for v in self.values)
        else:
            inner = f"{name} in [{', '.join(_literal(v) for v in self.values)}]"
        return f"(not ({inner}))" if self.negated else f"({inner})"


@dataclass(frozen=True)
class _BoolOp:
    op: str  # "and", "or"
    parts: tuple[_Node, ...]

    def render(self, collection: Collection) -> str:
        return "(" + f" {self.op} ".join(p.render(collection) for p in self.parts) + ")"


@dataclass(frozen=True)
class _Not:
    part: _Node

    def render(self, collection: Collection) -> str:
        return f"(not {self.part.render(collection)})"


_Node = Union[_Compare, _In, _BoolOp, _Not]


def quote_string(value: str) -> str:
    """A Milvus double-quoted string literal for any value (backslash and quote escaped)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _literal(value: Scalar) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return quote_string(value)
    return repr(value)  # int, or a finite float: Milvus reads 1.5, 1e+20 and 1e-05


def _describe(token: _Token) -> str:
    return "the end of the filter" if token.kind == "end" else repr(token.text)


class _Parser:
    def __init__(self, tokens: Sequence[_Token]) -> None:
        self.tokens = tokens
        self.i = 0
        self.depth = 0

    @property
    def token(self) -> _Token:
        return self.tokens[self.i]

    def advance(self) -> _Token:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def fail(self, expected: str) -> FilterError:
        return FilterError(f"expected {expected}, found {_describe(self.token)}", self.token.pos)

    def at(self, kind: str, text: str | None = None) -> bool:
        return self.token.kind == kind and (text is None or self.token.text == text)

    def expect(self, kind: str, text: str, expected: str) -> _Token:
        if not self.at(kind, text):
            raise self.fail(expected)
        return self.advance()

    def nested(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise FilterError(f"nesting deeper than {MAX_DEPTH} levels", self.token.pos)

    def parse(self) -> _Node:
        node = self.or_expr()
        if not self.at("end"):
            raise self.fail("'and', 'or' or the end of the filter")
        return node

    def or_expr(self) -> _Node:
        parts = [self.and_expr()]
        while self.at("keyword", "or"):
            self.advance()
            parts.append(self.and_expr())
        return parts[0] if len(parts) == 1 else _BoolOp("or", tuple(parts))

    def and_expr(self) -> _Node:
        parts = [self.not_expr()]
        while self.at("keyword", "and"):
            self.advance()
            parts.append(self.not_expr())
        return parts[0] if len(parts) == 1 else _BoolOp("and", tuple(parts))

    def not_expr(self) -> _Node:
        if self.at("keyword", "not"):
            self.advance()
            self.nested()
            node: _Node = _Not(self.not_expr())
            self.depth -= 1
            return node
        if self.at("punct", "("):
            self.advance()
            self.nested()
            node = self.or_expr()
            self.expect("punct", ")", "')'")
            self.depth -= 1
            return node
        return self.comparison()

    def field(self) -> _Field:
        token = self.token
        if token.kind == "meta":
            key = token.text[len("meta."):]
            self.check_key(key, token.pos + len("meta."))
            self.advance()
            return _Field("metadata", "metadata", key)
        if token.kind != "ident":
            raise self.fail("a field name (video_id, duration_s, clip_count, created_at, metadata[\"key\"], meta.key)")
        if token.text == "metadata":
            self.advance()
            self.expect("punct", "[", "'[' after metadata")
            key_token = self.token
            if key_token.kind != "string":
                raise self.fail('a double-quoted metadata key, as in metadata["lang"]')
            self.advance()
            self.check_key(str(key_token.value), key_token.pos)
            self.expect("punct", "]", "']' after the metadata key")
            return _Field("metadata", "metadata", str(key_token.value))
        if token.text not in _FIELDS:
            raise FilterError(
                f"unknown field {token.text!r}; allowed: {', '.join(_FIELDS)}, metadata[\"key\"], meta.key", token.pos
            )
        self.advance()
        return _Field(token.text, _FIELDS[token.text][0])

    @staticmethod
    def check_key(key: str, pos: int) -> None:
        if not METADATA_KEY_RE.fullmatch(key):
            raise FilterError(f"metadata key {key!r} must match [A-Za-z0-9_.-]{{1,64}}", pos)

    def literal(self, field: _Field) -> Scalar:
        token = self.token
        if token.kind not in ("string", "number") and not (token.kind == "keyword" and token.value is not None):
            raise self.fail("a literal (a double-quoted string, a number, true or false)")
        value = token.value
        assert value is not None
        if isinstance(value, bool):
            raise FilterError(
                f"{field.label} is not boolean (no field is); metadata values are strings: write \"{token.text}\"",
                token.pos,
            )
        if field.kind in ("string", "metadata") and not isinstance(value, str):
            hint = f'; metadata values are strings: write "{token.text}"' if field.kind == "metadata" else ""
            raise FilterError(f"{field.label} compares with strings only{hint}", token.pos)
        if field.kind == "number" and isinstance(value, str):
            raise FilterError(f"{field.name} compares with numbers only", token.pos)
        if field.kind == "int" and not isinstance(value, int):
            raise FilterError(f"{field.name} compares with integers only", token.pos)
        self.advance()
        return value

    def comparison(self) -> _Node:
        field = self.field()
        if self.at("op"):
            op = self.advance().text
            return _Compare(field, op, self.literal(field))
        negated = self.at("keyword", "not")
        if negated:
            self.advance()
        if not self.at("keyword", "in"):
            raise self.fail("'in'" if negated else f"an operator ({' '.join(_OPERATORS)}) or 'in'")
        self.advance()
        self.expect("punct", "[", "'[' to open the list")
        values = [self.literal(field)]
        while self.at("punct", ","):
            self.advance()
            if len(values) >= MAX_LIST_ITEMS:
                raise FilterError(f"lists hold at most {MAX_LIST_ITEMS} items", self.token.pos)
            values.append(self.literal(field))
        self.expect("punct", "]", "',' or ']'")
        return _In(field, tuple(values), negated)


@dataclass(frozen=True)
class RowScope:
    """The rows one request may read, beside its filter: its tenant and the model versions the service serves.

    None leaves a part open (no conjunct): the index's own reads and tests. `visual_model` applies to videos and
    clips, `text_model` to segments: a query vector is only comparable with rows its encoders' versions made.
    """

    tenant: str | None = None
    visual_model: str | None = None
    text_model: str | None = None

    def conjuncts(self, collection: Collection) -> list[str]:
        """This scope's conditions on one collection, each parenthesised (values quoted, never parsed)."""
        model_field, model = ("text_model", self.text_model) if collection == "segments" else (
            "visual_model", self.visual_model)
        pinned = [("tenant", self.tenant), (model_field, model)]
        return [f"({name} == {quote_string(value)})" for name, value in pinned if value is not None]

    def where(self, collection: Collection) -> str:
        """The conjuncts ANDed as one Milvus expression ("" when the scope is open)."""
        return _and(self.conjuncts(collection))


def _and(parts: Sequence[str]) -> str:
    return "" if not parts else parts[0] if len(parts) == 1 else "(" + " and ".join(parts) + ")"


@dataclass(frozen=True)
class CompiledFilter:
    """One user filter rendered for every collection, ANDed with its scope; `text` is what the user sent
    ("" : no filter)."""

    text: str
    videos: str
    clips: str
    segments: str
    scope: RowScope = RowScope()
    tree: _Node | None = field(default=None, repr=False, compare=False)

    def for_collection(self, collection: Collection) -> str:
        return {"videos": self.videos, "clips": self.clips, "segments": self.segments}[collection]

    def within(self, scope: RowScope) -> CompiledFilter:
        """The same user filter, its scope narrowed by `scope`'s pinned parts (the service adds the versions it serves
        to a parsed query); a part `scope` leaves open keeps this filter's."""
        merged = RowScope(*(mine if theirs is None else theirs for mine, theirs in zip(
            (self.scope.tenant, self.scope.visual_model, self.scope.text_model),
            (scope.tenant, scope.visual_model, scope.text_model), strict=True)))
        return _render(self.text, self.tree, merged)


def _render(text: str, tree: _Node | None, scope: RowScope) -> CompiledFilter:
    renders = {c: _and(([tree.render(c)] if tree is not None else []) + scope.conjuncts(c)) for c in COLLECTIONS}
    return CompiledFilter(text, renders["videos"], renders["clips"], renders["segments"], scope, tree)


def compile_filters(expr: str, only: Sequence[str] = (), leave_out: Sequence[str] = (),
                    scope: RowScope = RowScope()) -> CompiledFilter:
    """Parse a user filter once and render it for the `videos`, `clips` and `segments` collections (FilterError if
    bad).

    `only` scopes it to these video ids (`video_id in [...]`, without the user lists' item limit), `leave_out`
    excludes these, `scope` pins the tenant and model versions; all are ANDed with the user's expression. The
    caller validates the ids.
    """
    tree = _parse(expr)
    video_id = _Field("video_id", "string")
    ids: list[_Node] = [_In(video_id, tuple(v), negated) for v, negated in ((only, False), (leave_out, True)) if v]
    if ids:
        tree = _BoolOp("and", (tree, *ids)) if tree is not None else (ids[0] if len(ids) == 1 else _BoolOp("and", tuple(ids)))
    return _render(expr, tree, scope)


def _parse(expr: str) -> _Node | None:
    """The syntax tree of a filter, None for a blank one."""
    if len(expr) > MAX_FILTER_LENGTH:
        raise FilterError(f"filter longer than {MAX_FILTER_LENGTH} characters", MAX_FILTER_LENGTH)
    if not expr.strip():
        return None
    return _Parser(_tokenize(expr)).parse()


def compile_filter(expr: str, collection: Collection = "videos") -> str:
    """Parse a user filter and render it as a Milvus boolean expression for one collection.

    A blank filter means "no filter" and renders as "". Raises `FilterError` on anything outside the language.
    """
    if collection not in COLLECTIONS:
        raise ValueError(f"collection must be one of {', '.join(COLLECTIONS)}, not {collection!r}")
    return compile_filters(expr).for_collection(collection)


def milvus_filter(filter_expr: str | CompiledFilter | None, collection: Collection) -> str:
    """A user filter (text, or compiled once by the caller) as the Milvus expression for one collection."""
    if isinstance(filter_expr, CompiledFilter):
        return filter_expr.for_collection(collection)
    return compile_filter(filter_expr or "", collection)
