"""calroute_dev.local.moto_speed: moto's DynamoDB without its table-wide Query and slow serializer,
answering exactly what moto answers."""

from __future__ import annotations

import base64

import boto3
import pytest
from moto import mock_aws

from calroute_dev.local import moto_speed

#: one attribute of every DynamoDB type, nested, with the edge values (empty string, zero, False)
ITEM = {
    "user": {"S": "u1"}, "sk": {"S": "e#0001"}, "empty": {"S": ""}, "n": {"N": "0"}, "f": {"N": "-1.25e3"},
    "b": {"B": b"\x00\x01binary\xff"}, "bs": {"BS": [b"a", b"\x00"]}, "ss": {"SS": ["x", "y"]},
    "ns": {"NS": ["1", "2.5"]}, "t": {"BOOL": True}, "fa": {"BOOL": False}, "nul": {"NULL": True},
    "m": {"M": {"a": {"L": [{"S": "s"}, {"N": "3"}, {"M": {}}, {"L": []}, {"B": b"\x10"}]},
                "deep": {"M": {"x": {"SS": ["only"]}, "z": {"BOOL": False}}}}},
    "l": {"L": [{"NULL": True}, {"BS": [b"q"]}, {"NS": ["7"]}]},
}


def _serialize(serializer_cls, operation: str, result: dict) -> str:
    from moto.core.serialize import XFormedAttributePicker
    from moto.core.utils import get_service_model

    op = get_service_model("dynamodb").operation_model(operation)
    return serializer_cls(operation_model=op, pretty_print=False,
                          value_picker=XFormedAttributePicker()).serialize(result)["body"]


@pytest.mark.parametrize("operation,result", [
    ("GetItem", {"Item": ITEM}),
    ("Query", {"Items": [ITEM, {"user": {"S": "u1"}, "sk": {"S": "e#0002"}}], "Count": 2, "ScannedCount": 2,
               "LastEvaluatedKey": {"user": {"S": "u1"}, "sk": {"S": "e#0002"}}}),
    ("UpdateItem", {"Attributes": ITEM}),
    ("BatchGetItem", {"Responses": {"t": [ITEM]}, "UnprocessedKeys": {}}),
    ("GetItem", {}),
])
def test_the_fast_serializer_writes_what_motos_writes(operation, result):
    from moto.core.serialize import JSONSerializer

    fast = moto_speed._serializer_class()
    expected = _serialize(JSONSerializer, operation, result)
    assert _serialize(fast, operation, result) == expected
    if result:  # the binaries are on the wire as base64, as DynamoDB sends them
        assert base64.b64encode(b"\x00\x01binary\xff").decode() in expected


def test_values_it_does_not_know_go_to_motos_serializer():
    for value in ({"S": None}, {"S": "a", "N": "1"}, {"X": "1"}, {"BOOL": "yes"}, {"M": [1]}, {"B": 3}, "S"):
        with pytest.raises(moto_speed._NotAnAttributeValue):
            moto_speed.attribute_value(value)
    assert moto_speed.attribute_value({"M": {"k": {"B": b"\x00"}}}) == {"M": {"k": {"B": "AA=="}}}


