"""The analyst SQL sandbox lets one SELECT over the SME tables through, regenerated from its
checked tree, and refuses everything else with a reason that names it."""

# ruff: noqa: S608  # SQL built from strings is the very subject of these tests

from __future__ import annotations

import pytest
import sqlglot
from hypothesis import given, settings
from hypothesis import strategies as st

from sme.storage.sql_sandbox import FUNCTIONS, TABLE_FUNCTIONS, SqlRefused, sandboxed

DB = "sme"
TABLES = frozenset(
    {
        "activities",
        "decision_log",
        "configs",
        "daily_rollup",
        "daily_events",
        "035_sequential_messaging_engine_metrics",
    }
)


def run(sql: str) -> str:
    return sandboxed(sql, DB, TABLES)


def refusal(sql: str) -> str:
    with pytest.raises(SqlRefused) as refused:
        run(sql)
    return refused.value.reason


LEGITIMATE = [
    "SELECT type, count() AS n FROM activities GROUP BY type ORDER BY n DESC",
    "SELECT toStartOfDay(occurred_at) AS d, countIf(type = 'command_emitted') AS sent, "
    "uniqExact(user_id) AS users FROM activities WHERE workspace_id = 'acme' "
    "GROUP BY d ORDER BY d",
    "WITH firsts AS (SELECT user_id, min(occurred_at) AS first FROM activities "
    "GROUP BY user_id) SELECT count() FROM firsts",
    "SELECT a.user_id, d.arm FROM activities AS a INNER JOIN decision_log AS d "
    "ON a.user_id = d.user_id LIMIT 10",
    "SELECT count() FROM sme.activities AS a LEFT ASOF JOIN sme.decision_log AS d "
    "ON a.user_id = d.user_id AND a.occurred_at >= d.occurred_at",
    "SELECT user_id, row_number() OVER (PARTITION BY workspace_id ORDER BY occurred_at) AS rn "
    "FROM sme.activities",
    "SELECT sum(value) OVER w FROM activities WINDOW w AS (ORDER BY occurred_at "
    "ROWS BETWEEN 1 PRECEDING AND CURRENT ROW)",
    "SELECT quantile(0.9)(value), quantiles(0.5, 0.9)(value), topK(3)(type), median(value), "
    "avg(cost), sumIf(value, cost > 1), argMax(user_id, occurred_at), avgOrNull(value), "
    "uniqExactIf(user_id, type = 'x'), groupArray(3)(type) FROM activities",
    "SELECT JSONExtractString(details, 'a'), JSONExtractInt(details, 'a', 'b'), "
    "if(value > 1, 1, 2), multiIf(value > 1, 1, cost > 2, 2, 3), coalesce(step_id, 'x'), "
    "lower(type), dateDiff('day', occurred_at, inserted_at), toStartOfWeek(occurred_at), "
    "toStartOfMonth(occurred_at), toYYYYMM(occurred_at), formatDateTime(occurred_at, '%Y'), "
    "round(value, 2), lagInFrame(value) OVER (ORDER BY occurred_at) FROM activities",
    "SELECT number FROM numbers(100000)",
    "SELECT 1 UNION ALL SELECT 2",
    "SELECT arrayJoin([1, 2]) AS x, arrayMap(y -> y * 2, [1, 2]) AS m, CAST(1 AS String), "
    "now() - INTERVAL 7 DAY, x IN (1, 2), x IN (SELECT 1)",
    "SELECT count() FROM activities FINAL",
    "SELECT (SELECT max(value) FROM decision_log), exists(SELECT 1 FROM configs)",
    "SELECT * FROM `035_sequential_messaging_engine_metrics` LIMIT 1",
    "SELECT user_id FROM activities ORDER BY occurred_at DESC LIMIT 1 BY user_id",
    "SELECT type, count() FROM activities GROUP BY type WITH TOTALS",
    "SELECT x FROM numbers(3) ARRAY JOIN [1, 2] AS x",
    "SELECT count(*), COUNT(DISTINCT user_id), Sum(value) FROM activities",
    "SELECT * FROM activities WHERE user_id IN (SELECT user_id FROM decision_log "
    "WHERE arm = 'holdout')",
    'SELECT 1 AS "conversion rate"',
    "SELECT type FROM activities;",
]


@pytest.mark.parametrize("sql", LEGITIMATE)
def test_analyst_queries_pass_and_come_back_as_one_select(sql: str) -> None:
    regenerated = run(sql)
    (tree,) = sqlglot.parse(regenerated, read="clickhouse")
    assert tree is not None
    assert tree.key in {"select", "union"}
    assert run(regenerated) == regenerated  # what runs passes the check on its own


