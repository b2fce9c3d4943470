"""The ClickHouse HTTP interface over the embedded store, read-only and within fixed limits: what
Grafana's ClickHouse data source (protocol http) and other ClickHouse HTTP clients read through.

A request goes: credentials → admission (at most ``max_concurrent_queries`` running, a few
waiting) → a thread with a fresh chDB handle on the store's data path → limits set on that
handle → the statement checked with ClickHouse's own parser → the query → the answer in the
format asked for. Every refusal is a ClickHouse-style error: body ``Code: N. DB::Exception:
… (NAME)``, header ``X-ClickHouse-Exception-Code``, and the HTTP status ClickHouse gives it.

Why each check exists (chDB 4.4 / engine 26.9, measured): chDB's ``readonly`` leaves holes —
``INTO OUTFILE`` writes its file, ``KILL QUERY`` kills the service's own inserts (one user runs
everything), several statements in one text all run, ``SETTINGS`` in a subquery changes
settings, the scalar ``file()`` reads files, and ``readonly=2`` (which clients need to pass
their settings, and clickhouse-connect to see them as changeable) allows ``file()``,
``url()`` and ``INSERT INTO FUNCTION``. So the statement is parsed by the engine
(``formatQuery`` proves it is one statement and gives its canonical text, ``EXPLAIN AST`` its
tree), and only reads that reach nothing outside the store get to run.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import gzip
import hmac
import json
import logging
import os
import re
import struct
import time
import uuid
import zlib
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import chdb
from aiohttp import web
from multidict import MultiDict

from tokenotel.errors import ConfigError, StoreUnavailable, TokenotelError
from tokenotel.security.tls import ServerTls
from tokenotel.store.client import Store

log = logging.getLogger(__name__)

# -- ClickHouse error codes this interface answers with (ClickHouse's ErrorCodes.cpp) ---------

CANNOT_PARSE_INPUT_ASSERTION_FAILED = (27, "CANNOT_PARSE_INPUT_ASSERTION_FAILED")
NOT_IMPLEMENTED = (48, "NOT_IMPLEMENTED")
SYNTAX_ERROR = (62, "SYNTAX_ERROR")
QUERY_IS_TOO_LARGE = (229, "QUERY_IS_TOO_LARGE")
READONLY = (164, "READONLY")
TOO_MANY_SIMULTANEOUS_QUERIES = (202, "TOO_MANY_SIMULTANEOUS_QUERIES")
NETWORK_ERROR = (210, "NETWORK_ERROR")
INTO_OUTFILE_NOT_ALLOWED = (358, "INTO_OUTFILE_NOT_ALLOWED")
ACCESS_DENIED = (497, "ACCESS_DENIED")
AUTHENTICATION_FAILED = (516, "AUTHENTICATION_FAILED")
UNKNOWN_EXCEPTION = (1002, "UNKNOWN_EXCEPTION")

#: HTTP status of an error code, as ClickHouse's exceptionCodeToHTTPStatus gives it (codes not
#: listed: 500). Two differ on purpose: the store unreachable (NETWORK_ERROR) and too many
#: queries at once are 503 with Retry-After, the service's answer whenever coming back later
#: will work (clickhouse-connect retries a 503 by itself).
_STATUS_OF_CODES: dict[int, tuple[int, ...]] = {
    # BAD_ARGUMENTS, CANNOT_PARSE_*, SYNTAX_ERROR, TYPE_MISMATCH, the AST errors …
    400: (
        *(36, 427, 6, 25, 26, 38, 41, 72, 441, 675, 676, 27, 376, 15, 44, 37, 123, 8, 167),
        *(168, 223, 62, 117, 53, 321),
    ),
    401: (194,),  # REQUIRED_PASSWORD
    403: (192, 193, 516, 512, 497),  # UNKNOWN_USER … AUTHENTICATION_FAILED, ACCESS_DENIED
    # UNKNOWN_TABLE, _FUNCTION, _IDENTIFIER, _TYPE, _STORAGE, _DATABASE, _SETTING, _FORMAT …
    404: (60, 46, 47, 50, 56, 81, 115, 152, 63, 73, 336, 78, 511),
    408: (159,),  # TIMEOUT_EXCEEDED
    411: (381,),
    413: (229,),  # QUERY_IS_TOO_LARGE
    415: (779,),
    501: (48,),  # NOT_IMPLEMENTED
    503: (209, 76, 439, 202, 210),  # … TOO_MANY_SIMULTANEOUS_QUERIES, NETWORK_ERROR
}
_HTTP_STATUS = {code: status for status, codes in _STATUS_OF_CODES.items() for code in codes}

# -- what may run ------------------------------------------------------------------------------

#: Statements that only read (their first word in the canonical text).
READ_STATEMENTS = frozenset({"SELECT", "WITH", "SHOW", "DESCRIBE", "EXISTS", "EXPLAIN"})
#: EXPLAIN of a SELECT only; ``EXPLAIN TABLE OVERRIDE`` names a table function of its own.
EXPLAIN_KINDS = frozenset(
    {"EXPLAIN", "EXPLAIN AST", "EXPLAIN SYNTAX", "EXPLAIN QUERY TREE", "EXPLAIN PLAN"}
    | {"EXPLAIN PIPELINE", "EXPLAIN ESTIMATE"}
)
#: Table functions that read nothing but their arguments and the store's own tables.
LOCAL_TABLE_FUNCTIONS = frozenset(
    {"numbers", "numbers_mt", "zeros", "zeros_mt", "generate_series", "generateseries"}
    | {"generaterandom", "values", "view", "viewifpermitted", "merge", "format", "null"}
)
#: Functions that reach outside the store (files, URLs, other servers, programs, the request
#: body), refused wherever they appear; in a FROM, anything not in LOCAL_TABLE_FUNCTIONS is
#: refused anyway.
OUTSIDE_FUNCTIONS = frozenset(
    {"file", "filecluster", "url", "urlcluster", "remote", "remotesecure", "cluster"}
    | {"clusterallreplicas", "s3", "s3cluster", "gcs", "oss", "cosn", "hdfs", "hdfscluster"}
    | {"azureblobstorage", "azureblobstoragecluster", "mysql", "postgresql", "sqlite"}
    | {"mongodb", "redis", "jdbc", "odbc", "executable", "input", "arrowflight", "ytsaurus"}
    | {"catboostevaluate", "dictionary"}
)
_OUTSIDE_PREFIXES = ("iceberg", "deltalake", "hudi", "paimon", "azure", "s3", "hdfs")
#: Output formats a client may ask for; the rest read schema or template files on the server
#: (Template, CapnProto, Protobuf …) or are input formats.
OUTPUT_FORMATS = {
    name.lower(): name
    for name in (
        "Native",
        "Arrow",
        "ArrowStream",
        "Parquet",
        "ORC",
        "Avro",
        "JSON",
        "JSONStrings",
        "JSONCompact",
        "JSONCompactStrings",
        "JSONColumns",
        "JSONCompactColumns",
        "JSONColumnsWithMetadata",
        "JSONEachRow",
        "JSONLines",
        "NDJSON",
        "JSONStringsEachRow",
        "JSONCompactEachRow",
        "JSONCompactEachRowWithNames",
        "JSONCompactEachRowWithNamesAndTypes",
        "JSONCompactStringsEachRow",
        "JSONObjectEachRow",
        "TabSeparated",
        "TSV",
        "TabSeparatedRaw",
        "TSVRaw",
        "TabSeparatedWithNames",
        "TSVWithNames",
        "TabSeparatedWithNamesAndTypes",
        "TSVWithNamesAndTypes",
        "CSV",
        "CSVWithNames",
        "CSVWithNamesAndTypes",
        "RowBinary",
        "RowBinaryWithNames",
        "RowBinaryWithNamesAndTypes",
        "Values",
        "Vertical",
        "Pretty",
        "PrettyCompact",
        "PrettyCompactMonoBlock",
        "PrettySpace",
        "PrettyNoEscapes",
        "PrettyCompactNoEscapes",
        "Markdown",
        "XML",
        "RawBLOB",
        "LineAsString",
        "Null",
    )
}
_CONTENT_TYPES = {
    "json": "application/json; charset=UTF-8",
    "tabseparated": "text/tab-separated-values; charset=UTF-8",
    "csv": "text/csv; charset=UTF-8; header=absent",
    "xml": "application/xml; charset=UTF-8",
}
_BINARY_FORMATS = ("native", "arrow", "arrowstream", "parquet", "orc", "avro", "rowbinary")
DEFAULT_FORMAT = "TabSeparated"

# -- what a client may set in the URL -----------------------------------------------------------

#: Parameters of the HTTP protocol itself, not settings of the query; taken or ignored.
#: ``session_id``: every request here stands alone (no temporary tables, no SET to keep), so a
#: session is ignored rather than refused (clickhouse-connect sends one by default).
TRANSPORT_PARAMETERS = frozenset(
    {"query", "database", "default_format", "query_id", "session_id", "session_timeout"}
    | {"session_check", "compress", "decompress", "enable_http_compression", "user", "password"}
    | {"http_zlib_compression_level", "client_protocol_version", "quota_key", "buffer_size"}
    | {"wait_end_of_query", "send_progress_in_http_headers", "http_headers_progress_interval_ms"}
    | {"cancel_http_readonly_queries_on_client_close", "http_response_buffer_size", "role"}
    | {"network_compression_method", "network_zstd_compression_level"}
)
#: Settings that change how results are computed or written, never what a query may reach or
#: spend: passed to the engine as given. Settings naming files (``format_schema``,
#: ``output_format_schema``, ``format_template_*``) are not among them.
RESULT_SETTINGS = frozenset(
    {"date_time_input_format", "date_time_output_format", "session_timezone", "join_use_nulls"}
    | {"output_format_json_quote_64bit_integers", "output_format_json_quote_64bit_floats"}
    | {"output_format_json_quote_denormals", "output_format_json_quote_decimals"}
    | {"output_format_json_named_tuples_as_objects", "output_format_json_array_of_rows"}
    | {"output_format_arrow_string_as_string", "output_format_arrow_low_cardinality_as_dictionary"}
    | {"output_format_arrow_fixed_string_as_fixed_byte_array", "output_format_write_statistics"}
    | {"output_format_decimal_trailing_zeros", "output_format_pretty_max_rows", "extremes"}
    | {"log_comment", "limit", "offset", "result_overflow_mode", "timeout_overflow_mode"}
    | {"cast_string_to_dynamic_use_inference"}
)
_OVERFLOW_MODES = frozenset({"throw", "break"})

#: The query clickhouse-go sends first on every HTTP connection; it decodes the answer at the
#: revision it sent as ``client_protocol_version`` and every later answer at the ``revision()``
#: it reads here. chDB writes Native at revision 0 only, so the answer says 0.
GO_HANDSHAKE = "SELECT displayName(), version(), revision(), timezone()"
#: Revisions at which Native blocks start carrying block info, and a serialization byte per
#: column (ClickHouse's DBMS_MIN_REVISION_WITH_CUSTOM_SERIALIZATION).
_REVISION_WITH_BLOCK_INFO = 1
_REVISION_WITH_CUSTOM_SERIALIZATION = 54454
#: The engine's query parameter that carries the client's text into formatQuery.
_SQL_PARAMETER = "tokenotel_checked_sql"
MAX_REQUEST_BYTES = 1 << 20  # a query text; ClickHouse's own max_query_size is 256 KiB

T = TypeVar("T")


@dataclass(frozen=True)
class QueryLimits:
    """What one query may spend, set by the service on every query; a client's settings may
    lower a limit, never raise it. The defaults keep a dashboard within about one core of a
    two-core machine, so ingest keeps the rest."""

    max_execution_time_s: int = 30
    max_threads: int = 1
    max_memory_usage_bytes: int = 1 << 30
    max_result_rows: int = 1_000_000
    max_result_bytes: int = 256 << 20
    max_concurrent_queries: int = 2
    #: Requests that wait for a running query to finish before they are refused: a dashboard
    #: sends all its panels at once, and Grafana does not retry a refused one.
    max_queued_queries: int = 64
    #: Query time per second of wall clock, on average: a quarter of one core. A dashboard's
    #: refresh (a burst of panels) runs at once within ``query_burst_s``; a steady stream of
    #: queries waits, so ingest keeps the rest of the machine whatever Grafana asks.
    query_share: float = 0.25
    query_burst_s: float = 2.0

    def settings(self) -> dict[str, int]:
        """The limits as ClickHouse settings (name → the most a client may set)."""
        return {
            "max_execution_time": self.max_execution_time_s,
            "max_threads": self.max_threads,
            "max_memory_usage": self.max_memory_usage_bytes,
            "max_result_rows": self.max_result_rows,
            "max_result_bytes": self.max_result_bytes,
        }


class ClickHouseError(Exception):
    """An answer in ClickHouse's error form: code, name and message."""

    def __init__(self, error: tuple[int, str], message: str) -> None:
        super().__init__(message)
        self.code, self.name = error
        self.message = message

    @classmethod
    def from_engine(cls, error: Exception) -> ClickHouseError:
        """The engine's own error (``Code: N. DB::Exception: … (NAME)``), passed on as it is."""
        text = str(error).strip()
        start = text.find("Code: ")
        text = text[start:] if start >= 0 else text
        match = re.match(r"Code: (\d+)\. (?:DB::Exception: )?(.*)", text, re.S)
        if match is None:
            return cls(UNKNOWN_EXCEPTION, text or "the engine failed without a message")
        code, rest = int(match.group(1)), match.group(2)
        name = re.search(r"\(([A-Z_0-9]+)\)(?: \(version [^)]*\))?\s*$", rest)
        message = rest[: name.start()].rstrip(" .") if name else rest.rstrip(" .")
        return cls((code, name.group(1) if name else "UNKNOWN"), message)

    @property
    def http_status(self) -> int:
        return _HTTP_STATUS.get(self.code, 500)

    def body(self) -> bytes:
        return f"Code: {self.code}. DB::Exception: {self.message}. ({self.name})\n".encode()


