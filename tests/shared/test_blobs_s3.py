"""S3BlobStore against a real S3 server on loopback (moto in server mode), plus the blob settings and factory."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import redis
import requests

from shared.blob_config import BlobConfig
from shared.blobs import FilesystemBlobStore, blob_store, input_key, job_prefix, output_key
from shared.blobs_s3 import S3BlobStore
from shared.clock import FakeClock
from shared.errors import BlobStoreUnavailable
from shared.jobs.model import Job
from shared.jobs.store import JobStore
from shared.settings import Settings, SettingsError
from tests.support.s3 import S3_ENV, MotoS3
from tests.support.stack import free_port


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in S3_ENV.items():  # boto3's default credential chain reads these
        monkeypatch.setenv(name, value)


@pytest.fixture
def bucket(moto_s3: MotoS3) -> str:
    return moto_s3.new_bucket()


def s3_settings(moto_s3: MotoS3, bucket: str, prefix: str = "nanoedit", **env: str) -> Settings:
    return Settings.from_env({**moto_s3.env(bucket, prefix), **env})


@pytest.fixture
def store(moto_s3: MotoS3, bucket: str) -> S3BlobStore:
    s3 = blob_store(s3_settings(moto_s3, bucket))
    assert isinstance(s3, S3BlobStore)
    return s3


def test_put_get_exists_under_the_prefix(store: S3BlobStore, moto_s3: MotoS3, bucket: str) -> None:
    # Given a blob stored under the usual key
    store.put(input_key("a" * 32, 0), b"\x89PNG bytes")
    # Then it reads back, exists, and sits in the bucket under the URL's prefix with the same key
    assert store.get(input_key("a" * 32, 0)) == b"\x89PNG bytes"
    assert store.exists(input_key("a" * 32, 0))
    assert moto_s3.keys(bucket) == [f"nanoedit/jobs/{'a' * 32}/inputs/0"]
    # And a second put of the same key replaces it whole
    store.put(input_key("a" * 32, 0), b"v2")
    assert store.get(input_key("a" * 32, 0)) == b"v2"


def test_missing_key_is_file_not_found_and_does_not_exist(store: S3BlobStore) -> None:
    assert not store.exists(output_key("b" * 32, 0))
    with pytest.raises(FileNotFoundError):
        store.get(output_key("b" * 32, 0))


def test_delete_prefix_pages_through_listings_and_batches_deletes(moto_s3: MotoS3, bucket: str) -> None:
    # Given a store with a small listing page and delete batch, 25 blobs of one job and blobs of two neighbours
    store = S3BlobStore(moto_s3.client, bucket, "p", page_size=4, delete_batch=10)
    doomed, other = "c" * 32, "c" * 31 + "d"
    for i in range(25):
        store.put(f"{job_prefix(doomed)}/outputs/{i}", b"x")
    store.put(f"{job_prefix(other)}/outputs/0", b"keep")
    store.put(f"{job_prefix(doomed)}x/outputs/0", b"keep")  # shares the string prefix, not the folder
    # When the job's prefix is deleted
    deleted = store.delete_prefix(job_prefix(doomed))
    # Then all 25 (7 listing pages, 3 delete batches) are gone, counted, and nothing else was touched
    assert deleted == 25
    assert moto_s3.keys(bucket) == [f"p/jobs/{doomed}x/outputs/0", f"p/jobs/{other}/outputs/0"]
    assert store.delete_prefix(job_prefix(doomed)) == 0


def test_unreachable_endpoint_is_storage_unavailable(bucket: str) -> None:
    # Given a store whose endpoint has nothing listening
    dead = Settings.from_env({**S3_ENV, "NANOEDIT_BLOB_URL": f"s3://{bucket}/x",
                              "NANOEDIT_S3_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}"})
    store = blob_store(dead)
    # Then every operation raises the storage error (503 storage_unavailable in the API), never a boto error
    for call in (lambda: store.put("jobs/a/inputs/0", b"x"), lambda: store.get("jobs/a/inputs/0"),
                 lambda: store.exists("jobs/a/inputs/0"), lambda: store.delete_prefix("jobs/a")):
        with pytest.raises(BlobStoreUnavailable) as err:
            call()
        assert err.value.code == "storage_unavailable" and err.value.status == 503


def test_missing_bucket_is_storage_unavailable_not_file_not_found(moto_s3: MotoS3) -> None:
    store = blob_store(s3_settings(moto_s3, "no-such-bucket-here"))
    with pytest.raises(BlobStoreUnavailable, match="NoSuchBucket"):
        store.get("jobs/a/outputs/0")


def test_presigned_url_serves_the_bytes_with_type_and_name(store: S3BlobStore) -> None:
    # Given a stored output
    store.put(output_key("d" * 32, 0), b"image bytes")
    # When a presigned URL is made for it and fetched without any credentials
    url = store.presigned_get(output_key("d" * 32, 0), 60, content_type="image/png", filename="d-0.png")
    assert url is not None
    resp = requests.get(url, timeout=10)
    # Then the store answers with the bytes, the type and the file name
    assert resp.status_code == 200 and resp.content == b"image bytes"
    assert resp.headers["Content-Type"] == "image/png"
    assert 'filename="d-0.png"' in resp.headers["Content-Disposition"]


def test_expiry_deletes_the_objects(redis_db: redis.Redis, store: S3BlobStore, moto_s3: MotoS3,
                                    bucket: str) -> None:
    # Given an expired job whose input and output are objects in the bucket, and a live one
    clock = FakeClock()
    jobs = JobStore(redis_db, "t", clock)
    now = clock.now()
    for job_id, ttl in (("e" * 32, 60), ("f" * 32, 3600)):
        jobs.create(Job(id=job_id, owner="anonymous", status="queued", stage="queued", operation="edit",
                        num_images=1, instruction="grayscale", image_description="", created_at=now,
                        expires_at=now + ttl, deadline_at=now + 30))
        store.put(input_key(job_id, 0), b"in")
        store.put(output_key(job_id, 0), b"out")
    clock.advance(61)
    # When the expiry sweep runs
    assert jobs.expire_due(store) == 1
    # Then the expired job's objects are deleted from the bucket; the live job's stay
    assert moto_s3.keys(bucket) == [f"nanoedit/jobs/{'f' * 32}/inputs/0", f"nanoedit/jobs/{'f' * 32}/outputs/0"]


# -- settings and the factory -------------------------------------------------------------------------------
def test_default_is_files_under_the_data_dir(tmp_path: Path) -> None:
    settings = Settings.from_env({"NANOEDIT_DATA_DIR": str(tmp_path)})
    assert settings.blob.backend == "file" and not settings.blob.redirects
    store = blob_store(settings)
    assert isinstance(store, FilesystemBlobStore) and store.root == (tmp_path / "blobs").resolve()


def test_file_url_names_the_directory(tmp_path: Path) -> None:
    store = blob_store(Settings.from_env({"NANOEDIT_BLOB_URL": f"file://{tmp_path}/elsewhere"}))
    assert isinstance(store, FilesystemBlobStore) and store.root == (tmp_path / "elsewhere").resolve()


def test_s3_url_region_and_redirects_parse() -> None:
    s = Settings.from_env({"NANOEDIT_BLOB_URL": "s3://my-bucket/a/b/", "AWS_DEFAULT_REGION": "eu-west-3",
                           "NANOEDIT_BLOB_REDIRECTS": "1", "NANOEDIT_BLOB_REDIRECT_TTL_S": "60"})
    assert s.blob == BlobConfig(backend="s3", bucket="my-bucket", prefix="a/b", region="eu-west-3", redirects=True,
                                redirect_ttl_s=60)
    assert Settings.from_env({"NANOEDIT_BLOB_URL": "s3://b-1"}).blob.region == "us-east-1"


@pytest.mark.parametrize(("env", "message"), [
    ({"NANOEDIT_BLOB_URL": "gs://bucket/x"}, "unknown scheme 'gs'"),
    ({"NANOEDIT_BLOB_URL": "/srv/blobs"}, "unknown scheme ''"),
    ({"NANOEDIT_BLOB_URL": "s3:///prefix"}, "name the bucket"),
    ({"NANOEDIT_BLOB_URL": "s3://Bad_Bucket!/x"}, "name the bucket"),
    ({"NANOEDIT_BLOB_URL": "s3://bucket/a/../b"}, "may not contain '..'"),
    ({"NANOEDIT_BLOB_URL": "file://host/srv/blobs"}, "absolute directory"),
    ({"NANOEDIT_BLOB_REDIRECTS": "1"}, "needs an object store"),
    ({"NANOEDIT_BLOB_URL": "file:///srv/b", "NANOEDIT_BLOB_REDIRECTS": "true"}, "needs an object store"),
    ({"NANOEDIT_BLOB_URL": "s3://bucket", "NANOEDIT_S3_ENDPOINT_URL": "127.0.0.1:9000"}, "http(s) URL"),
    ({"NANOEDIT_BLOB_URL": "s3://bucket", "NANOEDIT_BLOB_REDIRECT_TTL_S": "700000"}, "7 days"),
    ({"NANOEDIT_BLOB_URL": "s3://bucket", "NANOEDIT_BLOB_REDIRECT_TTL_S": "soon"}, "not an integer"),
])
def test_bad_blob_settings_fail_start_up_clearly(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=re.escape(message)):
        Settings.from_env(env)
