"""moto's AWS-protocol server with its request handling serialised.

moto is not safe under concurrent requests: two threads can both pass a conditional check
before either writes. A global lock around each request (including reading its response)
makes every request atomic, as DynamoDB's are, so concurrency tests prove something.

The server exits when its standard input closes, so it never outlives the process that
started it (a test binary, or leadflow-local).

Transactions cost what the items they touch cost: moto deep-copies every table a transaction
names before running it (to roll back), which makes each transaction O(table size) and the
local run unusable past a few thousand leads. `transact_write_items` is wrapped so moto's copy
is skipped and only the touched items are snapshot and restored; conditions, cancellation
reasons and "one operation per item" are moto's own.

SQS queue attributes are computed when asked for, one at a time: moto builds every attribute,
counting every message in the queue, whenever it reads one (each SendMessage reads
ContentBasedDeduplication), which made each send O(queue length).
"""

import argparse
import os
import sys
import threading

import copy
import functools
import gc
import inspect
import json
import logging
import re
import types
import zlib
from collections import OrderedDict, deque
from urllib.parse import parse_qs, urlparse
from collections.abc import Mapping, MutableMapping

import jsonpath_ng.ext as _jsonpath_ext
import orjson
import moto.backends as moto_backends
import moto.dynamodb.models as dynamodb_models
from moto.dynamodb.exceptions import ConditionalCheckFailed, ItemSizeTooLarge, ItemSizeToUpdateTooLarge
from moto.dynamodb.models.dynamo_type import DynamoType, Item, LimitedSizeDict
from moto.dynamodb.models.utilities import bytesize
from moto.dynamodb.parsing import validators as dynamodb_validators
from moto.dynamodb.parsing.ast_nodes import Node
from moto.dynamodb.parsing.expressions import UpdateExpressionParser
import moto.dynamodb.responses as dynamodb_responses
from moto.dynamodb.responses import DynamoHandler, DynamoResult
import moto.dynamodb.comparisons as dynamodb_comparisons
import moto.dynamodb.models.table as dynamodb_table
import moto.dynamodb.models.utilities as dynamodb_utilities
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.table import Table
from moto.core.utils import camelcase_to_underscores
from moto.server import DomainDispatcherApplication, create_backend_app
from moto.core.utils import unix_time_millis
from moto.sqs.exceptions import ReceiptHandleIsInvalid
from moto.core.common_models import BaseModel
from moto.sqs.models import Message, Queue, sqs_backends
from werkzeug.serving import WSGIRequestHandler, run_simple


def _deepcopy_but_tables(value, memo=None):
    # moto's whole-table backup becomes a reference; the wrapper below restores touched items.
    if isinstance(value, Table):
        return value
    return copy.deepcopy(value, memo)


dynamodb_models.copy = types.SimpleNamespace(deepcopy=_deepcopy_but_tables, copy=copy.copy)
_moto_transact = DynamoDBBackend.transact_write_items


def _transact_write_items(self, transact_items):
    snapshot = []
    for entry in transact_items:
        try:
            _, op = next(iter(entry.items()))
            table = self.tables[op["TableName"]]
            attrs = op.get("Key") or op.get("Item") or {}
            key = {table.hash_key_attr: attrs[table.hash_key_attr]}
            if table.range_key_attr is not None:
                key[table.range_key_attr] = attrs[table.range_key_attr]
            hash_key, range_key = self.get_keys_value(table, key)
        except Exception:
            continue  # moto reports what is wrong with this operation
        # The item and its attributes as they are: nothing changes an item's attributes in place
        # (a put stores a new item, an update gives the item new attributes; see _update_item),
        # so its state is its instance dictionary (attributes built or not; see _item_init).
        before = table.get_item(hash_key, range_key)
        snapshot.append((table, hash_key, range_key, before, dict(before.__dict__) if before is not None else None))
    try:
        return _moto_transact(self, transact_items)
    except Exception:
        # Newest first, so an item named twice ends as it was before the transaction.
        for table, hash_key, range_key, before, state in reversed(snapshot):
            if before is not None:
                before.__dict__.clear()
                before.__dict__.update(state)
            if before is None:
                table.delete_item(hash_key, range_key)
            elif range_key is not None:
                table.items[hash_key][range_key] = before
            else:
                table.items[hash_key] = before
            if "_leadflow_gsis" in table.__dict__:
                table._leadflow_gsis.reindex(hash_key, range_key)
        raise


DynamoDBBackend.transact_write_items = _transact_write_items


class _LazyQueueAttributes(Mapping):
    """A queue's attributes, each computed when read, as moto would compute it."""

    def __init__(self, queue):
        self.queue = queue

    def _names(self):
        q = self.queue
        names = list(Queue.BASE_ATTRIBUTES)
        if q.fifo_queue:
            names += Queue.FIFO_ATTRIBUTES
        if q.kms_master_key_id:
            names += Queue.KMS_ATTRIBUTES
        if q.policy:
            names.append("Policy")
        if q.redrive_policy:
            names.append("RedrivePolicy")
        return names

    def __getitem__(self, name):
        q = self.queue
        if name == "Policy" and q.policy:
            return q.policy
        if name == "RedrivePolicy" and q.redrive_policy:
            return json.dumps(q.redrive_policy)
        if name not in self._names():
            raise KeyError(name)
        value = getattr(q, camelcase_to_underscores(name))
        return str(value).lower() if isinstance(value, bool) else value

    def __iter__(self):
        return iter(self._names())

    def __len__(self):
        return len(self._names())


Queue.attributes = property(lambda queue: _LazyQueueAttributes(queue))


# --- Queries cost the partition they read ---------------------------------------------------
# moto answers every Query, on the table or on an index, by sorting every item of the table and
# filtering: O(table) per query, seconds each past a few hundred thousand items. Here each table
# keeps its global secondary indexes as maps (index partition -> items), updated after every
# write, and a query hands moto's own query logic (conditions, order, limits, pages, filters,
# projections) only the items of the partition it names.


