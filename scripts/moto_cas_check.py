#!/usr/bin/env python3
"""Checks that a DynamoDB-compatible server applies conditional writes atomically.

Each round writes one item at a fresh version, then 16 threads (each with its
own boto3 client and connection) send at once a conditional UpdateItem that
moves the item from that version to a version of their own. Exactly one of
them must win; the others must get ConditionalCheckFailedException. Real
DynamoDB always gives one winner; stock `moto_server` sometimes gives two or
more (it applies requests on threads without a lock), moto started by
scripts/moto_linearizable.py never does.

    eval "$(scripts/test-servers.sh env)"
    .tools/venv/bin/python scripts/moto_cas_check.py                     # $LYNK_TEST_MOTO_ENDPOINT
    .tools/venv/bin/python scripts/moto_cas_check.py --endpoint URL --rounds 40 --threads 16

Prints the winners per round and a summary; exits 1 if any round had other
than exactly one winner (or a thread failed otherwise).
"""

import argparse
import os
import sys
import threading
import uuid

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError


def client(endpoint, region):
    return boto3.client(
        "dynamodb",
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "test"),
        aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "test"),
        config=Config(retries={"max_attempts": 1, "mode": "standard"}, max_pool_connections=4),
    )


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--endpoint", default=os.environ.get("LYNK_TEST_MOTO_ENDPOINT"))
    p.add_argument("--region", default=os.environ.get("AWS_REGION", "us-east-1"))
    p.add_argument("--rounds", type=int, default=40)
    p.add_argument("--threads", type=int, default=16)
    args = p.parse_args()
    if not args.endpoint:
        sys.exit("no endpoint: pass --endpoint or set LYNK_TEST_MOTO_ENDPOINT (eval \"$(scripts/test-servers.sh env)\")")

    admin = client(args.endpoint, args.region)
    table = f"lynk-cas-check-{uuid.uuid4().hex[:12]}"
    admin.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    clients = [client(args.endpoint, args.region) for _ in range(args.threads)]
    for c in clients:  # open each client's connection before the races
        c.describe_table(TableName=table)

    bad_rounds = 0
    errors = []
    try:
        for r in range(args.rounds):
            version = f"v{r}-{uuid.uuid4().hex[:8]}"
            admin.put_item(TableName=table, Item={"k": {"S": "cas"}, "version": {"S": version}})
            barrier = threading.Barrier(args.threads)
            wins = []
            lock = threading.Lock()

            def contender(i):
                c = clients[i]
                barrier.wait()
                try:
                    c.update_item(
                        TableName=table,
                        Key={"k": {"S": "cas"}},
                        UpdateExpression="SET #v = :new",
                        ConditionExpression="#v = :old",
                        ExpressionAttributeNames={"#v": "version"},
                        ExpressionAttributeValues={
                            ":old": {"S": version},
                            ":new": {"S": f"{version}-t{i}"},
                        },
                    )
                    with lock:
                        wins.append(i)
                except ClientError as e:
                    if e.response["Error"]["Code"] != "ConditionalCheckFailedException":
                        with lock:
                            errors.append(f"round {r} thread {i}: {e}")
                except Exception as e:  # noqa: BLE001 - report anything else
                    with lock:
                        errors.append(f"round {r} thread {i}: {e!r}")

            threads = [threading.Thread(target=contender, args=(i,)) for i in range(args.threads)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            stored = admin.get_item(TableName=table, Key={"k": {"S": "cas"}}, ConsistentRead=True)
            final = stored["Item"]["version"]["S"]
            ok = len(wins) == 1 and final == f"{version}-t{wins[0]}"
            if not ok:
                bad_rounds += 1
            print(f"round {r + 1:3}: {len(wins)} winner(s){'' if ok else '  <-- NOT LINEARIZABLE'}")
    finally:
        admin.delete_table(TableName=table)

    for e in errors:
        print("error:", e, file=sys.stderr)
    print(
        f"{args.rounds} rounds of {args.threads} concurrent conditional UpdateItems on one version "
        f"at {args.endpoint}: {bad_rounds} round(s) without exactly one winner, {len(errors)} other error(s)"
    )
    sys.exit(1 if bad_rounds or errors else 0)


if __name__ == "__main__":
    main()