# -- the request, as parsed from HTTP ------------------------------------------------------------


@dataclass
class QueryRequest:
    """One query as a client sent it."""

    sql: str
    database: str
    default_format: str
    settings: dict[str, str]  # the client's settings (URL parameters that are not transport)
    parameters: dict[str, str]  # param_<name> → value, in ClickHouse's escaped text form
    client_revision: int  # client_protocol_version: how the client decodes Native
    http_compression: str | None  # gzip or deflate, when asked for and accepted


@dataclass
class QueryAnswer:
    body: bytes
    format: str
    summary: dict[str, str] = field(default_factory=dict)
    timezone: str = ""


@dataclass(frozen=True)
class Statement:
    """A statement the checks let through."""

    kind: str  # SELECT, SHOW, DESCRIBE, EXISTS or EXPLAIN (WITH … SELECT is a SELECT)
    canonical: str  # formatQuery's text, without its FORMAT clause
    format: str | None  # the FORMAT clause's format, if any


# -- the statement checks ---------------------------------------------------------------------


def _escaped(value: str) -> str:
    """``value`` as ClickHouse's escaped text form, the form query parameters are read in."""
    return (
        value.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")
    )


def _run(conn: Any, sql: str, fmt: str, parameters: Mapping[str, str] | None = None) -> bytes:
    try:
        return bytes(conn.query(sql, fmt, params=dict(parameters or {})).bytes())
    except Exception as e:
        raise ClickHouseError.from_engine(e) from None