ATTACKS = [
    # reading and writing host files
    ("SELECT * FROM file('/etc/passwd', 'LineAsString')", "table function file"),
    ("SELECT file('/etc/passwd')", "function file"),
    ("INSERT INTO FUNCTION file('/tmp/x', 'CSV') SELECT 1", "only a SELECT"),
    ("SELECT 1 INTO OUTFILE '/tmp/x'", "could not parse"),
    ("SELECT * FROM activities INTO OUTFILE '/tmp/x'", "could not parse"),
    # requests to other hosts and processes
    ("SELECT * FROM url('http://127.0.0.1:1/', 'CSV', headers('X'='y'))", "table function url"),
    (
        "SELECT * FROM activities WHERE user_id IN "
        "(SELECT * FROM url('http://127.0.0.1:1/', 'LineAsString'))",
        "table function url",
    ),
    ("SELECT * FROM remote('127.0.0.1', system.one)", "table function remote"),
    ("SELECT * FROM remoteSecure('127.0.0.1', system.one)", "table function remoteSecure"),
    ("SELECT * FROM cluster('c', system.one)", "table function cluster"),
    ("SELECT * FROM s3('http://x/y', 'CSV')", "table function s3"),
    ("SELECT * FROM s3Cluster('c', 'http://x/y')", "table function s3Cluster"),
    ("SELECT * FROM hdfs('hdfs://x/y', 'CSV')", "table function hdfs"),
    ("SELECT * FROM azureBlobStorage('x')", "table function azureBlobStorage"),
    ("SELECT * FROM jdbc('a', 'b')", "table function jdbc"),
    ("SELECT * FROM odbc('a', 'b')", "table function odbc"),
    ("SELECT * FROM mysql('h', 'd', 't', 'u', 'p')", "table function mysql"),
    ("SELECT * FROM postgresql('h', 'd', 't', 'u', 'p')", "table function postgresql"),
    ("SELECT * FROM executable('ls', 'TSV', 'x String')", "table function executable"),
    ("SELECT * FROM input('x String')", "table function input"),
    ("SELECT * FROM merge('sme', '.*')", "table function merge"),
    ("SELECT * FROM view(SELECT 1)", "table function view"),
    ("SELECT * FROM generate_series(1, 3)", "table function generate_series"),
    ("SELECT * FROM values('x UInt8', 1)", "VALUES"),
    ("SELECT * FROM dictionary('d')", "table dictionary"),
    ("SELECT dictGet('d', 'a', toUInt64(1))", "function dictGet"),
    ("SELECT dictGetOrDefault('d', 'a', 1, 0)", "function dictGetOrDefault"),
    ("SELECT joinGet('t', 'a', 1)", "function joinGet"),
    # statements other than SELECT
    ("KILL QUERY WHERE 1", "could not parse"),
    ("KILL QUERY WHERE query_id = 'x' SYNC", "could not parse"),
    ("SET readonly = 0", "only a SELECT query is allowed, not SET"),
    ("USE system", "only a SELECT"),
    ("SYSTEM STOP MERGES", "only a SELECT"),
    ("OPTIMIZE TABLE activities FINAL", "only a SELECT"),
    ("ALTER TABLE activities DELETE WHERE 1", "only a SELECT"),
    ("DELETE FROM activities WHERE 1", "only a SELECT"),
    ("TRUNCATE TABLE activities", "only a SELECT"),
    ("CREATE TABLE x (a Int8) ENGINE = Memory", "only a SELECT"),
    ("DROP TABLE activities", "only a SELECT"),
    ("INSERT INTO configs (id) VALUES ('x')", "only a SELECT"),
    ("EXPLAIN SELECT 1", "only a SELECT"),
    ("SHOW TABLES", "only a SELECT"),
    ("DESCRIBE activities", "only a SELECT"),
    ("GRANT ALL ON *.* TO default", "only a SELECT"),
    # more than one statement, however hidden
    ("SELECT 1; SELECT 2", "exactly one statement"),
    ("SELECT getSetting('max_execution_time'); SELECT 1", "exactly one statement"),
    ("SELECT 1; DROP TABLE activities", "exactly one statement"),
    ("SELECT 1 /* ; */ ; KILL QUERY WHERE 1", "could not parse"),
    ("", "empty"),
    (";", "empty"),
    # lifting the limits or changing the output
    ("SELECT 1 SETTINGS max_execution_time = 0", "SETTINGS"),
    ("SELECT 1 UNION ALL SELECT 2 SETTINGS readonly = 0", "SETTINGS"),
    ("SELECT * FROM (SELECT 1 SETTINGS max_result_rows = 0)", "SETTINGS"),
    ("SELECT 1 FORMAT JSON", "FORMAT"),
    ("SELECT 1 FORMAT TabSeparated", "FORMAT"),
    ("SELECT getSetting('max_execution_time')", "function getSetting"),
    ("SELECT {x:String}", "PLACEHOLDER"),
    # other databases, system tables
    ("SELECT * FROM system.tables", "database system"),
    ("SELECT * FROM `system`.`tables`", "database system"),
    ('SELECT * FROM "system"."processes"', "database system"),
    ("SELECT * FROM other_db.t", "database other_db"),
    ("SELECT * FROM sme.schema_migrations", "table sme.schema_migrations"),
    ("SELECT * FROM schema_migrations", "table schema_migrations"),
    ("SELECT * FROM activities AS a JOIN system.one AS o ON 1 = 1", "database system"),
    ("SELECT * FROM default.activities", "database default"),
    ("SELECT * FROM no_such_table", "table no_such_table"),
    # nesting: every position is checked
    ("SELECT (SELECT * FROM file('x'))", "table function file"),
    ("SELECT 1 WHERE 1 IN (SELECT * FROM url('http://x/'))", "table function url"),
    ("WITH t AS (SELECT * FROM file('x')) SELECT * FROM t", "table function file"),
    ("WITH (SELECT file('x')) AS c SELECT c", "function file"),
    ("SELECT arrayMap(x -> file(x), ['/etc/passwd'])", "function file"),
    ("SELECT * FROM activities ARRAY JOIN [file('x')] AS f", "function file"),
    ("SELECT * FROM (SELECT 1) AS a JOIN (SELECT * FROM s3('x')) AS b ON 1 = 1", "s3"),
    ("SELECT 1 UNION ALL SELECT * FROM file('x')", "table function file"),
    ("SELECT sum(x) OVER (ORDER BY file('x')) FROM activities", "function file"),
    ("SELECT countIf(file('x') = '') FROM activities", "function file"),
    # a CTE named like a table function does not make the function allowed
    ("WITH file AS (SELECT 1 AS x) SELECT * FROM file('/etc/passwd')", "table function file"),
    ("WITH numbers AS (SELECT 1 AS x) SELECT * FROM url('http://x/')", "table function url"),
    # quoting and unicode tricks
    ("SELECT \"file\"('/etc/passwd')", "function file"),
    ("SELECT `file`('/etc/passwd')", "function file"),
    ("SELECT * FROM `file`('/etc/passwd', 'LineAsString')", "file"),
    ("SELECT FILE('/etc/passwd')", "function FILE"),
    ("SELECT \uff46\uff49\uff4c\uff45('/etc/passwd')", "\\uff46"),  # fullwidth "file"
    ("SELECT fi\u200ble('/etc/passwd')", "\\u200b"),  # zero-width space
    ("SELECT * FROM syst\u0435m.tables", "database"),  # Cyrillic "e"
    ("SELECT * FROM activit\u0456es", "table"),  # Cyrillic "i": not our table
    ('SELECT 1 AS "a""b"', "identifier"),
    ("SELECT 1\x00", "NUL"),
    # functions that are not on the list
    ("SELECT sleepEachRow(1) FROM numbers(100)", "function sleepEachRow"),
    ("SELECT sleep(3)", "function sleep"),
    ("SELECT currentUser()", "function currentUser"),
    ("SELECT hostName()", "function hostName"),
    ("SELECT version()", "function version"),
    ("SELECT hasColumnInTable('system', 'users', 'name')", "function hasColumnInTable"),
    ("SELECT filesystemAvailable()", "function filesystemAvailable"),
    ("SELECT addressToSymbol(1)", "function addressToSymbol"),
    ("SELECT throwIf(1)", "function throwIf"),
    ("SELECT arrayReduce('sum', [1])", "function arrayReduce"),
    ("SELECT x = ANY (SELECT 1)", "ANY"),
]


