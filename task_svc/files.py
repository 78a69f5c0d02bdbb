"""Where attachment bytes live: a small interface with a local-directory
implementation (the default, ``TASK_FILES_DIR``, ``./var/files``) and an
S3-compatible one used only when ``TASK_FILES_S3_BUCKET`` is configured
(boto3 is then required; it is not a dependency otherwise).

Keys are built from ids this service generated (``org/task/attachment``),
never from a client's file name."""
from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Protocol

from nameko.extensions import DependencyProvider

_KEY = re.compile(r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$")


class FileStore(Protocol):
    def put(self, key: str, data: bytes, content_type: str) -> None: ...
    def get(self, key: str) -> bytes: ...
    def delete(self, key: str) -> None: ...


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


class S3FileStore:
    def __init__(self, bucket: str, endpoint_url: str | None = None, prefix: str = ""):
        import boto3  # only when configured

        self.bucket, self.prefix = bucket, prefix
        self.client = boto3.client("s3", endpoint_url=endpoint_url or None)

    def put(self, key: str, data: bytes, content_type: str) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self.prefix + _check(key), Body=data,
                               ContentType=content_type)

    def get(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=self.prefix + _check(key))["Body"].read()

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self.prefix + _check(key))


def from_config(config: dict) -> FileStore:
    if config.get("TASK_FILES_S3_BUCKET"):
        return S3FileStore(config["TASK_FILES_S3_BUCKET"], config.get("TASK_FILES_S3_ENDPOINT"),
                           config.get("TASK_FILES_S3_PREFIX", ""))
    return LocalFileStore(config.get("TASK_FILES_DIR") or "./var/files")


class Files(DependencyProvider):
    def setup(self) -> None:
        self.files = from_config(self.container.config)

    def get_dependency(self, worker_ctx) -> FileStore:
        return self.files