def check_statement(conn: Any, sql: str, parameters: Mapping[str, str]) -> Statement:
    """The statement ``sql`` if it may run; raises ClickHouseError with the reason if not.

    The engine's parser decides: ``formatQuery`` rejects anything but one statement and writes
    its canonical text (one clause a line, comments gone, every newline in a literal escaped, so
    a line that starts with ``INTO OUTFILE`` or ``SETTINGS`` is that clause); ``EXPLAIN AST``
    gives the tree whose functions and SETTINGS are looked at."""
    try:
        text = _run(
            conn,
            f"SELECT formatQuery({{{_SQL_PARAMETER}:String}})",
            "RawBLOB",
            {_SQL_PARAMETER: _escaped(sql)},
        ).decode()
    except ClickHouseError as e:
        # The parser's message, without the scope of the formatQuery call that carried it.
        e.message = re.split(r"\s?: In scope SELECT formatQuery\(", e.message)[0].rstrip(". ")
        raise
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise ClickHouseError(SYNTAX_ERROR, "Empty query: send one SELECT, WITH, SHOW, DESCRIBE …")
    words = lines[0].split()
    kind = "SELECT" if lines[0].startswith("(") else words[0].upper()
    if kind not in READ_STATEMENTS:
        what = " ".join(words[:2]) if words[0].upper() in ("KILL", "SYSTEM", "INSERT") else kind
        raise ClickHouseError(
            READONLY,
            f"Cannot execute {what} here: the ClickHouse interface of tokenotel is read-only; "
            "send one SELECT, WITH, SHOW, DESCRIBE, EXISTS or EXPLAIN",
        )
    kind = "SELECT" if kind == "WITH" else kind
    fmt = None
    kept = []
    for line in lines:
        clause = line.lstrip()
        if clause.upper().startswith("INTO OUTFILE"):
            raise ClickHouseError(
                INTO_OUTFILE_NOT_ALLOWED,
                "INTO OUTFILE is not allowed: tokenotel never writes files for a query; "
                "read the result from the HTTP response instead",
            )
        if clause.upper().startswith("SETTINGS "):
            raise _settings_in_query(clause.split(None, 2)[1])
        if line.startswith("FORMAT ") and len(line.split()) == 2:
            fmt = line.split()[1]
            continue
        kept.append(line)
    canonical = "\n".join(kept)
    for name in _called_functions(canonical):
        _check_function(name, in_from=False)
    _check_tree(conn, kind, canonical, parameters)
    return Statement(kind, canonical, fmt)