class _Gsis:
    """A table's global secondary indexes: index partition -> the primary keys of its items,
    each with its index sort key, so a query builds only the items it can return."""

    def __init__(self, table):
        self.table = table
        self.schemas = {}
        for idx in table.global_indexes or []:
            hashes = [k["AttributeName"] for k in idx.schema if k["KeyType"] == "HASH"]
            ranges = [k["AttributeName"] for k in idx.schema if k["KeyType"] == "RANGE"]
            self.schemas[idx.name] = (hashes, ranges, hashes + ranges)
        self.parts = {name: {} for name in self.schemas}
        self.where = {name: {} for name in self.schemas}
        for item in _every_item(table):
            self._add(item)

    def _add(self, item):
        pk = (item.hash_key, item.range_key)
        for name, (hashes, ranges, needed) in self.schemas.items():
            if all(_attr(item, a) is not None for a in needed):
                h = tuple(_attr(item, a) for a in hashes)
                # The index sort key as its (type, value): a DynamoType per entry and index was
                # ~250 bytes, ~100 MB at 100,000 leads over the table's four indexes.
                sort = _attr(item, ranges[0]) if len(ranges) == 1 else None
                self.parts[name].setdefault(h, {})[pk] = sort
                self.where[name][pk] = h

    def reindex(self, hash_key, range_key):
        pk = (hash_key, range_key)
        for name in self.schemas:
            h = self.where[name].pop(pk, None)
            if h is not None:
                part = self.parts[name].get(h)
                if part is not None:
                    part.pop(pk, None)
                    if not part:
                        del self.parts[name][h]
        item = _stored(self.table, hash_key, range_key)
        if item is not None:
            self._add(item)

    def partition(self, name, a):
        """The items a query of index `name` (bound arguments `a`) can return: the partition,
        narrowed by the sort-key condition and, with a limit and no filter, to the first
        `limit + 1` in the query's order after its start key. moto's own query then orders,
        pages and projects them."""
        hashes, ranges, _ = self.schemas[name]
        conditions = dict(a.get("hash_key_conditions") or [])
        if not all(k in conditions for k in hashes):
            return None
        h = tuple((conditions[k].type, conditions[k].value) for k in hashes)
        entries = list(self.parts[name].get(h, {}).items())
        comparison, objs = a.get("range_comparison"), a.get("range_objs")
        single = len(ranges) == 1 and len(a.get("range_key_conditions") or []) <= 1
        if single and comparison:
            # DynamoType.compare without building one per entry.
            compare = dynamodb_comparisons.get_comparison_func(comparison)
            bounds = [o.cast_value for o in objs]
            entries = [(pk, v) for pk, v in entries if v is not None and compare(_cast(v), *bounds)]
        filtered = a.get("filter_expression") is not None or a.get("filter_kwargs")
        limit = a.get("limit")
        if single and limit and not filtered:
            forward = a.get("scan_index_forward") is not False

            def order(entry):
                (hk, rk), v = entry
                return (_cast(v), hk.cast_value, rk.cast_value if rk is not None else "")

            entries.sort(key=order, reverse=not forward)
            start = a.get("exclusive_start_key")
            if start:
                table = self.table
                sort_attr = ranges[0]
                try:
                    position = (
                        DynamoType(start[sort_attr]).cast_value,
                        DynamoType(start[table.hash_key_attr]).cast_value,
                        DynamoType(start[table.range_key_attr]).cast_value if table.range_key_attr else "",
                    )
                except (KeyError, TypeError):
                    position = None
                if position is not None:
                    entries = [e for e in entries if (order(e) > position if forward else order(e) < position)]
            entries = entries[: int(limit) + 1]
        items = (_stored(self.table, hk, rk) for (hk, rk), _ in entries)
        return [i for i in items if i is not None]


def _cast(type_value):
    """DynamoType(...).cast_value of an attribute's (type, value): a string is itself."""
    t, v = type_value
    return v if t == "S" else DynamoType({t: v}).cast_value


def _every_item(table):
    for part in list(table.items.values()):
        if table.range_key_attr:
            yield from part.values()
        else:
            yield part


def _stored(table, hash_key, range_key):
    part = table.items.get(hash_key)
    if part is None:
        return None
    return part.get(range_key) if table.range_key_attr else part


def _gsis(table):
    gsis = table.__dict__.get("_leadflow_gsis")
    if gsis is None:
        gsis = table._leadflow_gsis = _Gsis(table)
    return gsis


_moto_query = Table.query
_query_signature = inspect.signature(_moto_query)


def _query(self, *args, **kwargs):
    bound = _query_signature.bind(self, *args, **kwargs)
    a = bound.arguments
    index_name = a.get("index_name")
    if index_name:
        gsis = _gsis(self)
        candidates = gsis.partition(index_name, a) if index_name in gsis.schemas else None
    else:
        hash_key = a.get("hash_key")
        part = self.items.get(hash_key) if hash_key is not None else None
        if part is None:
            candidates = []
        else:
            candidates = list(part.values()) if self.range_key_attr else [part]
    if candidates is None:
        return _moto_query(*bound.args, **bound.kwargs)
    self.all_items = lambda: candidates
    try:
        return _moto_query(*bound.args, **bound.kwargs)
    finally:
        del self.all_items


Table.query = _query


def _reindexing(method, key_of):
    def wrapper(self, table_name, *args, **kwargs):
        try:
            return method(self, table_name, *args, **kwargs)
        finally:
            table = self.tables.get(table_name)
            if table is not None and "_leadflow_gsis" in table.__dict__:
                try:
                    hash_key, range_key = self.get_keys_value(table, key_of(table, args, kwargs))
                except Exception:
                    pass  # moto refused the key: nothing was written
                else:
                    table._leadflow_gsis.reindex(hash_key, range_key)

    return wrapper


