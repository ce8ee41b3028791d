"""moto's server with two deviations from AWS fixed for the tests.

1. moto (through 5.2.5) serializes some S3 outputs under `<{Operation}Response>` because
botocore's model lacks their XML root name; real S3 and the Smithy model use the names
below, and aws-sdk-rust rejects anything else ("expected VersioningConfiguration").

2. DynamoDB TagResource appends a tag whose key the table already has, where DynamoDB
replaces its value (moto 5.2.5), so a changed tag would read back twice.

Only the test environment runs this; the controller talks to AWS as it is.
"""

import sys

from moto.core import serialize
from moto.dynamodb.models import DynamoDBBackend
from moto.server import main

ROOTS = {
    "GetBucketVersioning": "VersioningConfiguration",
    "GetBucketTagging": "Tagging",
}

_original = serialize.S3Serializer._serialized_result_to_response


def _with_s3_root(self, resp, result, shape, serialized_result):
    resp = _original(self, resp, result, shape, serialized_result)
    root = ROOTS.get(self.operation_model.name)
    body = resp.get("body")
    if root and isinstance(body, str):
        wrong = f"{self.operation_model.name}Response"
        body = body.replace(f"<{wrong}", f"<{root}", 1)
        resp["body"] = body.replace(f"</{wrong}>", f"</{root}>", 1)
    return resp


serialize.S3Serializer._serialized_result_to_response = _with_s3_root


def _tag_resource_replacing(self, arn, tags):
    for table in self.tables.values():
        if table.table_arn == arn:
            table.tags = [t for t in table.tags if t["Key"] not in tags]
            table.tags.extend({"Key": k, "Value": v} for k, v in tags.items())


DynamoDBBackend.tag_resource = _tag_resource_replacing

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