def _settings_in_query(name: str) -> ClickHouseError:
    return ClickHouseError(
        READONLY,
        f"Cannot modify '{name}' setting in readonly mode: tokenotel sets the settings of every "
        "query here; pass the ones a client may change (lower limits, output settings) as URL "
        "parameters",
    )


_TOKEN = re.compile(
    r"'(?:[^'\\]|\\.)*'"  # a string literal: skipped
    r"|`((?:[^`\\]|\\.)*)`(?=\()"  # a quoted name before "("
    r'|"((?:[^"\\]|\\.)*)"(?=\()'
    r"|([A-Za-z_][A-Za-z0-9_]*)(?=\()"  # a name before "("
    r"|`(?:[^`\\]|\\.)*`|\"(?:[^\"\\]|\\.)*\""  # other quoted names: skipped
)


def _called_functions(canonical: str) -> list[str]:
    """Names written as ``name(`` outside string literals and quoted names (the canonical text
    has no comments): a second look at statements whose tree EXPLAIN AST does not show (SHOW)."""
    names = []
    for match in _TOKEN.finditer(canonical):
        name = match.group(1) or match.group(2) or match.group(3)
        if name:
            names.append(name)
    return names


def _check_function(name: str, *, in_from: bool) -> None:
    lowered = name.lower()
    outside = lowered in OUTSIDE_FUNCTIONS or (in_from and lowered.startswith(_OUTSIDE_PREFIXES))
    if outside or (in_from and lowered not in LOCAL_TABLE_FUNCTIONS):
        allowed = ", ".join(sorted(LOCAL_TABLE_FUNCTIONS))
        raise ClickHouseError(
            ACCESS_DENIED,
            f"{name}() is not allowed: queries here read the tokenotel store only, never files, "
            f"URLs, other servers or programs (table functions allowed: {allowed})",
        )