def _first(name):
    return lambda table, args, kwargs: kwargs[name] if name in kwargs else args[0]


def _key_of_put(table, args, kwargs):
    attrs = kwargs["item_attrs"] if "item_attrs" in kwargs else args[0]
    key = {table.hash_key_attr: attrs.get(table.hash_key_attr)}
    if table.range_key_attr is not None:
        key[table.range_key_attr] = attrs.get(table.range_key_attr)
    return key


# --- UpdateItem: the plain updates the project writes, applied directly -------------------
# moto parses every update expression anew, deep-copies it, walks it with ten validators and an
# executor, and re-measures the whole item on every attribute it sets: two thirds of a scoring
# transaction's time. The project's updates are `SET #a = :v, #m.#f = :v, #n = #n + :v,
# #k = if_not_exists(#k, :v) REMOVE #b ADD #c :v` (shared/aws/src/expr.rs). Those are applied
# here, with moto's condition check, after the checks moto's validators would make of such an
# update; any other update (other functions, decimals, sets, nested paths, a key attribute, a
# type clash with an index key, a map or a number that is not there) goes moto's way, which
# raises moto's own errors.

_N, _V = r"(#[A-Za-z0-9_]+)", r"(:[A-Za-z0-9_]+)"
_CLAUSE = re.compile(r"(?:^| )(SET|REMOVE|ADD) ")
_SET_ACTIONS = (
    ("set", re.compile(rf"{_N}(?:\.{_N})? = {_V}")),
    ("inc", re.compile(rf"{_N} = {_N} \+ {_V}")),
    ("keep", re.compile(rf"{_N} = if_not_exists\({_N}, {_V}\)")),
)
_REMOVE_ACTION = re.compile(_N)
_ADD_ACTION = re.compile(rf"{_N} {_V}")
_INTEGER = re.compile(r"-?[0-9]{1,30}")


def _actions(body, patterns):
    """A clause's comma-separated actions, each as (kind, groups), or None if one is not plain."""
    out = []
    for action in re.split(r", (?![^(]*\))", body):
        for kind, pattern in patterns:
            m = pattern.fullmatch(action)
            if m:
                out.append((kind, m.groups()))
                break
        else:
            return None
    return out


@functools.lru_cache(maxsize=1024)
def _plain_update(expr):
    """The updates the project's builder writes (shared/aws/src/expr.rs): `SET #a = :v,
    #m.#f = :v, #n = #n + :v, #k = if_not_exists(#k, :v) REMOVE #b ADD #c :v`, as a list of
    (kind, top name, field or None, value) with kind set/inc/keep/remove/add; None for
    anything else."""
    parts = _CLAUSE.split(expr)
    if parts[0] != "" or len(parts) < 3:
        return None
    clauses = list(zip(parts[1::2], parts[2::2]))
    if [c for c, _ in clauses] != sorted({c for c, _ in clauses}, key=["SET", "REMOVE", "ADD"].index):
        return None  # a clause twice, or out of the builder's order
    plan = []
    for clause, body in clauses:
        if clause == "SET":
            actions = _actions(body, _SET_ACTIONS)
            if actions is None:
                return None
            for kind, g in actions:
                if kind == "set":
                    plan.append(("set", g[0], g[1], g[2]))
                elif g[0] != g[1]:
                    return None  # `#a = #b + :v`: moto's way
                else:
                    plan.append((kind, g[0], None, g[2]))
        elif clause == "REMOVE":
            actions = _actions(body, (("remove", _REMOVE_ACTION),))
            if actions is None:
                return None
            plan.extend(("remove", g[0], None, None) for _, g in actions)
        else:
            actions = _actions(body, (("add", _ADD_ACTION),))
            if actions is None:
                return None
            plan.extend(("add", g[0], None, g[1]) for _, g in actions)
    return tuple(plan)


def _resolved_update(table, plan, names, values):
    """The update with names and values in place, or None when moto must judge it."""
    try:
        update = [
            (kind, names[a], names[f] if f else None, values[v] if v else None) for kind, a, f, v in plan
        ]
    except (KeyError, TypeError):
        return None
    tops = [a for _, a, _, _ in update]
    if len(set(tops)) != len(tops) or any(a in table.table_key_attrs for a in tops):
        return None  # overlapping paths, or a key attribute: moto's errors
    declared = {d["AttributeName"]: d["AttributeType"] for d in table.attr}
    for kind, a, f, v in update:
        if kind == "remove":
            continue
        if type(v) is not dict or len(v) != 1:
            return None
        (t, value), = v.items()
        if kind in ("inc", "add"):
            if t != "N" or type(value) is not str or not _INTEGER.fullmatch(value) or a in declared:
                return None  # sets, decimals, an index key: moto's way
        elif f is None and a in declared and (t != declared[a] or value == ""):
            return None  # an index key of the wrong type, or empty
    return update


def _number(item_attr):
    """An attribute's integer value, None if it is absent, False if it is anything else."""
    if item_attr is None:
        return None
    if item_attr.type == "N" and _INTEGER.fullmatch(item_attr.value):
        return int(item_attr.value)
    return False


# The update expressions moto still parses (each Update of a transaction is parsed once to check
# its names, again to run it) are parsed once per expression: the tree is only read, or
# deep-copied before it is changed.
class _ParsedUpdates:
    make = staticmethod(functools.lru_cache(maxsize=1024)(UpdateExpressionParser.make))


dynamodb_responses.UpdateExpressionParser = _ParsedUpdates
dynamodb_models.UpdateExpressionParser = _ParsedUpdates
_moto_update_item = DynamoDBBackend.update_item