@pytest.mark.parametrize(("sql", "named"), ATTACKS)
def test_attacks_are_refused_with_a_reason_naming_what(sql: str, named: str) -> None:
    assert named.lower() in refusal(sql).lower()


def test_comments_are_dropped_so_nothing_can_swallow_the_limits_the_driver_appends() -> None:
    for sql in (
        "SELECT 1 -- the driver appends SETTINGS after this",
        "SELECT 1 # hash comment",
        "SELECT /* a */ 1 /* b */",
        "SELECT 1 /*+ hint */",
    ):
        regenerated = run(sql)
        assert regenerated == "SELECT 1"


def test_what_is_sent_is_the_regenerated_text_not_the_callers() -> None:
    # a no-break space is whitespace to sqlglot but an identifier byte to ClickHouse: the text
    # sent has a plain space, so both read one and the same query
    assert run("SELECT type\u00a0FROM activities") == "SELECT type FROM activities"
    assert run("select   TYPE from activities\n\n") == "SELECT TYPE FROM activities"
    assert run("SELECT TODATE(occurred_at) FROM activities") == (
        "SELECT toDate(occurred_at) FROM activities"
    )
    assert run("SELECT 'it\\'s'") == "SELECT 'it''s'"


def test_string_literals_that_look_like_code_stay_literals() -> None:
    for literal in (
        "'; DROP TABLE activities; --'",
        "'{x:String}'",
        "'file(''/etc/passwd'')'",
        "'/* */ -- #'",
    ):
        assert run(f"SELECT {literal} AS s") == f"SELECT {literal} AS s"


