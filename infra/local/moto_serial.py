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
import json
import logging
import types
from collections.abc import Mapping

import moto.dynamodb.models as dynamodb_models
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.table import Table
from moto.core.utils import camelcase_to_underscores
from moto.server import DomainDispatcherApplication, create_backend_app
from moto.sqs.models import Queue
from werkzeug.serving import run_simple


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
        snapshot.append((table, hash_key, range_key, copy.deepcopy(table.get_item(hash_key, range_key))))
    try:
        return _moto_transact(self, transact_items)
    except Exception:
        # Newest first, so an item named twice ends as it was before the transaction.
        for table, hash_key, range_key, before in reversed(snapshot):
            if before is None:
                table.delete_item(hash_key, range_key)
            elif range_key is not None:
                table.items[hash_key][range_key] = before
            else:
                table.items[hash_key] = before
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


class Serialised:
    def __init__(self, app):
        self.app = app
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):
        with self.lock:
            body = self.app(environ, start_response)
            try:
                return [b"".join(body)]
            finally:
                close = getattr(body, "close", None)
                if close:
                    close()


def exit_when_parent_goes():
    try:
        while sys.stdin.buffer.read(4096):
            pass
    finally:
        os._exit(0)


def main():
    # One log line per request costs a tenth of the emulator's time and goes nowhere.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--watch-stdin", action="store_true")
    args = parser.parse_args()
    if args.watch_stdin:
        threading.Thread(target=exit_when_parent_goes, daemon=True).start()
    app = Serialised(DomainDispatcherApplication(create_backend_app))
    run_simple(args.host, args.port, app, threaded=True, use_reloader=False, use_debugger=False)


if __name__ == "__main__":
    main()