def _update_item(
    self,
    table_name,
    key,
    update_expression,
    expression_attribute_names,
    expression_attribute_values,
    **options,
):
    # options: attribute_updates, expected, condition_expression,
    # return_values_on_condition_check_failure (moto's keywords).
    condition_expression = options.get("condition_expression")
    table = self.tables.get(table_name)
    legacy = options.get("attribute_updates") or options.get("expected")
    plan = _plain_update(update_expression) if update_expression and not legacy else None
    update = None
    if plan is not None and table is not None and table.stream_shard is None:
        update = _resolved_update(table, plan, expression_attribute_names or {}, expression_attribute_values or {})
    if update is not None:
        hash_value, range_value = self.get_keys_value(table, key)
        item = table.get_item(hash_value, range_value)
        old = item.attrs if item is not None else {}
        maps = {a for kind, a, f, _ in update if f is not None}
        plain = all(old.get(a) is not None and old[a].type == "M" for a in maps)
        # `#n = #n + :v` needs a number there; ADD a number, a number or nothing.
        plain = plain and all(
            _number(old.get(a)) not in (None, False) if kind == "inc" else _number(old.get(a)) is not False
            for kind, a, _, _ in update
            if kind in ("inc", "add")
        )
        if plain:
            condition = _filter_expression(
                condition_expression, expression_attribute_names, expression_attribute_values
            )
            if not condition.expr(item):
                if options.get("return_values_on_condition_check_failure") == "ALL_OLD" and item is not None:
                    raise ConditionalCheckFailed(item=item.to_json()["Attributes"])
                raise ConditionalCheckFailed
            attrs = dict(old)
            for a in maps:
                copied = DynamoType.__new__(DynamoType)
                copied.type, copied.value = "M", dict(attrs[a].value)
                attrs[a] = copied
            for kind, a, f, v in update:
                if kind == "remove":
                    attrs.pop(a, None)
                elif kind == "keep":
                    if a not in attrs:
                        attrs[a] = DynamoType(v)
                elif kind in ("inc", "add"):
                    attrs[a] = DynamoType({"N": str((_number(attrs.get(a)) or 0) + int(v["N"]))})
                elif f is None:
                    attrs[a] = DynamoType(v)
                else:
                    attrs[a].value[f] = DynamoType(v)
            if sum(bytesize(k) + v.size() for k, v in attrs.items()) > 405000:
                raise ItemSizeToUpdateTooLarge()
            if item is None:
                data = {table.hash_key_attr: {hash_value.type: hash_value.value}}
                if range_value:
                    data[table.range_key_attr] = {range_value.type: range_value.value}
                table.put_item(data)
                item = table.get_item(hash_value, range_value)
                attrs = {**item.attrs, **attrs}
            item.attrs = LimitedSizeDict(attrs)
            return item
    if table is not None:
        try:
            item = table.get_item(*self.get_keys_value(table, key))
        except Exception:
            item = None  # moto reports what is wrong with the key
        if item is not None:
            # moto changes the attributes in place: they get a copy of their own first, so a
            # transaction's snapshot (the attributes before) stays as it was.
            item.attrs = LimitedSizeDict({k: copy.deepcopy(v) for k, v in item.attrs.items()})
    return _moto_update_item(
        self,
        table_name,
        key,
        update_expression,
        expression_attribute_names,
        expression_attribute_values,
        **options,
    )


DynamoDBBackend.update_item = _update_item

DynamoDBBackend.put_item = _reindexing(DynamoDBBackend.put_item, _key_of_put)
DynamoDBBackend.update_item = _reindexing(DynamoDBBackend.update_item, _first("key"))
DynamoDBBackend.delete_item = _reindexing(DynamoDBBackend.delete_item, _first("key"))


# --- EventBridge: an event's JSONPaths parsed once ---------------------------------------------
# moto builds a new JSONPath parser (lexer and yacc tables) for each of the eight input paths of
# every event it delivers to a rule's target: a third of the emulator's time once the functions
# publish their domain events. The parsed paths are only read, so each is parsed once.
_jsonpath_ext.parse = functools.lru_cache(maxsize=256)(_jsonpath_ext.parse)


# --- SQS: a receive reads the head of the queue, a delete finds its message -----------------
# moto lists every visible message (two clock reads each) on each ReceiveMessage and scans the
# queue twice, rebuilding it, on each DeleteMessage: O(backlog) per call, so a queue with a
# backlog drained ever slower.


class _VisibleMessages:
    """The visible, undelayed messages, walked lazily (a receive stops after its batch)."""

    def __init__(self, queue):
        self.queue = queue

    def __iter__(self):
        now = unix_time_millis()
        for m in self.queue._messages:
            if now > m.visible_at and not now < m.delayed_until:
                yield m

    def __bool__(self):
        return next(iter(self), None) is not None

    def __len__(self):
        return sum(1 for _ in self)


Queue.messages = property(lambda queue: _VisibleMessages(queue))


def _delete_message(self, receipt_handle):
    if receipt_handle in self.deleted_messages:
        return  # already deleted: moto accepts deleting it again
    found = next((m for m in self.pending_messages if m.had_receipt_handle(receipt_handle)), None)
    if found is None:
        found = next((m for m in self._messages if m.had_receipt_handle(receipt_handle)), None)
    if found is None:
        raise ReceiptHandleIsInvalid()
    self.pending_messages.discard(found)
    self.deleted_messages.update(found.all_receipt_handles)
    # Received messages sit near the head: found after a few steps, removed in place.
    for i, m in enumerate(self._messages):
        if m is found:
            del self._messages[i]
            break


Queue.delete_message = _delete_message


