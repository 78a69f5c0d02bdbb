"""Where attachment bytes live: a small interface with a local-directory
implementation (the default, ``TASK_FILES_DIR``, ``./var/files``) and an
S3-compatible one (MinIO, AWS S3) used when ``TASK_FILES_S3_BUCKET`` is set.

With S3, downloads do not pass through the mesh: ``download_url`` is a
presigned GET (``TASK_FILES_URL_TTL`` s) on ``TASK_FILES_S3_PUBLIC_ENDPOINT``
(what clients can reach; MinIO's in-cluster name is not) that the gateway
redirects to. The local store has none: its bytes go through RPC, so it is
for development and small files.

Keys are built from ids this service generated (``org/task/attachment``),
never from a client's file name."""
from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Protocol

import boto3
from botocore.config import Config as BotoConfig
from nameko.extensions import DependencyProvider

_KEY = re.compile(r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$")


class FileStore(Protocol):
    def put(self, key: str, data: bytes, content_type: str) -> None: ...
    def get(self, key: str) -> bytes: ...
    def delete(self, key: str) -> None: ...
    def download_url(self, key: str, filename_header: str, content_type: str) -> str | None: ...


def _check(key: str) -> str:
    if not _KEY.match(key):
        raise ValueError(f"bad file key {key!r}")
    return key


class LocalFileStore:
    def __init__(self, root: str):
        self.root = Path(root).resolve()

    def _path(self, key: str) -> Path:
        return self.root / _check(key)

    def put(self, key: str, data: bytes, content_type: str) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        # write then rename: a reader never sees half a file
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".up-")
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, path)

    def get(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def download_url(self, key: str, filename_header: str, content_type: str) -> None:
        return None  # no URL of its own: the bytes go through the gateway


class S3FileStore:
    def __init__(self, bucket: str, endpoint_url: str | None = None, prefix: str = "",
                 public_endpoint_url: str | None = None, url_ttl: int = 300):
        self.bucket, self.prefix, self.url_ttl = bucket, prefix, url_ttl
        # path-style addressing: MinIO and local endpoints have no per-bucket host names
        settings = BotoConfig(s3={"addressing_style": "path"}, signature_version="s3v4",
                              retries={"max_attempts": 3, "mode": "standard"})
        self.client = boto3.client("s3", endpoint_url=endpoint_url or None, config=settings)
        # presigned URLs are signed for the host the client will call
        self.signer = boto3.client("s3", endpoint_url=public_endpoint_url or endpoint_url or None,
                                   config=settings) if public_endpoint_url else self.client

    def put(self, key: str, data: bytes, content_type: str) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self.prefix + _check(key), Body=data,
                               ContentType=content_type)

    def get(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=self.prefix + _check(key))["Body"].read()

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self.prefix + _check(key))

    def download_url(self, key: str, filename_header: str, content_type: str) -> str:
        """A presigned GET that answers with our Content-Disposition and type."""
        return self.signer.generate_presigned_url("get_object", ExpiresIn=self.url_ttl, Params={
            "Bucket": self.bucket, "Key": self.prefix + _check(key),
            "ResponseContentDisposition": filename_header, "ResponseContentType": content_type})


def from_config(config: dict) -> FileStore:
    if config.get("TASK_FILES_S3_BUCKET"):
        return S3FileStore(config["TASK_FILES_S3_BUCKET"], config.get("TASK_FILES_S3_ENDPOINT"),
                           config.get("TASK_FILES_S3_PREFIX") or "",
                           config.get("TASK_FILES_S3_PUBLIC_ENDPOINT"),
                           int(config.get("TASK_FILES_URL_TTL") or 300))
    return LocalFileStore(config.get("TASK_FILES_DIR") or "./var/files")


class Files(DependencyProvider):
    def setup(self) -> None:
        self.files = from_config(self.container.config)

    def get_dependency(self, worker_ctx) -> FileStore:
        return self.files