def _check_tree(conn: Any, kind: str, canonical: str, parameters: Mapping[str, str]) -> None:
    """Every function and SETTINGS clause in the statement's tree (EXPLAIN AST)."""
    if kind == "SELECT":
        # As a subquery, EXPLAIN refuses output options of any kind: nothing is ever written.
        sql = f"SELECT explain FROM (EXPLAIN AST {canonical})"
    else:
        sql = f"EXPLAIN AST {canonical}"
    # TabSeparated escapes every newline in a value, so a line is a node of the tree.
    rows = _run(conn, sql, "TabSeparated", parameters).decode().splitlines()
    nodes = [(len(row) - len(row.lstrip(" ")), row.strip()) for row in rows if row.strip()]
    if kind == "EXPLAIN":
        explained = nodes[0][1].split(" (children")[0].removeprefix("Explain ").strip()
        if (
            explained not in EXPLAIN_KINDS
            or len(nodes) < 2
            or not nodes[1][1].startswith("SelectWithUnionQuery")
        ):
            raise ClickHouseError(
                READONLY,
                f"{explained} is not allowed here: EXPLAIN a SELECT (AST, SYNTAX, "
                "QUERY TREE, PLAN, PIPELINE or ESTIMATE)",
            )
    parents: list[str] = []
    for depth, node in nodes:
        del parents[depth:]
        words = node.split()
        if words[0] == "Set":
            raise _settings_in_query("a setting")
        if words[0] == "Function" and len(words) > 1:
            _check_function(words[1], in_from=bool(parents) and parents[-1] == "TableExpression")
        if words[0] in ("InsertQuery", "KillQueryQuery", "SystemQuery"):
            raise ClickHouseError(READONLY, f"{words[0]} cannot run here: read-only")
        parents.append(words[0])


# -- Native blocks the engine cannot write ------------------------------------------------------


def _varuint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _string(value: str) -> bytes:
    data = value.encode()
    return _varuint(len(data)) + data


def native_block(
    columns: list[tuple[str, str]], revision: int, values: list[bytes] | None = None
) -> bytes:
    """A Native block at the client's ``revision``: the header only (``values`` None: a result
    without rows, which chDB writes as nothing at all, where clients need the column names and
    types), or one row whose columns are already encoded."""
    out = bytearray()
    if revision >= _REVISION_WITH_BLOCK_INFO:
        # block info: field 1 is_overflows = false, field 2 bucket_num = -1, end
        out += _varuint(1) + b"\x00" + _varuint(2) + struct.pack("<i", -1) + _varuint(0)
    out += _varuint(len(columns)) + _varuint(0 if values is None else 1)
    for index, (name, type_name) in enumerate(columns):
        out += _string(name) + _string(type_name)
        if revision >= _REVISION_WITH_CUSTOM_SERIALIZATION:
            out += b"\x00"
        if values is not None:
            out += values[index]
    return bytes(out)


# -- one query, in a thread --------------------------------------------------------------------


