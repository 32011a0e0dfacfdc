"""The analyst SQL sandbox: one read-only SELECT over the SME tables, checked by construction.

`sandboxed(sql, database, tables)` parses the text with sqlglot's ClickHouse dialect, walks
every node of the tree against allow-lists (node kinds, functions, tables, clauses) and returns
SQL *regenerated from the checked tree*, never the caller's text. Whatever sqlglot and
ClickHouse would read differently in the original (comments, odd whitespace, unicode look-alikes,
escapes, a trailing `-- ` that would swallow the settings clause the driver appends) is gone:
what runs is exactly what was checked. The regenerated text is parsed and checked once more, so
a function a sqlglot generator introduces on its own is held to the same lists.

Policy (allow-lists, nothing else passes):
- one statement: SELECT, WITH ... SELECT, or a UNION / INTERSECT / EXCEPT of those;
  no SETTINGS, FORMAT, INTO OUTFILE, query parameters, hints;
- tables: CTE names, and the given tables of the SME database, unqualified or qualified with
  that database only (no `system.*`, no other database). `schema_migrations` is left out by the
  caller: bookkeeping, not analysis;
- table functions: `numbers` and `numbers_mt` only (synthetic rows, no I/O); never file, url,
  s3, remote, cluster, input, executable, jdbc, odbc, mysql, postgresql, merge, view,
  dictionary, ...;
- functions: plain scalar, aggregate (with the -If/-Distinct/-OrNull/... combinators) and
  window functions listed below; no dictGet*, getSetting, joinGet, file, sleep, introspection
  or server functions. A name not on the list is refused with that name;
- identifiers: ASCII letters, digits, underscore (quoted ones may also hold spaces).

The engine's own limits (`ENGINE_LIMITS`: readonly=1, time, rows, memory) stay on as a second
layer; see `ClickHouseStore.analyst_query`. This module does no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

DIALECT = "clickhouse"
HIDDEN_TABLES = frozenset({"schema_migrations"})  # bookkeeping, not analysis
# The engine-side fence, sent in the SETTINGS clause of the one statement that runs
# (clickhouse-connect appends it, for chdb and HTTP alike). readonly=1, not 2: the query can
# change no setting, while the clause itself still sets the others after it. The caller puts
# its own time and row limits in place of the defaults here.
ENGINE_LIMITS: dict[str, int | float | str] = {
    "readonly": 1,
    "allow_ddl": 0,
    "allow_introspection_functions": 0,
    "max_execution_time": 30,
    "timeout_overflow_mode": "throw",
    "max_result_rows": 10_001,
    "result_overflow_mode": "break",
    "max_rows_to_read": 2_000_000_000,
    "max_memory_usage": 2 * 1024**3,
}
MAX_NODES = 20_000  # a bound on the work one request can ask of the checker

TABLE_FUNCTIONS = frozenset({"numbers", "numbers_mt"})


def _words(text: str) -> list[str]:
    return text.split()


_AGGREGATES = _words(
    "count sum avg min max any anyLast anyHeavy argMin argMax uniq uniqExact uniqCombined "
    "uniqCombined64 uniqHLL12 uniqTheta groupArray groupUniqArray groupArraySample "
    "groupArraySorted groupBitAnd groupBitOr groupBitXor sumWithOverflow "
    "quantile quantiles quantileExact quantilesExact quantileTDigest quantilesTDigest "
    "quantileTiming quantilesTiming quantileDeterministic quantileExactWeighted "
    "quantilesExactWeighted quantileBFloat16 median medianExact stddevPop stddevSamp "
    "varPop varSamp covarPop covarSamp corr topK topKWeighted avgWeighted skewPop skewSamp "
    "kurtPop kurtSamp simpleLinearRegression histogram sumMap minMap maxMap entropy "
    "retention windowFunnel sequenceMatch sequenceCount"
)
_COMBINATORS = ("", "If", "Distinct", "OrNull", "OrDefault", "Array", "ArrayIf", "IfOrNull")
_WINDOW = _words(
    "row_number rank dense_rank percent_rank cume_dist ntile lag lead lagInFrame leadInFrame "
    "first_value last_value nth_value"
)
_SCALAR = _words(
    # dates and times
    "now now64 today yesterday toDate toDate32 toDateTime toDateTime64 toDateOrNull "
    "toDateOrZero toDateTimeOrNull toDateTimeOrZero toDateTime64OrNull toStartOfDay "
    "toStartOfHour toStartOfMinute toStartOfSecond toStartOfFiveMinutes "
    "toStartOfFifteenMinutes toStartOfTenMinutes toStartOfWeek toStartOfMonth "
    "toStartOfQuarter toStartOfYear toStartOfISOYear toStartOfInterval toMonday toYear "
    "toQuarter toMonth toDayOfMonth toDayOfWeek toDayOfYear toHour toMinute toSecond toYYYYMM "
    "toYYYYMMDD toYYYYMMDDhhmmss toISOWeek toISOYear toWeek toYearWeek toUnixTimestamp "
    "toUnixTimestamp64Milli fromUnixTimestamp fromUnixTimestamp64Milli toTimezone toTimeZone "
    "timeZoneOf dateDiff date_diff age dateAdd date_add dateSub date_sub timestamp_add "
    "timestamp_sub addSeconds addMinutes addHours addDays addWeeks addMonths addQuarters "
    "addYears subtractSeconds subtractMinutes subtractHours subtractDays subtractWeeks "
    "subtractMonths subtractQuarters subtractYears formatDateTime formatDateTimeInJodaSyntax "
    "parseDateTimeBestEffort parseDateTimeBestEffortOrNull parseDateTime64BestEffort "
    "parseDateTime64BestEffortOrNull dateTrunc date_trunc toIntervalSecond toIntervalMinute "
    "toIntervalHour toIntervalDay toIntervalWeek toIntervalMonth toIntervalQuarter "
    "toIntervalYear toRelativeDayNum toRelativeHourNum toRelativeWeekNum toRelativeMonthNum "
    "toLastDayOfMonth makeDate makeDateTime "
    # types and nulls
    "cast toString toFixedString toInt8 toInt16 toInt32 toInt64 toInt128 toUInt8 toUInt16 "
    "toUInt32 toUInt64 toFloat32 toFloat64 toDecimal32 toDecimal64 toDecimal128 "
    "toInt32OrNull toInt64OrNull toUInt64OrNull toFloat64OrNull toInt64OrZero toFloat64OrZero "
    "toDecimal64OrNull toUUID toUUIDOrNull toBool toTypeName accurateCast accurateCastOrNull "
    "toLowCardinality toNullable assumeNotNull ifNull nullIf coalesce isNull isNotNull "
    "isZeroOrNull isFinite isInfinite isNaN reinterpretAsString "
    # conditions and comparisons
    "if multiIf greatest least equals notEquals less greater lessOrEquals greaterOrEquals "
    "and or not xor in notIn like notLike ilike notILike match "
    # arithmetic
    "plus minus multiply divide intDiv intDivOrZero modulo moduloOrZero negate abs sign "
    "round roundBankers roundDown floor ceil ceiling trunc truncate sqrt cbrt exp exp2 exp10 "
    "log ln log2 log10 log1p pow power e pi sin cos tan asin acos atan atan2 erf gcd lcm "
    "bitAnd bitOr bitXor bitNot bitShiftLeft bitShiftRight "
    # strings
    "length lengthUTF8 char_length empty notEmpty lower upper lowerUTF8 upperUTF8 concat "
    "concatWithSeparator substring substr substringUTF8 left right leftUTF8 rightUTF8 trim "
    "trimBoth trimLeft trimRight ltrim rtrim leftPad rightPad lpad rpad reverse repeat "
    "replaceAll replaceOne replace replaceRegexpAll replaceRegexpOne position locate "
    "positionCaseInsensitive positionUTF8 startsWith endsWith extract extractAll "
    "extractGroups splitByChar splitByString splitByRegexp arrayStringConcat format "
    "toValidUTF8 base64Encode base64Decode tryBase64Decode hex unhex lower "
    "formatReadableSize formatReadableQuantity formatReadableTimeDelta bar "
    "regexpExtract countSubstrings multiSearchAny "
    # hashes
    "cityHash64 sipHash64 xxHash64 xxHash32 murmurHash3_64 farmHash64 MD5 SHA1 SHA256 "
    # JSON
    "JSONHas JSONLength JSONType JSONExtract JSONExtractString JSONExtractInt JSONExtractUInt "
    "JSONExtractFloat JSONExtractBool JSONExtractRaw JSONExtractKeys JSONExtractArrayRaw "
    "JSONExtractKeysAndValues JSONExtractKeysAndValuesRaw JSON_VALUE JSON_QUERY JSON_EXISTS "
    "isValidJSON simpleJSONExtractString simpleJSONExtractInt simpleJSONExtractFloat "
    "simpleJSONExtractBool simpleJSONHas "
    # arrays, tuples, maps
    "array arrayJoin arrayMap arrayFilter arrayExists arrayAll arrayCount arraySum arrayAvg "
    "arrayMin arrayMax arrayProduct arraySort arrayReverseSort arrayReverse arrayDistinct "
    "arrayUniq arrayConcat arrayElement arraySlice arrayPushBack arrayPushFront arrayPopBack "
    "arrayPopFront arrayEnumerate arrayEnumerateUniq arrayFirst arrayLast arrayFirstIndex "
    "arrayZip arrayFlatten arrayCompact arrayIntersect arrayDifference arrayCumSum "
    "arrayResize arrayWithConstant emptyArrayString has hasAll hasAny indexOf countEqual range "
    "tuple tupleElement map mapKeys mapValues mapContains untuple "
    # identifiers and misc. pure functions
    "generateUUIDv4 rand rand64 randCanonical isIPv4String isIPv6String toIPv4 toIPv6 "
    "IPv4NumToString IPv4StringToNum transform domain"
)
_FUNCTIONS = (
    {a + c for a in _AGGREGATES for c in _COMBINATORS}
    | set(_WINDOW)
    | set(_SCALAR)
    # the spellings sqlglot's ClickHouse generator uses for functions it knows by class
    | {"date_diff", "dateTrunc", "arrayJoin", "arrayMap", "has", "position", "CONCAT"}
)
# case-insensitive lookup; the canonical spelling is what is sent
FUNCTIONS: dict[str, str] = {name.lower(): name for name in sorted(_FUNCTIONS)}

# Functions sqlglot knows by class whose ClickHouse text is not `name(...)`.
_KEYWORD_FUNCS: tuple[type[exp.Expr], ...] = (exp.Case, exp.If, exp.Cast, exp.Exists)

# Every other kind of node that may appear; anything else (Values, Lateral, Unnest,
# Placeholder, Parameter, Command, Set, Insert, Any/All, Dot, hints, ...) is refused.
_NODES: tuple[type[exp.Expr], ...] = (
    exp.Select,
    exp.Union,
    exp.Intersect,
    exp.Except,
    exp.Subquery,
    exp.With,
    exp.CTE,
    exp.TableAlias,
    exp.Alias,
    exp.Column,
    exp.Identifier,
    exp.Star,
    exp.Literal,
    exp.Null,
    exp.Boolean,
    exp.From,
    exp.Join,
    exp.Where,
    exp.PreWhere,
    exp.Group,
    exp.Having,
    exp.Qualify,
    exp.Order,
    exp.Ordered,
    exp.WithFill,
    exp.Limit,
    exp.Offset,
    exp.Distinct,
    exp.Window,
    exp.WindowSpec,
    exp.Paren,
    exp.Tuple,
    exp.Array,
    exp.Bracket,
    exp.Lambda,
    exp.DataType,
    exp.DataTypeParam,
    exp.Interval,
    exp.Var,
    exp.Final,
    exp.TableSample,
    exp.Table,
    exp.Neg,
    exp.Not,
    exp.BitwiseNot,
    exp.Add,
    exp.Sub,
    exp.Mul,
    exp.Div,
    exp.IntDiv,
    exp.Mod,
    exp.EQ,
    exp.NEQ,
    exp.NullSafeEQ,
    exp.NullSafeNEQ,
    exp.GT,
    exp.GTE,
    exp.LT,
    exp.LTE,
    exp.And,
    exp.Or,
    exp.Xor,
    exp.Like,
    exp.ILike,
    exp.Is,
    exp.In,
    exp.Between,
    exp.DPipe,
    exp.BitwiseAnd,
    exp.BitwiseOr,
    exp.BitwiseXor,
    exp.BitwiseLeftShift,
    exp.BitwiseRightShift,
    exp.Escape,
    # JSONExtract*(json, 'key', 1, ...): sqlglot keeps the keys as a path, sent back as literals
    exp.JSONPath,
    exp.JSONPathRoot,
    exp.JSONPathKey,
    exp.JSONPathSubscript,
)
_QUERIES: tuple[type[exp.Expr], ...] = (exp.Select, exp.Union, exp.Intersect, exp.Except)

# Clauses a query node may carry; SETTINGS, FORMAT, INTO, hints, locks and the rest are not.
_SELECT_ARGS = frozenset(
    {
        "with_",
        "expressions",
        "distinct",
        "from_",
        "joins",
        "prewhere",
        "where",
        "group",
        "having",
        "qualify",
        "windows",
        "order",
        "limit",
        "offset",
        "sample",
    }
)
_SET_OP_ARGS = frozenset({"with_", "this", "expression", "distinct", "order", "limit", "offset"})
_SUBQUERY_ARGS = frozenset({"this", "alias", "order", "limit", "offset"})
_TABLE_ARGS = frozenset({"this", "alias", "db", "sample"})
_JOIN_ARGS = frozenset({"this", "on", "side", "kind", "using", "global_"})

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_QUOTED_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_ ]*\Z")
_NUMBER = re.compile(r"(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\Z|0[xX][0-9A-Fa-f]+\Z|inf\Z|nan\Z")
_CALL = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*\(")


class SqlRefused(ValueError):
    """The query is not allowed in the sandbox; `reason` says what, for the analyst."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def sandboxed(sql: str, database: str, tables: frozenset[str]) -> str:
    """The SQL to run for an analyst's `sql`: regenerated from its checked syntax tree.

    Raises `SqlRefused` unless it is one SELECT over `tables` of `database` (or CTEs) using
    only allowed functions and clauses (see the module docstring)."""
    try:
        tree = _parse(sql)
        _check(tree, database, tables)
        regenerated = _generate(tree)
        # The text that runs must pass on its own: parse it again and check it again.
        _check(_parse(regenerated), database, tables)
    except RecursionError:
        raise SqlRefused("the query is nested too deeply") from None
    return regenerated


