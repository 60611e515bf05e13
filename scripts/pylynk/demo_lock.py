"""Acquire and release one lock with the original Python lynk 0.3.1 client,
printing the raw DynamoDB item while the lock is held.

    $LYNK_TEST_PYTHON scripts/pylynk/run_pylynk.py script scripts/pylynk/demo_lock.py TABLE [LOCK]
"""
import json
import sys

import boto3
import lynk

table = sys.argv[1]
name = sys.argv[2] if len(sys.argv) > 2 else "demo-lock"

session = lynk.get_session(table, host_identifier="demo-host")
lock = session.create_lock(name)
lock.acquire()  # defaults: lease_duration=20, max_wait_seconds=300
print("acquired %r" % name)
item = boto3.client("dynamodb").get_item(
    TableName=table, Key={"lockKey": {"S": name}}, ConsistentRead=True
)["Item"]
print("item while held: %s" % json.dumps(item, sort_keys=True))
lock.release()
print("released %r" % name)
gone = "Item" not in boto3.client("dynamodb").get_item(
    TableName=table, Key={"lockKey": {"S": name}}, ConsistentRead=True
)
print("item deleted after release: %s" % gone)