class _RecentHandles:
    """The receipt handles of a queue's deleted messages, so deleting one again is accepted as
    SQS accepts it: the newest 10,000 (moto kept every handle ever deleted, ~250 bytes each,
    three per imported person with scoring and the local events capture)."""

    KEEP = 10_000

    def __init__(self):
        self.order = deque()
        self.seen = set()

    def __contains__(self, handle):
        return handle in self.seen

    def add(self, handle):
        if handle not in self.seen:
            self.seen.add(handle)
            self.order.append(handle)
            while len(self.order) > self.KEEP:
                self.seen.discard(self.order.popleft())

    def update(self, handles):
        for h in handles:
            self.add(h)

    def __len__(self):
        return len(self.seen)

    def __iter__(self):
        return iter(list(self.order))


_moto_queue_init = Queue.__init__


def _queue_init(self, *args, **kwargs):
    _moto_queue_init(self, *args, **kwargs)
    self.deleted_messages = _RecentHandles()


Queue.__init__ = _queue_init


# --- Per-request costs that did not depend on the request ------------------------------------
# moto listed its own package directory on disk for every request (to tell a service by host),
# re-wrapped every nested value to measure an item's size, and measured the whole item again for
# each attribute it set: an item with a scoring map cost thousands of allocations per write.

_moto_modules = tuple(moto_backends.list_of_moto_modules())
moto_backends.list_of_moto_modules = lambda: _moto_modules


def _size(self):
    if self.is_number():
        return len(str(self.value))
    if self.is_set():
        sub_type = self.type[0]
        return sum(DynamoType({sub_type: v}).size() for v in self.value)
    if self.is_list():
        return sum(v.size() for v in self.value)
    if self.is_map():
        return sum(bytesize(k) + (v if type(v) is DynamoType else DynamoType(v)).size() for k, v in self.value.items())
    if isinstance(self.value, bool):
        return 1
    return bytesize(self.value)


DynamoType.size = _size

_intern = sys.intern


def _dynamo_type_init(self, type_as_dict):
    # moto's own, without building two lists per value; map keys are interned, so the
    # thousands of items that share attribute names share their strings.
    if type(type_as_dict) is DynamoType:
        self.type = type_as_dict.type
        self.value = type_as_dict.value
    else:
        for self.type, self.value in type_as_dict.items():
            break
    if self.type == "L":
        self.value = [DynamoType(v) for v in self.value]
    elif self.type == "M":
        self.value = {_intern(k): DynamoType(v) for k, v in self.value.items()}


DynamoType.__init__ = _dynamo_type_init


def _item_init(self, hash_key, range_key, attrs):
    self.hash_key = hash_key
    self.range_key = range_key
    if type(attrs) is dict and all(type(v) is dict for v in attrs.values()):
        # Kept as the JSON it came in (a put's item, an item read back from rest) and built only
        # when something reads its attributes: most items a put stores are never read before
        # they are written back to rest. The JSON is never smaller than the DynamoDB size.
        text = orjson.dumps(attrs)
        if len(text) <= 400000:
            self.__dict__["_raw"] = attrs
            self.__dict__["_json"] = text
            return
    # Built whole (dict.update does not check each key), then measured once.
    built = LimitedSizeDict({_intern(key): DynamoType(value) for key, value in attrs.items()})
    if sum(bytesize(k) + v.size() for k, v in built.items()) > 405000:
        raise ItemSizeTooLarge
    self.attrs = built


def _item_attrs(self):
    built = self.__dict__.get("_attrs")
    if built is None:
        raw = self.__dict__.pop("_raw")
        built = self.__dict__["_attrs"] = LimitedSizeDict(
            {_intern(key): DynamoType(value) for key, value in raw.items()}
        )
        del self.__dict__["_json"]
        self.__dict__.pop("_size", None)
    return built


def _set_item_attrs(self, attrs):
    self.__dict__.pop("_raw", None)
    self.__dict__.pop("_json", None)
    self.__dict__.pop("_size", None)
    self.__dict__["_attrs"] = attrs


_moto_item_to_json = Item.to_json


def _item_to_json(self, root_attr_name="Attributes"):
    raw = self.__dict__.get("_raw")
    if raw is not None:
        return {root_attr_name: raw}
    return _moto_item_to_json(self, root_attr_name)


def _attr(item, name):
    """An attribute's (type, value), without building the item; None when it has none."""
    raw = item.__dict__.get("_raw")
    if raw is not None:
        v = raw.get(name)
        return next(iter(v.items())) if v else None
    v = item.attrs.get(name)
    return (v.type, v.value) if v is not None else None


Item.attrs = property(_item_attrs, _set_item_attrs)
Item.to_json = _item_to_json


class _Json(dict):
    """An item's attributes as the DynamoDB JSON they are kept in, answered as they are."""


def _plain(item):
    """The unbuilt item's JSON, if it has no binary values (moto's answers decode those)."""
    text = item.__dict__.get("_json")
    if text is None or b'{"B":' in text or b'{"BS":' in text:
        return None
    return item.__dict__["_raw"]


_moto_item_size = Item.size
_moto_describe_attrs = Item.describe_attrs


def _value_size(t, v):
    """A DynamoDB JSON value's size as moto measures a DynamoType (`_size` above)."""
    if t == "N":
        return len(str(v))
    if t in ("BOOL", "NULL"):
        return 1
    if t == "L":
        return sum(_value_size(*next(iter(x.items()))) for x in v)
    if t == "M":
        return sum(bytesize(k) + _value_size(*next(iter(x.items()))) for k, x in v.items())
    if t in ("SS", "NS", "BS"):
        return sum(_value_size(t[0], x) for x in v)
    return bytesize(v)


def _item_size(self):
    # Reads measure items (a Query's 1 MB page, a BatchGetItem's 16 MB): an unbuilt item is
    # measured from its JSON, exactly as moto measures the built one, without building it.
    raw = self.__dict__.get("_raw")
    if raw is None:
        return _moto_item_size(self)
    size = self.__dict__.get("_size")
    if size is None:
        size = self.__dict__["_size"] = sum(bytesize(k) + _value_size(*next(iter(v.items()))) for k, v in raw.items())
    return size