def _parse(sql: str) -> exp.Expr:
    if "\x00" in sql:
        raise SqlRefused("NUL characters are not allowed")
    try:
        statements = [s for s in sqlglot.parse(sql, read=DIALECT) if s is not None]
    except (SqlglotError, RecursionError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SqlRefused(f"could not parse the query: {first[:300]}") from None
    if len(statements) != 1:
        raise SqlRefused(
            f"exactly one statement is allowed, got {len(statements)}"
            if statements
            else "the query is empty"
        )
    return statements[0]


def _generate(tree: exp.Expr) -> str:
    return tree.sql(dialect=DIALECT, comments=False)


def _check(tree: exp.Expr, database: str, tables: frozenset[str]) -> None:
    if not isinstance(tree, _QUERIES):
        kind = tree.key.upper() if not isinstance(tree, exp.Command) else str(tree.this).upper()
        raise SqlRefused(f"only a SELECT query is allowed, not {kind}")
    nodes = list(_walk(tree))
    ctes = {cte.alias_or_name for cte in nodes if isinstance(cte, exp.CTE)}
    table_functions: set[int] = set()
    for node in nodes:
        _check_clauses(node)
        if isinstance(node, exp.Table):
            called = _check_table(node, database, tables, ctes)
            if called is not None:
                table_functions.add(id(called))
    for node in nodes:
        if id(node) in table_functions:
            continue
        if isinstance(node, exp.Anonymous | exp.AnonymousAggFunc):
            _canonical_call(node)
        elif isinstance(node, exp.Func):
            _check_known_function(node)
        elif isinstance(node, _NODES):
            _check_leaf(node, database)
        else:
            raise SqlRefused(f"{_describe(node)} is not allowed")


def _walk(tree: exp.Expr) -> Iterator[exp.Expr]:
    for count, node in enumerate(tree.walk(), start=1):
        if count > MAX_NODES:
            raise SqlRefused(f"the query is too large (more than {MAX_NODES} syntax nodes)")
        yield node


def _check_clauses(node: exp.Expr) -> None:
    """Queries, tables and joins carry only the listed clauses (no SETTINGS, FORMAT, INTO,
    hints, ...); every other node is covered by the node and function lists."""
    allowed = (
        _SELECT_ARGS
        if isinstance(node, exp.Select)
        else _SET_OP_ARGS
        if isinstance(node, exp.SetOperation)
        else _SUBQUERY_ARGS
        if isinstance(node, exp.Subquery)
        else _TABLE_ARGS
        if isinstance(node, exp.Table)
        else _JOIN_ARGS
        if isinstance(node, exp.Join)
        else None
    )
    if allowed is None:
        return
    for key, value in node.args.items():
        if value not in (None, False, [], "") and key not in allowed:
            raise SqlRefused(f"{key.rstrip('_').upper()} is not allowed (in {node.key.upper()})")


def _check_table(
    table: exp.Table, database: str, tables: frozenset[str], ctes: set[str]
) -> exp.Expr | None:
    """Check one FROM/JOIN source; return the call node of an allowed table function."""
    target = table.this
    if isinstance(target, exp.Anonymous | exp.Func):
        name = target.name if isinstance(target, exp.Anonymous) else target.sql_name().lower()
        if table.args.get("db") or name not in TABLE_FUNCTIONS:
            raise SqlRefused(f"table function {name} is not allowed")
        return target
    if not isinstance(target, exp.Identifier):
        raise SqlRefused(f"{_describe(target)} as a table is not allowed")
    name = target.name
    db = table.args.get("db")
    if db is not None:
        if not isinstance(db, exp.Identifier) or db.name != database:
            raise SqlRefused(f"database {db.name} is not allowed (only {database})")
        if name not in tables:
            raise SqlRefused(f"table {database}.{name} is not allowed")
        return None
    if name not in tables and name not in ctes:
        raise SqlRefused(f"table {name} is not allowed")
    return None


def _canonical_call(node: exp.Anonymous | exp.AnonymousAggFunc) -> None:
    """An unknown-to-sqlglot call: its name must be on the list; send its canonical spelling."""
    name = node.name
    canonical = FUNCTIONS.get(name.lower())
    if canonical is None:
        raise SqlRefused(f"function {_printable(name)} is not allowed")
    node.set("this", canonical)


def _check_known_function(node: exp.Func) -> None:
    """A call sqlglot knows by class: what ClickHouse receives is the generator's spelling,
    so that spelling must be on the list (keyword forms such as CASE and CAST are fine)."""
    if isinstance(node, _KEYWORD_FUNCS):
        return
    match = _CALL.match(_generate(node))
    name = match.group(1) if match else node.sql_name()
    if name.lower() not in FUNCTIONS:
        raise SqlRefused(f"function {name} is not allowed")


def _check_leaf(node: exp.Expr, database: str) -> None:
    if isinstance(node, exp.Identifier):
        text = node.this if isinstance(node.this, str) else ""
        pattern = _QUOTED_NAME if node.quoted else _NAME
        if not pattern.match(text):
            raise SqlRefused(f"identifier {_printable(text)!r} is not allowed")
    elif isinstance(node, exp.Var):
        if not _NAME.match(str(node.this)):
            raise SqlRefused(f"keyword {_printable(str(node.this))!r} is not allowed")
    elif isinstance(node, exp.Literal) and not node.is_string:
        if not _NUMBER.match(str(node.this)):
            raise SqlRefused(f"number {_printable(str(node.this))!r} is not allowed")
    elif isinstance(node, exp.Column):
        db = node.args.get("db")
        if node.args.get("catalog") is not None or (db is not None and db.name != database):
            raise SqlRefused(f"column {_printable(node.sql(dialect=DIALECT))} is not allowed")
    elif isinstance(node, exp.DataType) and node.this == exp.DataType.Type.USERDEFINED:
        kind = str(node.args.get("kind", ""))
        if not _NAME.match(kind):
            raise SqlRefused(f"type {_printable(kind)!r} is not allowed")


def _describe(node: exp.Expr) -> str:
    if isinstance(node, exp.Func):
        return f"function {node.sql_name()}"
    return node.key.upper()


def _printable(text: str) -> str:
    """The name as the analyst typed it, with invisible or non-ASCII characters escaped."""
    return text.encode("ascii", "backslashreplace").decode()[:100]