def test_the_database_qualifier_must_be_the_sme_database() -> None:
    assert run("SELECT count() FROM sme.activities") == "SELECT count() FROM sme.activities"
    assert "database" in refusal("SELECT count() FROM SME.activities")
    assert "CATALOG" in refusal("SELECT count() FROM cat.sme.activities")


def test_ctes_may_name_their_own_tables_but_not_qualified_ones() -> None:
    assert run("WITH x AS (SELECT 1 AS a) SELECT a FROM x")
    assert run("WITH file AS (SELECT 1 AS a) SELECT a FROM file")  # a CTE, not the function
    assert "table sme.x" in refusal("WITH x AS (SELECT 1 AS a) SELECT a FROM sme.x")


def test_only_numbers_and_numbers_mt_are_allowed_table_functions() -> None:
    assert {"numbers", "numbers_mt"} == TABLE_FUNCTIONS
    assert run("SELECT count() FROM numbers_mt(10)")
    assert "table function zeros" in refusal("SELECT * FROM zeros(10)")
    assert "table function numbers" in refusal("SELECT * FROM sme.numbers(10)")


def test_the_function_list_holds_nothing_that_reaches_outside() -> None:
    dangerous = {
        "file",
        "url",
        "s3",
        "remote",
        "dictget",
        "dictgetstring",
        "getsetting",
        "joinget",
        "sleep",
        "sleepeachrow",
        "executable",
        "input",
        "currentuser",
        "hostname",
        "getmacro",
        "throwif",
    }
    assert dangerous.isdisjoint(FUNCTIONS)
    assert not any(name.startswith("dict") for name in FUNCTIONS)


def test_a_huge_query_is_refused_before_it_costs_much() -> None:
    sql = "SELECT " + " + ".join(["1"] * 30_000)
    assert "could not parse" in refusal(sql) or "too large" in refusal(sql)


_IDENT = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,20}", fullmatch=True)


@settings(max_examples=300, deadline=None)
@given(name=_IDENT)
def test_a_function_name_not_on_the_list_is_always_refused(name: str) -> None:
    sql = f"SELECT {name}(1, 'x')"
    try:
        regenerated = run(sql)
    except SqlRefused as refused:
        assert "not allowed" in refused.reason or "parse" in refused.reason
        return
    # it passed: then every call in what is sent is on the list
    tree = sqlglot.parse_one(regenerated, read="clickhouse")
    for call in tree.find_all(sqlglot.exp.Anonymous):
        assert call.name.lower() in FUNCTIONS


@settings(max_examples=300, deadline=None)
@given(name=_IDENT, db=st.one_of(st.none(), _IDENT))
def test_a_table_not_in_the_sme_database_is_always_refused(name: str, db: str | None) -> None:
    qualified = f"{db}.{name}" if db else name
    sql = f"SELECT * FROM {qualified}"
    allowed = (db in (None, DB)) and name in TABLES
    if allowed:
        assert run(sql)
    else:
        with pytest.raises(SqlRefused):
            run(sql)


@settings(max_examples=200, deadline=None)
@given(name=_IDENT.filter(lambda n: n not in TABLE_FUNCTIONS))
def test_a_table_function_other_than_numbers_is_always_refused(name: str) -> None:
    with pytest.raises(SqlRefused):
        run(f"SELECT * FROM {name}('x', 1)")