def _describe_attrs(self, attributes=None):
    raw = None if attributes else _plain(self)
    return {"Item": _Json(raw)} if raw is not None else _moto_describe_attrs(self, attributes)


_moto_dynamo_to_dict = dynamodb_utilities.dynamo_to_dict


def _dynamo_to_dict(obj):
    return obj if type(obj) is _Json else _moto_dynamo_to_dict(obj)


Item.size = _item_size
Item.describe_attrs = _describe_attrs
dynamodb_utilities.dynamo_to_dict = _dynamo_to_dict
dynamodb_responses.dynamo_to_dict = _dynamo_to_dict
Item.__init__ = _item_init


# Each UpdateItem deep-copies its parsed expression (to validate it) with copy.deepcopy's
# generic protocol; the same copy, node by node, costs a fraction.
_ATOMIC = (str, int, float, bool, type(None), bytes)


def _copy_tree(value, memo):
    t = type(value)
    if t in _ATOMIC:
        return value
    known = memo.get(id(value))
    if known is not None:
        return known
    if t is list:
        new = memo[id(value)] = []
        new.extend(_copy_tree(v, memo) for v in value)
        return new
    if t is dict:
        new = memo[id(value)] = {}
        for k, v in value.items():
            new[k] = _copy_tree(v, memo)
        return new
    if t is tuple:
        return tuple(_copy_tree(v, memo) for v in value)
    if isinstance(value, Node):
        new = memo[id(value)] = t.__new__(t)
        for k, v in value.__dict__.items():
            new.__dict__[k] = _copy_tree(v, memo)
        return new
    return copy.deepcopy(value, memo)


dynamodb_validators.deepcopy = lambda value, memo=None: _copy_tree(value, {} if memo is None else memo)


# Each condition (one per item of a transaction) was parsed anew: the same few expressions,
# thousands of times. Parsed once per expression, names and values; the parsed condition is
# only evaluated afterwards, never changed.
_moto_filter_expression = dynamodb_comparisons.get_filter_expression


_moto_condition_parser = dynamodb_comparisons.create_condition_expression_parser


@functools.lru_cache(maxsize=4096)
def _parsed_condition(expr, names, values):
    parser = _moto_condition_parser(expr, orjson.loads(names), orjson.loads(values))
    op = parser.parse()
    return op, tuple(parser.expr_attr_names_found), tuple(parser.expr_attr_values_found)


class _ParsedCondition:
    """What moto's callers read of a condition parser: the parsed condition, the names and
    values it used."""

    __slots__ = ("op", "expr_attr_names_found", "expr_attr_values_found")

    def __init__(self, op, names_found, values_found):
        self.op = op
        self.expr_attr_names_found = list(names_found)  # callers extend them
        self.expr_attr_values_found = list(values_found)

    def parse(self):
        return self.op


_PLACEHOLDER = re.compile(r"[#:][A-Za-z0-9_]+")


@functools.lru_cache(maxsize=1024)
def _placeholders(expr):
    return frozenset(_PLACEHOLDER.findall(expr)) if expr else frozenset()


def _condition_parser(expr, names, values):
    # Keyed by the names and values the condition uses: an update's values (often whole maps)
    # come in the same dictionary, and would make every key new and costly to build.
    try:
        used = _placeholders(expr)
        names = {k: v for k, v in (names or {}).items() if k in used}
        values = {k: v for k, v in (values or {}).items() if k in used}
        key = (expr, orjson.dumps(names, option=orjson.OPT_SORT_KEYS), orjson.dumps(values, option=orjson.OPT_SORT_KEYS))
    except (TypeError, ValueError, AttributeError):
        return _moto_condition_parser(expr, names, values)
    return _ParsedCondition(*_parsed_condition(*key))


def _filter_expression(expr, names, values):
    return _condition_parser(expr, names, values).parse()


for _module in (dynamodb_responses, dynamodb_models):
    _module.create_condition_expression_parser = _condition_parser
for _module in (dynamodb_comparisons, dynamodb_models, dynamodb_table):
    if hasattr(_module, "get_filter_expression"):
        _module.get_filter_expression = _filter_expression


# moto parsed each DynamoDB request by walking botocore's model of the operation, member by
# member (a third of the emulator's time on an import). The data operations' bodies are plain
# JSON already; a body with binary values still goes moto's way.
_PLAIN_JSON_OPERATIONS = {
    "GetItem",
    "BatchGetItem",
    "Query",
    "PutItem",
    "UpdateItem",
    "DeleteItem",
    "BatchWriteItem",
    "TransactWriteItems",
    "TransactGetItems",
}
_moto_parse_parameters = DynamoHandler.parse_parameters


def _parse_parameters(self, request):
    if self._get_action() in _PLAIN_JSON_OPERATIONS:
        body = request.data or b"{}"
        # A binary value is `{"B":"…"}` or `{"BS":[…]}` (an attribute named B would be `"B":{`).
        if b'"B":"' not in body and b'"BS":[' not in body:
            self.params = orjson.loads(body)
            return
    _moto_parse_parameters(self, request)


DynamoHandler.parse_parameters = _parse_parameters


# moto serialises each DynamoDB answer by walking botocore's model of the operation, member by
# member: a fifth of the emulator's time when answers carry items. The data operations' answers
# are already plain JSON values (moto converts its items first), so they are written as JSON;
# anything json cannot write as is (binary, dates) still goes moto's way.

_moto_execute = DynamoResult.execute_result


def _without_nulls(value, depth=2):
    # moto's serialiser leaves out absent members (None); they sit near the top of an answer.
    if depth and isinstance(value, dict):
        return {k: _without_nulls(v, depth - 1) for k, v in value.items() if v is not None}
    return value


