"""SQL read by PostgreSQL's own grammar (pglast wraps libpg_query, the server's parser).

Every statement of the text is classified, and so is every statement nested in it:
data-modifying CTEs, ``EXPLAIN ANALYZE`` (which runs its statement), ``PREPARE`` (the
prepared statement counts as run), ``CREATE FUNCTION`` bodies in SQL or PL/pgSQL,
``CREATE RULE`` actions and ``DO`` blocks. PL/pgSQL is parsed with libpg_query's
PL/pgSQL parser: its SQL statements are classified, and dynamic ``EXECUTE`` strings are
folded when they are built only from constants (``'DR' || 'OP TABLE users'``,
``chr(68)``, ``format('DROP TABLE %I', 'users')``, ``concat``, ``upper``/``lower``,
``replace``, ``reverse``, ``decode(..., 'base64')``/``convert_from``) and read again
as SQL. Comments never reach the classification: the grammar drops them.

What cannot be seen is read as its most dangerous form and flagged ``opaque``: a text
that does not parse, dynamic SQL built from variables or unknown functions, ``CALL``,
``EXECUTE`` of a statement not prepared in the same text, ``LOAD``, bodies in other
languages (PL/Python, C, ...), and nesting deeper than the depth limit. An opaque
statement ``writes`` and is ``destructive``.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Iterator
from typing import Any

from pglast import parser as _pg

from aarm_pdp.analysis._limits import Limits

Node = dict[str, Any]
ShellAnalyser = Callable[[str, int], dict[str, Any]]

READ_NODES = frozenset(
    {
        "SelectStmt",
        "VariableShowStmt",
        "ExplainStmt",
        "TransactionStmt",
        "DeclareCursorStmt",
        "FetchStmt",
        "ClosePortalStmt",
        "DeallocateStmt",
        "DiscardStmt",
        "ListenStmt",
        "UnlistenStmt",
        "PrepareStmt",
        "ExecuteStmt",
        "VariableSetStmt",
    }
)
DESTRUCTIVE_NODES = frozenset(
    {
        "DropStmt",
        "DropdbStmt",
        "TruncateStmt",
        "DropRoleStmt",
        "DropOwnedStmt",
        "DropTableSpaceStmt",
        "DropSubscriptionStmt",
        "DropUserMappingStmt",
        "ReassignOwnedStmt",
    }
)
PRIVILEGE_NODES = frozenset(
    {
        "GrantStmt",
        "GrantRoleStmt",
        "AlterRoleStmt",
        "CreateRoleStmt",
        "AlterDefaultPrivilegesStmt",
        "AlterOwnerStmt",
        "AlterRoleSetStmt",
        "CreatePolicyStmt",
        "AlterPolicyStmt",
    }
)
OPAQUE_NODES = frozenset({"CallStmt", "LoadStmt"})
# Built-in functions with effects outside the query's result (documented in docs/analysis.md).
SIDE_EFFECT_FUNCTIONS = frozenset(
    {
        "dblink",
        "dblink_exec",
        "lo_export",
        "lo_import",
        "lo_unlink",
        "pg_cancel_backend",
        "pg_file_write",
        "pg_ls_dir",
        "pg_read_binary_file",
        "pg_read_file",
        "pg_reload_conf",
        "pg_rotate_logfile",
        "pg_sleep",
        "pg_terminate_backend",
        "set_config",
        "setval",
        "nextval",
        "pg_advisory_lock",
        "query_to_xml",
        "pg_logical_emit_message",
    }
)
_SESSION_PRIVILEGE_VARS = frozenset({"role", "session_authorization"})
_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")
_MAX_FOLDED = 65536


class _Walk:
    """State of one analysis: the flattened statements and the limits."""

    def __init__(self, limits: Limits, shell: ShellAnalyser | None) -> None:
        self.limits = limits
        self.shell = shell
        self.statements: list[dict[str, Any]] = []
        self.prepared: set[str] = set()
        self.truncated = False

    def add(self, facts: dict[str, Any]) -> None:
        if len(self.statements) >= self.limits.max_sql_statements:
            self.truncated = True
            return
        self.statements.append(facts)


# --- parsing ---------------------------------------------------------------------------


def _parse(text: str) -> list[tuple[str, Node, str]]:
    """(node name, node, statement text) of each top-level statement; raises ParseError."""
    tree = json.loads(_pg.parse_sql_json(text))
    raw = text.encode("utf-8")
    out: list[tuple[str, Node, str]] = []
    for entry in tree.get("stmts", []):
        start = entry.get("stmt_location", 0)
        length = entry.get("stmt_len", 0)
        chunk = raw[start : start + length] if length else raw[start:]
        ((name, node),) = entry["stmt"].items()
        out.append((name, node, chunk.decode("utf-8", "replace")))
    return out


def _count_comments(text: str) -> int:
    try:
        return sum(1 for t in _pg.scan(text) if t.name in ("C_COMMENT", "SQL_COMMENT"))
    except _pg.ParseError:
        return 0


# --- small tree helpers --------------------------------------------------------------------


def _walk_nodes(tree: Any) -> Iterator[tuple[str, Any]]:
    """Every (key, value) pair in a JSON tree, depth first, in document order."""
    stack: list[Any] = [tree]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            pairs = list(item.items())
            yield from pairs
            stack.extend(v for _, v in reversed(pairs) if isinstance(v, dict | list))
        elif isinstance(item, list):
            stack.extend(v for v in reversed(item) if isinstance(v, dict | list))


def _strings(items: Any) -> list[str]:
    """The sval of each String node of a list (names such as schema.table)."""
    out: list[str] = []
    for item in items or []:
        if isinstance(item, dict) and "String" in item:
            out.append(item["String"].get("sval", ""))
    return out


def _relation(rv: Node, obj: str = "table") -> dict[str, Any]:
    return {
        "object": obj,
        "database": rv.get("catalogname"),
        "schema": rv.get("schemaname"),
        "name": rv.get("relname"),
    }


def _qualified(names: list[str], obj: str) -> dict[str, Any]:
    """A target from a dotted name list: name, schema.name or database.schema.name."""
    padded = [None] * (3 - len(names)) + list(names[-3:])
    return {"object": obj, "database": padded[0], "schema": padded[1], "name": padded[2]}


def _scan(tree: Any) -> tuple[list[dict[str, Any]], list[str]]:
    """Relations (RangeVar-shaped nodes) and called function names of a tree, in one pass."""
    relations: list[dict[str, Any]] = []
    functions: list[str] = []
    stack: list[Any] = [tree]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if "relname" in item:
                relations.append(_relation(item))
            call = item.get("FuncCall")
            if isinstance(call, dict):
                parts = _strings(call.get("funcname"))
                if parts:
                    functions.append(parts[-1].lower())
            stack.extend(v for v in item.values() if isinstance(v, dict | list))
        elif isinstance(item, list):
            stack.extend(v for v in item if isinstance(v, dict | list))
    return relations, functions


def _functions(tree: Any) -> list[str]:
    return _scan(tree)[1]


def _command(name: str, node: Node) -> str:
    if name == "DropStmt":
        return "DROP " + str(node.get("removeType", "OBJECT_UNKNOWN")).removeprefix(
            "OBJECT_"
        ).replace("_", " ")
    if name in ("GrantStmt", "GrantRoleStmt"):
        return ("GRANT" if node.get("is_grant") else "REVOKE") + (
            " ROLE" if name == "GrantRoleStmt" else ""
        )
    if name == "SelectStmt" and "intoClause" in node:
        return "SELECT INTO"
    if name == "DropdbStmt":
        return "DROP DATABASE"
    if name == "CreatedbStmt":
        return "CREATE DATABASE"
    return _CAMEL.sub(" ", name.removesuffix("Stmt")).upper()


# --- filters ----------------------------------------------------------------------------------


def _constant(expr: Any) -> bool:
    """True when an expression references no column, sub-query or function."""
    for key, _ in _walk_nodes({"_": expr}):
        if key in ("ColumnRef", "SubLink", "FuncCall", "ParamRef"):
            return False
    return True


def _same_column_equality(expr: Node) -> bool:
    aexpr = expr.get("A_Expr")
    if not isinstance(aexpr, dict) or _strings(aexpr.get("name")) != ["="]:
        return False
    left, right = aexpr.get("lexpr"), aexpr.get("rexpr")
    if not (
        isinstance(left, dict)
        and isinstance(right, dict)
        and "ColumnRef" in left
        and "ColumnRef" in right
    ):
        return False
    return bool(left["ColumnRef"].get("fields") == right["ColumnRef"].get("fields"))


def filter_kind(where: Any) -> str:
    """``none`` (no WHERE), ``trivial`` (constant, x = x, or OR with such a branch), ``present``."""
    if where is None:
        return "none"
    if _constant(where) or _same_column_equality(where):
        return "trivial"
    boolexpr = where.get("BoolExpr") if isinstance(where, dict) else None
    if isinstance(boolexpr, dict) and boolexpr.get("boolop") == "OR_EXPR":
        for arg in boolexpr.get("args", []):
            if filter_kind(arg) == "trivial":
                return "trivial"
    return "present"


# --- constant folding of dynamic SQL --------------------------------------------------------


def _fold(expr: Any, env: dict[str, str]) -> str | bytes | None:
    """The value of a constant string expression, or None when it is not constant."""
    if not isinstance(expr, dict) or len(expr) != 1:
        return None
    ((kind, node),) = expr.items()
    if kind == "A_Const":
        for key, field in (
            ("sval", "sval"),
            ("ival", "ival"),
            ("fval", "fval"),
            ("boolval", "boolval"),
        ):
            if key in node:
                value = node[key].get(field, 0 if key == "ival" else False)
                return ("true" if value else "false") if key == "boolval" else str(value)
        return "0" if "ival" in node else None
    if kind == "TypeCast":
        return _fold(node.get("arg"), env)
    if kind == "ColumnRef":
        names = _strings(node.get("fields"))
        return env.get(names[0]) if len(names) == 1 else None
    if kind == "A_Expr" and _strings(node.get("name")) == ["||"]:
        left, right = _fold(node.get("lexpr"), env), _fold(node.get("rexpr"), env)
        if isinstance(left, str) and isinstance(right, str):
            return _bounded(left + right)
        return None
    if kind == "FuncCall":
        return _fold_call(node, env)
    return None


def _bounded(text: str) -> str | None:
    return text if len(text) <= _MAX_FOLDED else None


def _fold_call(node: Node, env: dict[str, str]) -> str | bytes | None:
    names = _strings(node.get("funcname"))
    if not names:
        return None
    name = names[-1].lower()
    args = [_fold(a, env) for a in node.get("args", [])]
    if name == "decode" and len(args) == 2 and all(isinstance(a, str) for a in args):
        return _decode(str(args[0]), str(args[1]))
    if name == "convert_from" and len(args) == 2 and isinstance(args[0], bytes):
        return args[0].decode("utf-8", "replace")
    text_args = [a for a in args if isinstance(a, str)]
    if len(text_args) != len(args):
        return None
    return _fold_text_call(name, text_args)


def _fold_text_call(name: str, args: list[str]) -> str | None:
    if name == "chr" and len(args) == 1 and args[0].isdigit() and 0 < int(args[0]) < 0x110000:
        return chr(int(args[0]))
    if name == "concat":
        return _bounded("".join(args))
    if name == "concat_ws" and args:
        return _bounded(args[0].join(args[1:]))
    if name in ("upper", "lower", "reverse", "quote_ident", "btrim", "trim") and len(args) == 1:
        value = args[0]
        return {
            "upper": value.upper(),
            "lower": value.lower(),
            "reverse": value[::-1],
            "quote_ident": value,
            "btrim": value.strip(),
            "trim": value.strip(),
        }[name]
    if name == "quote_literal" and len(args) == 1:
        return "'" + args[0].replace("'", "''") + "'"
    if name == "replace" and len(args) == 3 and args[1]:
        return _bounded(args[0].replace(args[1], args[2]))
    if name == "format" and args:
        return _format(args[0], args[1:])
    return None


def _decode(text: str, encoding: str) -> bytes | None:
    try:
        if encoding.lower() == "base64":
            return base64.b64decode(text, validate=False)
        if encoding.lower() == "hex":
            return bytes.fromhex(text)
    except (ValueError, binascii.Error):
        return None
    return None


def _format(fmt: str, args: list[str]) -> str | None:
    out: list[str] = []
    i, n = 0, 0
    while i < len(fmt):
        ch = fmt[i]
        if ch != "%":
            out.append(ch)
            i += 1
            continue
        spec = fmt[i + 1 : i + 2]
        if spec == "%":
            out.append("%")
        elif spec in ("s", "I", "L") and n < len(args):
            value = args[n]
            out.append("'" + value.replace("'", "''") + "'" if spec == "L" else value)
            n += 1
        else:
            return None
        i += 2
    return _bounded("".join(out))


def _fold_expression(text: str, env: dict[str, str]) -> str | None:
    """Fold a PL/pgSQL expression (the text after EXECUTE) when it is constant."""
    try:
        stmts = _parse("SELECT " + text)
    except _pg.ParseError:
        return None
    if len(stmts) != 1 or stmts[0][0] != "SelectStmt":
        return None
    targets = stmts[0][1].get("targetList", [])
    if len(targets) != 1:
        return None
    value = _fold(targets[0].get("ResTarget", {}).get("val"), env)
    return value if isinstance(value, str) else None


# --- classification ---------------------------------------------------------------------------


def _base(name: str, node: Node, depth: int, via: str) -> dict[str, Any]:
    return {
        "node": name,
        "command": _command(name, node),
        "depth": depth,
        "via": via,
        "writes": name not in READ_NODES,
        "destructive": name in DESTRUCTIVE_NODES,
        "dynamic": False,
        "opaque": name in OPAQUE_NODES,
        "privilege": name in PRIVILEGE_NODES,
        "program": None,
        "server_file": None,
        "filter": None,
        "targets": [],
        "reads": [],
        "functions": [],
    }


def _opaque(command: str, depth: int, via: str, reason: str) -> dict[str, Any]:
    facts = _base("Opaque", {}, depth, via)
    facts.update(
        {
            "command": command,
            "writes": True,
            "destructive": True,
            "dynamic": True,
            "opaque": True,
            "reason": reason,
        }
    )
    return facts


def _classify(walk: _Walk, name: str, node: Node, text: str, depth: int, via: str) -> None:
    """Add the facts of one statement, then of the statements nested in it."""
    facts = _base(name, node, depth, via)
    nested: list[tuple[str, Node, str]] = []  # (name, node, via)
    if name in ("DeleteStmt", "UpdateStmt"):
        facts["targets"] = [_relation(node.get("relation", {}))]
        facts["filter"] = filter_kind(node.get("whereClause"))
        facts["destructive"] = facts["filter"] != "present"
    elif name in (
        "InsertStmt",
        "MergeStmt",
        "CreateStmt",
        "IndexStmt",
        "RuleStmt",
        "CreateTrigStmt",
    ):
        facts["targets"] = [_relation(node.get("relation", {}))]
        if name == "MergeStmt":
            deletes = [
                c
                for k, c in _walk_nodes(node.get("mergeWhenClauses", []))
                if k == "commandType" and c == "CMD_DELETE"
            ]
            facts["destructive"] = bool(deletes)
        if name == "RuleStmt":
            nested += [
                (n, a, "rule") for action in node.get("actions", []) for n, a in action.items()
            ]
    elif name in ("TruncateStmt", "LockStmt", "VacuumStmt"):
        facts["targets"] = [_relation(rv.get("RangeVar", rv)) for rv in node.get("relations", [])]
    elif name == "DropStmt":
        facts["targets"] = _drop_targets(node)
    elif name in ("DropdbStmt", "CreatedbStmt", "AlterDatabaseStmt", "AlterDatabaseSetStmt"):
        facts["targets"] = [
            {
                "object": "database",
                "database": node.get("dbname"),
                "schema": None,
                "name": node.get("dbname"),
            }
        ]
    elif name == "AlterTableStmt":
        facts["targets"] = [_relation(node.get("relation", {}))]
        subtypes = [c.get("AlterTableCmd", {}).get("subtype", "") for c in node.get("cmds", [])]
        facts["destructive"] = any(s.startswith("AT_Drop") for s in subtypes)
    elif name == "CreateTableAsStmt" or (name == "SelectStmt" and "intoClause" in node):
        into = node.get("into") or node.get("intoClause") or {}
        facts["targets"] = [_relation(into.get("rel", {}))]
        facts["writes"] = True
    elif name == "CopyStmt":
        _copy(facts, node, walk, depth)
    elif name == "ExplainStmt":
        analyze = any(
            o.get("DefElem", {}).get("defname") == "analyze"
            and o.get("DefElem", {}).get("arg", {}).get("Boolean", {}).get("boolval", True)
            is not False
            for o in node.get("options", [])
        )
        for inner_name, inner in node.get("query", {}).items():
            if analyze:
                nested.append((inner_name, inner, "explain_analyze"))
            else:
                facts["explains"] = _command(inner_name, inner)
    elif name == "PrepareStmt":
        walk.prepared.add(str(node.get("name", "")).lower())
        nested += [(n, q, "prepare") for n, q in node.get("query", {}).items()]
    elif name == "ExecuteStmt":
        if str(node.get("name", "")).lower() not in walk.prepared:
            facts.update({"writes": True, "destructive": True, "dynamic": True, "opaque": True})
    elif name == "VariableSetStmt":
        facts["privilege"] = str(node.get("name", "")).lower() in _SESSION_PRIVILEGE_VARS
    elif name == "GrantStmt":
        facts["targets"] = _grant_targets(node)
    elif name in ("CreateRoleStmt", "AlterRoleStmt", "DropRoleStmt"):
        facts["targets"] = _role_targets(node)
    elif name in OPAQUE_NODES:
        facts.update({"writes": True, "destructive": True, "dynamic": True})
    elif name == "DoStmt":
        _do(walk, facts, node, text, depth)
    elif name == "CreateFunctionStmt":
        nested += _function_body(walk, facts, node, text, depth)
    if name in ("SelectStmt", "InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt"):
        for cte in node.get("withClause", {}).get("ctes", []):
            for cte_name, cte_node in cte.get("CommonTableExpr", {}).get("ctequery", {}).items():
                if cte_name != "SelectStmt":
                    nested.append((cte_name, cte_node, "cte"))
    if name == "SelectStmt" and node.get("lockingClause"):
        facts["locks"] = True
    relations, functions = _scan(node)
    facts["reads"] = _dedupe([r for r in relations if r not in facts["targets"]])
    facts["functions"] = sorted(set(functions))
    walk.add(facts)
    for inner_name, inner, inner_via in nested:
        if depth + 1 > walk.limits.max_sql_depth:
            walk.add(_opaque(_command(inner_name, inner), depth + 1, inner_via, "too_deep"))
        else:
            _classify(walk, inner_name, inner, "", depth + 1, inner_via)


def _drop_targets(node: Node) -> list[dict[str, Any]]:
    obj = str(node.get("removeType", "OBJECT_UNKNOWN")).removeprefix("OBJECT_").lower()
    out: list[dict[str, Any]] = []
    for item in node.get("objects", []):
        if "List" in item:
            out.append(_qualified(_strings(item["List"].get("items")), obj))
        elif "String" in item:
            name = item["String"].get("sval")
            if obj == "schema":
                out.append({"object": obj, "database": None, "schema": name, "name": name})
            else:
                out.append({"object": obj, "database": None, "schema": None, "name": name})
        elif "ObjectWithArgs" in item:
            out.append(_qualified(_strings(item["ObjectWithArgs"].get("objname")), obj))
        elif "TypeName" in item:
            out.append(_qualified(_strings(item["TypeName"].get("names")), obj))
    return out


def _grant_targets(node: Node) -> list[dict[str, Any]]:
    obj = str(node.get("objtype", "OBJECT_UNKNOWN")).removeprefix("OBJECT_").lower()
    if node.get("targtype") == "ACL_TARGET_ALL_IN_SCHEMA":
        return [
            {"object": "schema", "database": None, "schema": s, "name": s, "all_in_schema": obj}
            for s in _strings(node.get("objects"))
        ]
    out: list[dict[str, Any]] = []
    for item in node.get("objects", []):
        if "RangeVar" in item:
            out.append(_relation(item["RangeVar"], obj))
        elif "String" in item:
            out.append(
                {
                    "object": obj,
                    "database": None,
                    "schema": None,
                    "name": item["String"].get("sval"),
                }
            )
    return out


def _role_targets(node: Node) -> list[dict[str, Any]]:
    role = node.get("role")
    names: list[Any] = []
    if isinstance(role, str):
        names.append(role)
    elif isinstance(role, dict):
        names.append(role.get("rolename"))
    names += [r.get("RoleSpec", {}).get("rolename") for r in node.get("roles", [])]
    out = [{"object": "role", "database": None, "schema": None, "name": n} for n in names if n]
    options = {o.get("DefElem", {}).get("defname") for o in node.get("options", [])}
    if out and options & {"superuser", "createrole", "bypassrls", "replication", "isreplication"}:
        out[0]["elevated"] = True
    return out


def _copy(facts: dict[str, Any], node: Node, walk: _Walk, depth: int) -> None:
    if node.get("relation"):
        facts["targets" if node.get("is_from") else "reads"] = [_relation(node["relation"])]
    facts["writes"] = (
        bool(node.get("is_from")) or bool(node.get("filename")) or bool(node.get("is_program"))
    )
    if node.get("is_program"):
        program = str(node.get("filename", ""))
        facts.update({"program": program, "destructive": True})
        if walk.shell is not None:
            facts["program_shell"] = walk.shell(program, depth + 1)
    elif node.get("filename"):
        facts["server_file"] = str(node["filename"])


def _language(node: Node, default: str) -> str:
    for option in node.get("options", []) + node.get("args", []):
        element = option.get("DefElem", {})
        if element.get("defname") == "language":
            return str(element.get("arg", {}).get("String", {}).get("sval", default)).lower()
    return default


def _body(node: Node) -> str | None:
    for option in node.get("options", []) + node.get("args", []):
        element = option.get("DefElem", {})
        if element.get("defname") == "as":
            arg = element.get("arg", {})
            if "String" in arg:
                return str(arg["String"].get("sval", ""))
            items = _strings(arg.get("List", {}).get("items"))
            return items[0] if items else None
    return None


def _function_body(
    walk: _Walk, facts: dict[str, Any], node: Node, text: str, depth: int
) -> list[tuple[str, Node, str]]:
    """Classify a CREATE FUNCTION/PROCEDURE body; returns parsed BEGIN ATOMIC statements."""
    facts["targets"] = [_qualified(_strings(node.get("funcname")), "function")]
    language = _language(node, "sql")
    if "sql_body" in node:
        return [
            (n, s, "function_body")
            for group in node["sql_body"].get("List", {}).get("items", [])
            for stmt in group.get("List", {}).get("items", [])
            for n, s in stmt.items()
        ]
    body = _body(node)
    if language == "sql" and body is not None:
        _nested_text(walk, body, depth + 1, "function_body")
    elif language == "plpgsql":
        _plpgsql(walk, text, depth + 1, "function_body")
    else:
        facts["language"] = language
        walk.add(
            _opaque(f"{language.upper()} BODY", depth + 1, "function_body", "untrusted_language")
        )
    return []


def _do(walk: _Walk, facts: dict[str, Any], node: Node, text: str, depth: int) -> None:
    facts["dynamic"] = True
    language = _language(node, "plpgsql")
    if language == "plpgsql":
        _plpgsql(walk, text, depth + 1, "do")
    else:
        facts["language"] = language
        walk.add(_opaque(f"{language.upper()} BLOCK", depth + 1, "do", "untrusted_language"))


def _nested_text(walk: _Walk, text: str, depth: int, via: str, *, dynamic: bool = False) -> None:
    """Parse a string that the database will run as SQL and classify what it holds."""
    if depth > walk.limits.max_sql_depth:
        walk.add(_opaque("SQL", depth, via, "too_deep"))
        return
    try:
        stmts = _parse(text)
    except _pg.ParseError:
        walk.add(_opaque("SQL", depth, via, "syntax_error"))
        return
    first = len(walk.statements)
    for name, node, chunk in stmts:
        if walk.truncated:
            break
        _classify(walk, name, node, chunk, depth, via)
    if dynamic:
        for facts in walk.statements[first:]:
            facts["dynamic"] = True


def _plpgsql(walk: _Walk, text: str, depth: int, via: str) -> None:
    """Classify the SQL inside a PL/pgSQL body (a DO block or a CREATE FUNCTION)."""
    if depth > walk.limits.max_sql_depth:
        walk.add(_opaque("PL/pgSQL", depth, via, "too_deep"))
        return
    try:
        tree = json.loads(_pg.parse_plpgsql_json(text))
    except (_pg.ParseError, ValueError):
        walk.add(_opaque("PL/pgSQL", depth, via, "syntax_error"))
        return
    env = _constants(tree)
    for key, value in _walk_nodes(tree):
        if not isinstance(value, dict):
            continue
        if key in ("PLpgSQL_stmt_execsql",):
            _nested_text(walk, _expr(value.get("sqlstmt")), depth, via)
        elif key == "PLpgSQL_stmt_perform":
            _nested_text(walk, _expr(value.get("expr")), depth, via)
        elif key in ("PLpgSQL_stmt_dynexecute", "PLpgSQL_stmt_dynfors"):
            _dynamic(walk, _expr(value.get("query")), env, depth, via)
        elif key in ("PLpgSQL_stmt_open", "PLpgSQL_stmt_return_query"):
            if value.get("dynquery"):
                _dynamic(walk, _expr(value.get("dynquery")), env, depth, via)
            elif value.get("query"):
                _nested_text(walk, _expr(value.get("query")), depth, via)


def _expr(holder: Any) -> str:
    if isinstance(holder, dict):
        return str(holder.get("PLpgSQL_expr", {}).get("query", ""))
    return ""


def _constants(tree: Any) -> dict[str, str]:
    """Variables with a constant default, when nothing in the body can assign any variable."""
    assigning = {
        "PLpgSQL_stmt_assign",
        "PLpgSQL_stmt_fori",
        "PLpgSQL_stmt_fors",
        "PLpgSQL_stmt_forc",
        "PLpgSQL_stmt_foreach_a",
        "PLpgSQL_stmt_dynfors",
        "PLpgSQL_stmt_getdiag",
        "PLpgSQL_stmt_fetch",
    }
    env: dict[str, str] = {}
    for key, value in _walk_nodes(tree):
        if key in assigning or (isinstance(value, dict) and value.get("into")):
            return {}
        if key == "PLpgSQL_var" and isinstance(value, dict) and "default_val" in value:
            folded = _fold_expression(_expr(value["default_val"]), {})
            if folded is not None:
                env[str(value.get("refname"))] = folded
    return env


def _dynamic(walk: _Walk, expression: str, env: dict[str, str], depth: int, via: str) -> None:
    folded = _fold_expression(expression, env)
    if folded is None:
        facts = _opaque("EXECUTE", depth, via, "unresolved_dynamic_sql")
        facts["expression"] = expression[:200]
        walk.add(facts)
        return
    _nested_text(walk, folded, depth + 1, "dynamic", dynamic=True)


def _dedupe(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: set[str] = set()
    out: list[dict[str, Any]] = []
    for item in items:
        key = json.dumps(item, sort_keys=True)
        if key not in seen:
            seen.add(key)
            out.append(item)
    return out


# --- public entry points --------------------------------------------------------------------


def _summary(walk: _Walk, top_count: int, comments: int) -> dict[str, Any]:
    stmts = walk.statements
    targets = _dedupe([t for s in stmts for t in s["targets"]])
    functions = sorted({f for s in stmts for f in s["functions"]})
    opaque = walk.truncated or any(s["opaque"] for s in stmts)
    return {
        "statement_count": top_count,
        "multi_statement": top_count > 1,
        "statements": stmts,
        "commands": sorted({s["command"] for s in stmts}),
        "writes": opaque or any(s["writes"] for s in stmts),
        "destructive": opaque or any(s["destructive"] for s in stmts),
        "dynamic": opaque or any(s["dynamic"] for s in stmts),
        "opaque": opaque,
        "privilege": any(s["privilege"] for s in stmts) or any(t.get("elevated") for t in targets),
        "executes_program": any(s["program"] is not None for s in stmts),
        "server_file": any(s["server_file"] is not None for s in stmts),
        "targets": targets,
        "databases": sorted({t["database"] for t in targets if t.get("database")}),
        "schemas": sorted({t["schema"] for t in targets if t.get("schema")}),
        "tables": sorted({t["name"] for t in targets if t["object"] == "table" and t.get("name")}),
        "reads": _dedupe([r for s in stmts for r in s["reads"]]),
        "functions": functions,
        "side_effect_functions": sorted(set(functions) & SIDE_EFFECT_FUNCTIONS),
        "max_depth": max((s["depth"] for s in stmts), default=0),
        "truncated": walk.truncated,
        "comments": comments,
    }


def analyse_sql(
    value: object, *, limits: Limits, shell: ShellAnalyser | None = None, depth: int = 0
) -> dict[str, Any]:
    """Facts for a parameter typed ``sql``; see the module docstring."""
    if not isinstance(value, str):
        return _unparsed("sql", "not_a_string")
    if len(value) > limits.max_sql_chars:
        return _unparsed("sql", "too_long", length=len(value))
    if depth > limits.max_sql_depth:
        return _unparsed("sql", "too_deep")
    try:
        stmts = _parse(value)
    except _pg.ParseError as exc:
        return _unparsed("sql", "syntax_error", error=str(exc))
    if not stmts:
        return _unparsed("sql", "empty")
    walk = _Walk(limits, shell)
    for name, node, chunk in stmts:
        if walk.truncated:
            break
        _classify(walk, name, node, chunk, depth, "top")
    return {"type": "sql", "parsed": True, **_summary(walk, len(stmts), _count_comments(value))}


def analyse_sql_condition(
    value: object, *, limits: Limits, shell: ShellAnalyser | None = None
) -> dict[str, Any]:
    """Facts for a WHERE condition a tool splices into its own statement (``sql_condition``).

    The condition is read as ``SELECT 1 WHERE <condition>``: anything after the first
    statement was injected, and is classified like ``sql``.
    """
    if not isinstance(value, str):
        return _unparsed("sql_condition", "not_a_string")
    if len(value) > limits.max_sql_chars:
        return _unparsed("sql_condition", "too_long", length=len(value))
    prefix = "SELECT 1 WHERE "
    try:
        stmts = _parse(prefix + value)
    except _pg.ParseError as exc:
        return _unparsed("sql_condition", "syntax_error", error=str(exc))
    if not stmts or stmts[0][0] != "SelectStmt":
        return _unparsed("sql_condition", "not_a_condition")
    first = stmts[0][1]
    walk = _Walk(limits, shell)
    for name, node, chunk in stmts[1:]:
        _classify(walk, name, node, chunk, 0, "injection")
    summary = _summary(walk, len(stmts) - 1, _count_comments(value))
    extra_clauses = sorted(
        k for k in first if k not in ("targetList", "whereClause", "limitOption", "op")
    )
    functions = sorted(set(_functions(first.get("whereClause"))))
    return {
        "type": "sql_condition",
        "parsed": True,
        "filter": filter_kind(first.get("whereClause")),
        "injection": len(stmts) > 1 or bool(extra_clauses),
        "extra_clauses": extra_clauses,
        "condition_functions": functions,
        **summary,
        "side_effect_functions": sorted(
            set(summary["side_effect_functions"]) | (set(functions) & SIDE_EFFECT_FUNCTIONS)
        ),
    }


def _unparsed(kind: str, reason: str, **extra: Any) -> dict[str, Any]:
    """The most dangerous reading of SQL that could not be read."""
    facts: dict[str, Any] = {
        "type": kind,
        "parsed": False,
        "reason": reason,
        **extra,
        "statements": [],
        "writes": True,
        "destructive": True,
        "dynamic": True,
        "opaque": True,
        "privilege": True,
        "executes_program": True,
        "targets": [],
        "databases": [],
    }
    if kind == "sql_condition":
        facts.update({"filter": "trivial", "injection": True})
    return facts