def _table(client):
    client.create_table(TableName="t", BillingMode="PAY_PER_REQUEST",
                        KeySchema=[{"AttributeName": "user", "KeyType": "HASH"},
                                   {"AttributeName": "sk", "KeyType": "RANGE"}],
                        AttributeDefinitions=[{"AttributeName": "user", "AttributeType": "S"},
                                              {"AttributeName": "sk", "AttributeType": "S"},
                                              {"AttributeName": "g", "AttributeType": "S"}],
                        GlobalSecondaryIndexes=[{"IndexName": "by_g", "Projection": {"ProjectionType": "ALL"},
                                                 "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}]}])
    for u in ("u1", "u2", "u3"):
        for i in range(7):
            client.put_item(TableName="t", Item={"user": {"S": u}, "sk": {"S": f"e#{i:03d}"}, "g": {"S": f"g{i % 2}"},
                                                 "v": {"N": str(i)}, "b": {"B": bytes([i])}})


QUERIES = [
    {"KeyConditionExpression": "#u = :u", "ExpressionAttributeNames": {"#u": "user"},
     "ExpressionAttributeValues": {":u": {"S": "u2"}}},
    {"KeyConditionExpression": "#u = :u AND begins_with(sk, :p)", "ExpressionAttributeNames": {"#u": "user"},
     "ExpressionAttributeValues": {":u": {"S": "u3"}, ":p": {"S": "e#00"}}, "ScanIndexForward": False, "Limit": 3},
    {"KeyConditionExpression": "#u = :u AND sk > :s", "FilterExpression": "v > :v", "ExpressionAttributeNames": {"#u": "user"},
     "ExpressionAttributeValues": {":u": {"S": "u1"}, ":s": {"S": "e#001"}, ":v": {"N": "3"}}},
    {"KeyConditionExpression": "#u = :u", "ExpressionAttributeNames": {"#u": "user"},
     "ExpressionAttributeValues": {":u": {"S": "nobody"}}},
    {"IndexName": "by_g", "KeyConditionExpression": "g = :g", "ExpressionAttributeValues": {":g": {"S": "g1"}}},
]


def _all_pages(client, query):
    pages, start = [], None
    while True:
        page = client.query(TableName="t", **query, **({"ExclusiveStartKey": start} if start else {}))
        page.pop("ResponseMetadata")
        pages.append(page)
        start = page.get("LastEvaluatedKey")
        if not start:
            return pages


def test_queries_answer_the_same_with_the_patches():
    if moto_speed.installed():
        pytest.skip("an emulator of this process has the patches installed: no unpatched moto to compare with")
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        _table(client)
        plain = [_all_pages(client, q) for q in QUERIES]
        moto_speed.install()
        try:
            fast = [_all_pages(client, q) for q in QUERIES]
            item = client.get_item(TableName="t", Key={"user": {"S": "u1"}, "sk": {"S": "e#004"}})["Item"]
        finally:
            moto_speed.uninstall()
    assert fast == plain
    assert [p["Count"] for p in plain[1]] == [3, 3, 1] and plain[3][0]["Count"] == 0  # paging, empty partition
    assert item["b"] == {"B": b"\x04"}
    assert not moto_speed.installed()


def test_the_patches_stay_until_the_last_emulator_stops():
    from moto.dynamodb.models.table import Table

    if moto_speed.installed():
        pytest.skip("an emulator of this process has the patches installed")
    plain = Table.__dict__["query"]
    moto_speed.install()
    moto_speed.install()  # a second emulator in the same process
    try:
        moto_speed.uninstall()
        assert moto_speed.installed() and Table.__dict__["query"] is not plain
    finally:
        moto_speed.uninstall()
    assert not moto_speed.installed() and Table.__dict__["query"] is plain
    moto_speed.uninstall()  # one too many: harmless
    assert not moto_speed.installed()


class _FakeTable:
    range_key_attr = "sk"

    def __init__(self):
        self.items = {"u1": {"a": _Item("u1", "a")}, "u2": {"b": _Item("u2", "b"), "a": _Item("u2", "a")}}


class _Item:
    def __init__(self, h, r):
        self.hash_key, self.range_key = h, r


def test_a_table_query_sees_only_its_partition():
    table = _FakeTable()
    every = [i for part in table.items.values() for i in part.values()]
    all_items = moto_speed._patched_all_items(lambda self: every)
    seen = {}

    def original_query(self, hash_key, *args, **kwargs):
        seen[hash_key] = [(i.hash_key, i.range_key) for i in all_items(self)]

    query = moto_speed._patched_query(original_query)
    query(table, "u2", None, [], 10, None, True, None, None)
    query(table, "zz", None, [], 10, None, True, None)
    query(table, "u1", None, [], 10, None, True, None, "by_g")  # an index query: the whole table
    assert seen["u2"] == [("u2", "a"), ("u2", "b")]
    assert seen["zz"] == []
    assert len(seen["u1"]) == 3
    assert all_items(table) == every  # outside a query: untouched