def _execute_result(self, context):
    if context.operation_model.name in _PLAIN_JSON_OPERATIONS and isinstance(self.result, dict):
        try:
            body = orjson.dumps(_without_nulls(self.result))
        except (TypeError, ValueError):
            pass
        else:
            return 200, {"Content-Type": "application/x-amz-json-1.0"}, body
    return _moto_execute(self, context)


DynamoResult.execute_result = _execute_result


# --- Models moto tracks for its data dump --------------------------------------------------
# Every moto model instance is appended to a class-level list (for /moto-api/data.json) and never
# let go: every DynamoDB item ever built or copied and every SQS message ever sent stayed in
# memory. Those two are not tracked (the dump's SES messages, which tests read, still are).
_UNTRACKED = (Item, Message)


def _base_model_new(cls, *args, **kwargs):
    instance = object.__new__(cls)
    if not issubclass(cls, _UNTRACKED):
        cls.instances_tracked.append(instance)
    return instance


BaseModel.__new__ = _base_model_new
for _model in _UNTRACKED:
    _model.instances_tracked.clear()


# --- Items at rest as JSON ----------------------------------------------------------------
# moto keeps every attribute of every item as a Python object (a DynamoType, its dict, its
# string): ~250 objects and ~50 KB per imported person, 5 GB for 100,000. Tables with a sort key
# keep each item here as its DynamoDB JSON (UTF-8, zlib), ~20x smaller, and build the moto Item
# when a request reads it. Built items stay in a bounded cache (most recently used first); an
# item a write request touched is written back to JSON when it leaves the cache. The cache is
# trimmed between requests only, so an item is the same object for a whole request (moto reads
# an item, then changes it in place).

# --cache-items: the tests set it tiny, so items are written back and built again all the time.
_CACHE_ITEMS = 5000
_cache = OrderedDict()  # (partition, sort key) -> [Item, dirty]
_touched = []  # cache keys read or written by the current request


def _encode(item):
    # zlib at its fastest level halves an item again (~10 µs an item).
    text = item.__dict__.get("_json")
    return zlib.compress(text if text is not None else orjson.dumps(item.to_json()["Attributes"]), 1)


class _Partition(MutableMapping):
    """The items of one partition key, by sort key."""

    __slots__ = ("hash_key", "range_type", "blobs", "owner", "__weakref__")
    # Identity, not contents: a partition is a key of the cache.
    __eq__ = object.__eq__
    __hash__ = object.__hash__

    def __init__(self, owner, hash_key):
        self.owner = owner
        self.hash_key = hash_key
        self.range_type = None
        self.blobs = {}  # sort key value -> JSON bytes (None while only the cached Item is current)

    def _cached(self, value):
        entry = _cache.get((self, value))
        if entry is not None:
            _cache.move_to_end((self, value))
        return entry

    def __getitem__(self, range_key):
        value = range_key.value
        if value not in self.blobs:
            raise KeyError(range_key)
        entry = self._cached(value)
        if entry is None:
            text = zlib.decompress(self.blobs[value])
            item = Item.__new__(Item)
            item.hash_key, item.range_key = self.hash_key, DynamoType({self.range_type: value})
            item.__dict__["_raw"], item.__dict__["_json"] = orjson.loads(text), text
            entry = _cache[(self, value)] = [item, False]
        _touched.append((self, value))
        return entry[0]

    def __setitem__(self, range_key, item):
        value = range_key.value
        self.range_type = range_key.type
        if not self.blobs:
            self.owner.partitions[self.owner.key(self.hash_key)] = self
        self.blobs[value] = None
        _cache[(self, value)] = [item, True]
        _cache.move_to_end((self, value))
        _touched.append((self, value))

    def __delitem__(self, range_key):
        value = range_key.value
        del self.blobs[value]
        _cache.pop((self, value), None)
        if not self.blobs:
            self.owner.partitions.pop(self.owner.key(self.hash_key), None)

    def __iter__(self):
        for value in list(self.blobs):
            yield DynamoType({self.range_type: value})

    def __len__(self):
        return len(self.blobs)

    def __contains__(self, range_key):
        return getattr(range_key, "value", None) in self.blobs

    def values(self):
        return [self[k] for k in self]

    def get(self, range_key, default=None):
        return self[range_key] if range_key in self else default

    def pop(self, range_key, *default):
        if range_key not in self:
            if default:
                return default[0]
            raise KeyError(range_key)
        item = self[range_key]
        del self[range_key]
        return item


class _Partitions(MutableMapping):
    """A table's partitions, by partition key; reading a missing one does not create it (moto's
    defaultdict kept an empty partition for every key a read missed)."""

    def __init__(self):
        self.partitions = {}

    @staticmethod
    def key(hash_key):
        return (hash_key.type, hash_key.value)

    def __getitem__(self, hash_key):
        part = self.partitions.get(self.key(hash_key))
        # A fresh one, registered by its first item.
        return part if part is not None else _Partition(self, hash_key)

    def __setitem__(self, hash_key, part):
        raise TypeError("partitions are created by their items")

    def __delitem__(self, hash_key):
        part = self.partitions.pop(self.key(hash_key))
        for value in list(part.blobs):
            _cache.pop((part, value), None)

    def __contains__(self, hash_key):
        return self.key(hash_key) in self.partitions

    def get(self, hash_key, default=None):
        return self.partitions.get(self.key(hash_key), default)

    def __iter__(self):
        for part in list(self.partitions.values()):
            yield part.hash_key

    def __len__(self):
        return len(self.partitions)

    def values(self):
        return list(self.partitions.values())


_moto_table_init = Table.__init__


def _table_init(self, *args, **kwargs):
    _moto_table_init(self, *args, **kwargs)
    if self.range_key_attr is not None:
        self.items = _Partitions()
    # Indexed from the first item on: building the index later means reading every item.
    self._leadflow_gsis = _Gsis(self)


Table.__init__ = _table_init

