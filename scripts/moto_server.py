"""moto's server with S3 response roots fixed for strict SDKs.

moto (through 5.2.5) serializes some S3 outputs under `<{Operation}Response>` because
botocore's model lacks their XML root name; real S3 and the Smithy model use the names
below, and aws-sdk-rust rejects anything else ("expected VersioningConfiguration").
Only the test environment runs this; the controller talks to S3 as it is.
"""

import sys

from moto.core import serialize
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

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