class _Engine:
    """Runs queries on fresh chDB handles on the store's data path (0.1 to 0.3 ms each); a handle
    carries its own settings and database, so nothing a query sets reaches the service's
    inserts or another query."""

    def __init__(self, store: Store, limits: QueryLimits) -> None:
        self.store = store
        self.limits = limits
        self.path = os.path.realpath(store.options.data_dir)
        self.default_database = store.options.database

    def execute(self, request: QueryRequest) -> QueryAnswer:
        try:
            # The store opens the engine (and applies migrations); until it can, the query
            # cannot run and the client should come back.
            self.store.connect()
        except StoreUnavailable as e:
            raise ClickHouseError(
                NETWORK_ERROR, f"the tokenotel store is unavailable: {e}"
            ) from None
        try:
            conn = chdb.connect(self.path)
        except Exception as e:
            raise ClickHouseError(NETWORK_ERROR, f"cannot open the tokenotel store: {e}") from None
        try:
            return self._execute(conn, request)
        finally:
            conn.close()

    def _execute(self, conn: Any, request: QueryRequest) -> QueryAnswer:
        settings = ", ".join(f"{k} = {v}" for k, v in self._settings(request).items())
        # The checks first, read-only already but not under the result limits: a statement's
        # tree has more lines than its result has rows.
        _run(
            conn,
            f"SET readonly = 2, max_execution_time = {self.limits.max_execution_time_s}",
            "TSV",
        )
        _run(conn, f"USE {_identifier(request.database or self.default_database)}", "TSV")
        statement = check_statement(conn, request.sql, request.parameters)
        _run(conn, f"SET {settings}", "TSV")
        fmt = OUTPUT_FORMATS.get((statement.format or request.default_format).lower())
        if fmt is None:
            asked = statement.format or request.default_format
            raise ClickHouseError(
                ACCESS_DENIED,
                f"Format {asked} is not served here; use one of "
                f"{', '.join(sorted(OUTPUT_FORMATS.values()))}",
            )
        timezone = _run(conn, "SELECT timezone()", "RawBLOB").decode()
        if fmt == "Native" and " ".join(statement.canonical.split()) == GO_HANDSHAKE:
            return QueryAnswer(
                self._handshake(conn, request.client_revision), fmt, timezone=timezone
            )
        try:
            result = conn.query(request.sql, fmt, params=dict(request.parameters))
        except Exception as e:
            raise ClickHouseError.from_engine(e) from None
        body = bytes(result.bytes())
        if fmt == "Native" and not body:
            body = native_block(self._columns(conn, statement, request.parameters), 0)
        summary = {
            "read_rows": str(result.rows_read()),
            "read_bytes": str(result.bytes_read()),
            "written_rows": "0",
            "written_bytes": "0",
            "total_rows_to_read": str(result.rows_read()),
            "result_bytes": str(len(body)),
            "elapsed_ns": str(int(result.elapsed() * 1e9)),
        }
        return QueryAnswer(body, fmt, summary, timezone)

    def _settings(self, request: QueryRequest) -> dict[str, str]:
        """The limits (a client's own value only when lower), the client's result settings,
        and readonly=2 last: writes refused by the engine too, settings still changeable so
        clients see them as such (clickhouse-connect reads system.settings to decide)."""
        chosen: dict[str, str] = {}
        limits = self.limits.settings()
        for name, value in request.settings.items():
            if name in limits:
                asked = _number(name, value)
                if 0 < asked < limits[name]:
                    limits[name] = asked
            elif name == "readonly" and value in ("1", "2"):
                continue  # asking for read-only is asking for what every query here is
            elif name in RESULT_SETTINGS:
                if name.endswith("overflow_mode") and value not in _OVERFLOW_MODES:
                    raise ClickHouseError(READONLY, f"{name} must be throw or break, not {value!r}")
                chosen[name] = _quoted(value)
            else:
                raise ClickHouseError(
                    READONLY,
                    f"Cannot modify '{name}' setting in readonly mode: tokenotel lets clients "
                    f"lower its limits ({', '.join(sorted(limits))}) and change result settings "
                    f"({', '.join(sorted(RESULT_SETTINGS))}), nothing else",
                )
        forced = {name: str(value) for name, value in limits.items()}
        modes = {"timeout_overflow_mode": "'throw'", "result_overflow_mode": "'throw'"}
        return {**modes, **chosen, **forced, "readonly": "2"}

    def _columns(
        self, conn: Any, statement: Statement, parameters: Mapping[str, str]
    ) -> list[tuple[str, str]]:
        """Names and types of an empty result: DESCRIBE of a SELECT runs nothing; the other
        statements are cheap to run again."""
        if statement.kind == "SELECT":
            answer = _run(
                conn, f"DESCRIBE TABLE ({statement.canonical})", "JSONCompact", parameters
            )
            return [(row[0], row[1]) for row in json.loads(answer)["data"]]
        answer = _run(conn, statement.canonical, "JSONCompact", parameters)
        return [(column["name"], column["type"]) for column in json.loads(answer)["meta"]]

    def _handshake(self, conn: Any, client_revision: int) -> bytes:
        row = json.loads(_run(conn, "SELECT displayName(), version(), timezone()", "JSONCompact"))
        name, version, timezone = row["data"][0]
        columns = [
            ("displayName()", "String"),
            ("version()", "String"),
            ("revision()", "UInt32"),
            ("timezone()", "String"),
        ]
        values = [_string(name), _string(version), struct.pack("<I", 0), _string(timezone)]
        return native_block(columns, client_revision, values)


def _number(name: str, value: str) -> int:
    try:
        return int(float(value))
    except ValueError:
        raise ClickHouseError(
            CANNOT_PARSE_INPUT_ASSERTION_FAILED, f"{name} must be a number, not {value!r}"
        ) from None