_READS = {"GetItem", "BatchGetItem", "Query", "Scan", "TransactGetItems", "DescribeTable", "ListTables"}


def _end_of_request(action):
    """Marks what a write request touched as changed, then trims the cache to its bound,
    writing changed items back to JSON."""
    if action not in _READS:
        for key in _touched:
            entry = _cache.get(key)
            if entry is not None:
                entry[1] = True
    _touched.clear()
    while len(_cache) > _CACHE_ITEMS:
        (part, value), (item, dirty) = _cache.popitem(last=False)
        if value in part.blobs and (dirty or part.blobs[value] is None):
            part.blobs[value] = _encode(item)


DRAIN_PATH = "/_leadflow/sqs/drain"
# A queue URL names its account, not its region: the local run's.
REGION = "us-east-1"


def _json_answer(start_response, status, value):
    start_response(status, [("Content-Type", "application/json")])
    return [orjson.dumps(value)]


def _drain(environ, start_response):
    """Not an AWS call (the local run's own, as moto has /moto-api): takes up to `max` messages
    that a receive would return (visible, not delayed) off the standard queue `url` at once,
    oldest first, and answers their bodies. The events page's capture queue gets a message per
    domain event; reading it ten at a time with ReceiveMessage and DeleteMessageBatch was two
    requests per ten events, a third of the emulator's requests during an import. A taken
    message is gone as if deleted (deleting it by an earlier receipt handle is accepted); it is
    not counted as received (no redrive), which is what a reader that never fails needs."""
    query = parse_qs(environ.get("QUERY_STRING", ""))
    url = query.get("url", [""])[0]
    try:
        limit = int(query.get("max", ["1000"])[0])
    except ValueError:
        limit = 0
    if limit < 1:
        return _json_answer(start_response, "400 Bad Request", {"error": "max: a whole number of at least 1"})
    account, _, name = urlparse(url).path.strip("/").partition("/")
    # `in` first: looking an account up in moto's backends would create it.
    backend = sqs_backends[account][REGION] if account in sqs_backends else None
    queue = backend.queues.get(name) if backend is not None else None
    if queue is None:
        return _json_answer(start_response, "404 Not Found", {"error": f"no queue {url}"})
    if queue.fifo_queue:
        return _json_answer(start_response, "400 Bad Request", {"error": "a FIFO queue keeps its groups' order: receive it"})
    now = unix_time_millis()
    taken, kept = [], []
    for m in queue._messages:
        if len(taken) < limit and now > m.visible_at and not now < m.delayed_until:
            taken.append(m)
        else:
            kept.append(m)
    queue._messages = kept
    for m in taken:
        # Received before and back (its visibility ran out): no longer anyone's.
        queue.pending_messages.discard(m)
        if m.receipt_handle:
            queue.deleted_messages.update(m.all_receipt_handles)
    return _json_answer(start_response, "200 OK", {"Messages": [m.body for m in taken]})


class Serialised:
    def __init__(self, app):
        self.app = app
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO") == DRAIN_PATH and environ.get("REQUEST_METHOD") == "POST":
            with self.lock:
                return _drain(environ, start_response)
        with self.lock:
            try:
                body = self.app(environ, start_response)
                try:
                    return [b"".join(body)]
                finally:
                    close = getattr(body, "close", None)
                    if close:
                        close()
            finally:
                target = environ.get("HTTP_X_AMZ_TARGET", "")
                _end_of_request(target.rsplit(".", 1)[-1] if target else "")


class _KeepAlive(WSGIRequestHandler):
    # HTTP/1.1: the SDK's pooled connections are kept, not opened (with a thread) per request;
    # an answer's head and body leave in one write.
    protocol_version = "HTTP/1.1"
    wbufsize = 64 * 1024

    def log_request(self, code="-", size="-"):
        # werkzeug formats (and colours) every request's log line before its logger drops it:
        # 2% of the emulator's time. Errors are still logged (log_error).
        pass


def exit_when_parent_goes():
    try:
        while sys.stdin.buffer.read(4096):
            pass
    finally:
        os._exit(0)


_full_collections = 0


def _freeze_survivors(phase, info):
    # A full collection walks every tracked object: with a large table (a partition object per
    # item key, the cache's items: 300 ms at 10,000 people) that was a sixth of the emulator's
    # time, and grew with the table. What survives a full collection is mostly long-lived (the
    # tables' partitions, moto's modules); frozen, later collections walk only what came after.
    # Frozen objects are still freed by their reference counts. Cycles frozen with them (the
    # request in progress: werkzeug's request and its environ point at each other; a deleted
    # table's partitions and their owner) are let go at every tenth full collection, which
    # unfreezes everything and so walks the whole heap once.
    global _full_collections
    if phase == "stop" and info["generation"] == 2:
        _full_collections += 1
        if _full_collections % 10 == 0:
            gc.unfreeze()
        else:
            gc.freeze()


def main():
    global _CACHE_ITEMS
    gc.callbacks.append(_freeze_survivors)
    # Each request leaves a few thousand objects (a request's context, moto's response) that
    # reference counting frees before a young collection would look at them: collecting every
    # 20,000 allocations rather than 700 walks far fewer.
    gc.set_threshold(20_000, 20, 10)
    # One log line per request costs a tenth of the emulator's time and goes nowhere.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--watch-stdin", action="store_true")
    parser.add_argument("--cache-items", type=int, default=_CACHE_ITEMS)
    args = parser.parse_args()
    _CACHE_ITEMS = max(args.cache_items, 1)
    if args.watch_stdin:
        threading.Thread(target=exit_when_parent_goes, daemon=True).start()
    app = Serialised(DomainDispatcherApplication(create_backend_app))
    run_simple(
        args.host,
        args.port,
        app,
        threaded=True,
        use_reloader=False,
        use_debugger=False,
        request_handler=_KeepAlive,
    )


if __name__ == "__main__":
    main()
