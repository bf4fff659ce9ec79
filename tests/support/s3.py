"""A real S3 server on loopback for tests: moto in server mode (`ThreadedMotoServer`) on a free port.

It serves the S3 HTTP API from a thread of the test process, so the S3 backend and every process of a stack
(which reach it over HTTP like any S3-compatible store) are tested against the wire protocol, not a mock.
Each test makes its own bucket (`new_bucket`), so tests sharing the server never see each other's objects.
"""

from __future__ import annotations

import uuid
from typing import Any

import boto3
from botocore.config import Config
from moto.server import ThreadedMotoServer

from tests.support.stack import free_port

# moto accepts any credentials; these keep boto3 from looking for real ones on the machine.
S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1"}


class MotoS3:
    def __init__(self) -> None:
        self.port = free_port()
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.server.start()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.client: Any = boto3.client(
            "s3", endpoint_url=self.endpoint, region_name="us-east-1", aws_access_key_id="testing",
            aws_secret_access_key="testing", config=Config(s3={"addressing_style": "path"}))

    def new_bucket(self) -> str:
        name = f"nanoedit-{uuid.uuid4().hex[:12]}"
        self.client.create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str) -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))

    def env(self, bucket: str, prefix: str = "nanoedit") -> dict[str, str]:
        """The environment a nanoedit process needs to use `bucket` on this server."""
        return {**S3_ENV, "NANOEDIT_BLOB_URL": f"s3://{bucket}/{prefix}", "NANOEDIT_S3_ENDPOINT_URL": self.endpoint}

    def stop(self) -> None:
        self.server.stop()