def _quoted(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _identifier(name: str) -> str:
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


# -- HTTP ---------------------------------------------------------------------------------------


def read_password_file(path: Path) -> str:
    """The password in ``path`` (its first line, without the line end); raises ConfigError."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(
            f"cannot read clickhouse_password_file {path}: {e}; write the password of the "
            "ClickHouse HTTP interface into it"
        ) from None
    password = text.splitlines()[0] if text.strip() else ""
    if not password:
        raise ConfigError(
            f"clickhouse_password_file {path} is empty: write the password of the ClickHouse "
            "HTTP interface into it"
        )
    return password


def _credentials(request: web.Request) -> tuple[str, str] | None:
    """User and password as ClickHouse takes them: X-ClickHouse-User/-Key, Basic, or the
    ``user``/``password`` URL parameters."""
    headers = request.headers
    if "X-ClickHouse-User" in headers or "X-ClickHouse-Key" in headers:
        return headers.get("X-ClickHouse-User", "default"), headers.get("X-ClickHouse-Key", "")
    authorization = headers.get("Authorization", "")
    if authorization.lower().startswith("basic "):
        try:
            decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        user, _, password = decoded.partition(":")
        return user, password
    query = request.query
    if "user" in query or "password" in query:
        return query.get("user", "default"), query.get("password", "")
    return None


class ClickHouseHttpListener:
    """Serves the ClickHouse HTTP interface on ``host``:``port`` (0: the system picks) over
    ``store``, to one user; over TLS (HTTPS) when ``tls`` is given."""

    name = "ClickHouse HTTP"

    def __init__(
        self,
        host: str,
        port: int,
        store: Store,
        *,
        user: str,
        password: str,
        limits: QueryLimits | None = None,
        on_failed_login: Callable[[str, str, bool], None] | None = None,
        tls: ServerTls | None = None,
    ) -> None:
        if store.options.server is not None:
            raise ConfigError(
                "clickhouse_listen serves the embedded store only; with clickhouse_url set, "
                "point Grafana's ClickHouse data source at that ClickHouse server directly "
                "(grafana/README.md) and unset clickhouse_listen"
            )
        if not password:
            raise ConfigError("the ClickHouse HTTP interface needs a password")
        self.host, self._port = host, port
        self.tls = tls
        self.port = 0  # the port it listens on, once started
        self.limits = limits or QueryLimits()
        self._engine = _Engine(store, self.limits)
        self._user = user.encode()
        self._password = password.encode()
        #: Told of every refused login: (user given, client address, whether any credential
        #: was given); the service records it in the trail.
        self._on_failed_login = on_failed_login
        self._runner: web.AppRunner | None = None
        self._executor: ThreadPoolExecutor | None = None
        self.in_flight = 0  # queries admitted: running or waiting for a thread
        self._budget = QueryBudget(self.limits.query_share, self.limits.query_burst_s)

    async def start(self) -> None:
        self._executor = ThreadPoolExecutor(
            self.limits.max_concurrent_queries, thread_name_prefix="clickhouse-http"
        )
        runner = web.AppRunner(self._app(), access_log=None, auto_decompress=False)
        await runner.setup()
        try:
            ssl_context = self.tls.ssl_context() if self.tls is not None else None
            site = web.TCPSite(
                runner, self.host, self._port, ssl_context=ssl_context, reuse_port=False
            )
            await site.start()
        except BaseException:
            await runner.cleanup()
            self._executor.shutdown(wait=False)
            raise
        self._runner = runner
        self.port = runner.addresses[0][1]

    async def stop(self) -> None:
        """Stops taking requests and lets those in flight finish."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._executor is not None:
            # Queries still running (their clients gone) end by max_execution_time.
            await asyncio.to_thread(self._executor.shutdown, wait=True, cancel_futures=True)
            self._executor = None

    def _app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_REQUEST_BYTES)
        app.router.add_get("/ping", self._ping)
        app.router.add_route("GET", "/", self._query)
        app.router.add_route("POST", "/", self._query)
        return app

    async def _ping(self, _: web.Request) -> web.Response:
        return web.Response(text="Ok.\n")

    async def _query(self, request: web.Request) -> web.Response:
        query_id = request.query.get("query_id") or str(uuid.uuid4())
        headers = {"X-ClickHouse-Query-Id": query_id}
        try:
            if request.method == "GET" and "query" not in request.query:
                return web.Response(text="Ok.\n")
            self._authenticate(request)
            parsed = await self._parse(request)
            answer = await self._admitted(lambda: self._engine.execute(parsed))
        except ClickHouseError as e:
            return _error(e, headers)
        except TokenotelError as e:  # a failure the service foresaw, said as ClickHouse would
            return _error(ClickHouseError(UNKNOWN_EXCEPTION, str(e)), headers)
        except Exception:
            log.exception("a ClickHouse HTTP request failed")
            message = "tokenotel failed on this query; the service log says why"
            return _error(ClickHouseError(UNKNOWN_EXCEPTION, message), headers)
        headers |= {
            "X-ClickHouse-Format": answer.format,
            "X-ClickHouse-Timezone": answer.timezone,
            "X-ClickHouse-Summary": json.dumps(answer.summary, separators=(",", ":")),
            "Content-Type": _content_type(answer.format),
        }
        body = answer.body
        if parsed.http_compression is not None:
            level = _number(
                "http_zlib_compression_level", request.query.get("http_zlib_compression_level", "3")
            )
            body = await asyncio.to_thread(_compress, body, parsed.http_compression, level)
            headers["Content-Encoding"] = parsed.http_compression
        return web.Response(body=body, headers=headers)

    def _authenticate(self, request: web.Request) -> None:
        given = _credentials(request)
        user, password = given if given is not None else ("default", "")
        # Both compared, always, in constant time: neither the name nor the time says which
        # one was wrong.
        user_ok = hmac.compare_digest(user.encode(), self._user)
        password_ok = hmac.compare_digest(password.encode(), self._password)
        if not (user_ok and password_ok):
            if self._on_failed_login is not None:
                self._on_failed_login(user, request.remote or "", given is not None)
            raise ClickHouseError(
                AUTHENTICATION_FAILED,
                f"{user}: Authentication failed: password is incorrect, or there is no user "
                "with such name",
            )

    async def _parse(self, request: web.Request) -> QueryRequest:
        query: Mapping[str, str] = request.query
        sql = query.get("query", "")
        if request.method == "POST":
            if request.content_type in ("multipart/form-data", "application/x-www-form-urlencoded"):
                form = await request.post()
                if any(not isinstance(v, str) for v in form.values()):
                    raise ClickHouseError(NOT_IMPLEMENTED, "external tables are not supported here")
                merged: MultiDict[str] = MultiDict(query)
                merged.extend((k, str(v)) for k, v in form.items())
                query = merged
                sql = query.get("query", "")
            else:
                body = await _read_body(request)
                sql = f"{sql}\n{body}" if sql and body else sql or body
        if not sql.strip():
            raise ClickHouseError(SYNTAX_ERROR, "Empty query: send the SQL as the body or ?query=")
        if any(query.get(name, "0") not in ("0", "false") for name in ("compress", "decompress")):
            raise ClickHouseError(
                NOT_IMPLEMENTED,
                "compress=1 (ClickHouse's block compression) is not supported here: ask for HTTP "
                "compression instead (enable_http_compression=1 with Accept-Encoding: gzip)",
            )
        settings: dict[str, str] = {}
        parameters: dict[str, str] = {}
        for name, value in query.items():
            if name.startswith("param_"):
                parameters[name.removeprefix("param_")] = value
            elif name not in TRANSPORT_PARAMETERS:
                settings[name] = value
        compression = None
        if query.get("enable_http_compression", "0") in ("1", "true"):
            accepted = [
                e.split(";")[0].strip().lower()
                for e in request.headers.get("Accept-Encoding", "").split(",")
            ]
            compression = next((e for e in accepted if e in ("gzip", "deflate")), None)
        revision = query.get("client_protocol_version", "0")
        return QueryRequest(
            sql=sql,
            database=query.get("database", ""),
            default_format=query.get("default_format", DEFAULT_FORMAT),
            settings=settings,
            parameters=parameters,
            client_revision=int(revision) if revision.isdigit() else 0,
            http_compression=compression,
        )

    async def _admitted(self, work: Callable[[], T]) -> T:
        """``work`` in a query thread, if there is room: at most ``max_concurrent_queries`` run,
        ``max_queued_queries`` more wait for them, the rest are refused at once."""
        limits = self.limits
        if self._executor is None:
            raise ClickHouseError(NETWORK_ERROR, "the ClickHouse interface is stopping")
        if self.in_flight >= limits.max_concurrent_queries + limits.max_queued_queries:
            raise ClickHouseError(
                TOO_MANY_SIMULTANEOUS_QUERIES,
                f"Too many simultaneous queries. Maximum: {limits.max_concurrent_queries} "
                f"running and {limits.max_queued_queries} waiting; try again when some finish",
            )
        self.in_flight += 1
        try:
            await self._budget.wait()
        except BaseException:
            self.in_flight -= 1
            raise
        started = time.monotonic()
        future = asyncio.get_running_loop().run_in_executor(self._executor, work)

        def finished(_: asyncio.Future[T]) -> None:
            self.in_flight -= 1
            self._budget.spend(time.monotonic() - started)

        future.add_done_callback(finished)
        # Shielded: a client that goes away does not free the slot before its query ends.
        return await asyncio.shield(future)


class QueryBudget:
    """A bucket of query time that fills at ``share`` seconds a second, up to ``burst_s``: a
    query starts once the bucket is not empty, and empties it by the time it took."""

    def __init__(self, share: float, burst_s: float) -> None:
        self.share, self.burst_s = share, burst_s
        self._level = burst_s
        self._at = time.monotonic()

    def _refill(self) -> None:
        now = time.monotonic()
        self._level = min(self.burst_s, self._level + (now - self._at) * self.share)
        self._at = now

    async def wait(self) -> None:
        self._refill()
        while self._level <= 0:
            await asyncio.sleep(-self._level / self.share)
            self._refill()

    def spend(self, seconds: float) -> None:
        self._refill()
        self._level -= seconds


async def _read_body(request: web.Request) -> str:
    try:
        data = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise ClickHouseError(
            QUERY_IS_TOO_LARGE, f"the request is larger than {MAX_REQUEST_BYTES} bytes"
        ) from None
    encoding = request.headers.get("Content-Encoding", "").strip().lower()
    try:
        if encoding == "gzip":
            data = gzip.decompress(data)
        elif encoding == "deflate":
            data = zlib.decompress(data)
        elif encoding not in ("", "identity"):
            raise ClickHouseError(
                NOT_IMPLEMENTED,
                f"Content-Encoding {encoding} is not supported; use gzip or deflate",
            )
        return data.decode()
    except (OSError, zlib.error, EOFError, UnicodeDecodeError) as e:
        raise ClickHouseError(
            CANNOT_PARSE_INPUT_ASSERTION_FAILED, f"the request body cannot be read: {e}"
        ) from None


def _compress(body: bytes, method: str, level: int) -> bytes:
    level = min(max(level, 1), 9)
    return gzip.compress(body, level) if method == "gzip" else zlib.compress(body, level)


def _content_type(fmt: str) -> str:
    lowered = fmt.lower()
    if lowered.startswith(_BINARY_FORMATS):
        return "application/octet-stream"
    for prefix, content_type in _CONTENT_TYPES.items():
        if lowered.startswith(prefix) or (prefix == "tabseparated" and lowered.startswith("tsv")):
            return content_type
    return "text/plain; charset=UTF-8"


def _error(error: ClickHouseError, headers: dict[str, str]) -> web.Response:
    headers = headers | {
        "X-ClickHouse-Exception-Code": str(error.code),
        "Content-Type": "text/plain; charset=UTF-8",
    }
    if error.http_status == 503:
        headers["Retry-After"] = "1"
    return web.Response(status=error.http_status, body=error.body(), headers=headers)
