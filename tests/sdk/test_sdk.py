"""The public uploads API as the official Python SDK (mixpeek==1.3.783) sees it.

Every call goes through the SDK's own API classes and models; the `*_with_http_info`
variants give the status code, the parsed `.data` and the raw body. Each of the 19 methods
below is called once with the SDK's defaults (only the required arguments, or the SDK's
default request body) and once with realistic arguments, and the parsed values are checked.
Where a response is compared with its raw JSON, every key the SDK's model declares must
have survived parsing (`assert_no_loss`).
"""

import datetime
import enum
import hashlib
import json
import os
import time
import uuid

import pytest
import requests
from mixpeek.exceptions import (
    ApiException,
    BadRequestException,
    NotFoundException,
    UnauthorizedException,
    UnprocessableEntityException,
)
from mixpeek.models import (
    BatchConfirmRequest,
    BatchMetadata,
    BatchUploadRequest,
    BucketCreateRequest,
    BucketSchemaFieldInput,
    BucketSchemaFieldType,
    BucketSchemaInput,
    ConfirmUploadRequest,
    CreateBatchRequest,
    CreateUploadRequest,
    ErrorResponse,
    ListBatchesRequest,
    ListBucketsRequest,
    ListTasksRequest,
    ListUploadsRequest,
    LogicalOperatorInput,
    SubmitBatchRequest,
    TaskStatusEnum,
    TaskType,
    UploadResponse,
)
from mixpeek.api import BucketsApi
from pydantic import BaseModel

from conftest import BASE_URL, DEV_BUCKET, make_client

TERMINAL = {"COMPLETED", "COMPLETED_WITH_ERRORS", "FAILED", "CANCELED"}


# --- helpers -----------------------------------------------------------------------------


def unique_bytes(label="file"):
    return f"{label} {uuid.uuid4()} {time.time_ns()}\n".encode() * 3


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def expect_status(response, status):
    """The status code of a *_with_http_info call, with the start of the body when it differs."""
    got = response.status_code
    assert got == status, f"HTTP {got}, expected {status}: {response.raw_data[:500]!r}"


def raw_json(response):
    return json.loads(response.raw_data)


def value_of(status):
    return status.value if isinstance(status, enum.Enum) else status


def _diff(raw, value, path):
    if value is None:
        return [f"{path}: {raw!r} parsed as None"]
    if isinstance(value, BaseModel):
        if "actual_instance" in type(value).model_fields:  # an anyOf/oneOf wrapper
            return _diff(raw, value.actual_instance, path)
        if not isinstance(raw, dict):
            return [f"{path}: {raw!r} parsed as {value!r}"]
        return lost_fields(raw, value, path)
    if isinstance(value, list):
        if not isinstance(raw, list) or len(raw) != len(value):
            return [f"{path}: {raw!r} parsed as {value!r}"]
        problems = []
        for index, (raw_item, item) in enumerate(zip(raw, value)):
            problems += _diff(raw_item, item, f"{path}[{index}]")
        return problems
    if isinstance(value, dict):
        if not isinstance(raw, dict):
            return [f"{path}: {raw!r} parsed as {value!r}"]
        problems = [f"{path}.{key}: missing" for key in raw if key not in value]
        for key in raw:
            if key in value and raw[key] is not None:
                problems += _diff(raw[key], value[key], f"{path}.{key}")
        return problems
    if isinstance(value, (datetime.datetime, datetime.date)):
        return [] if isinstance(raw, str) else [f"{path}: {raw!r} parsed as {value!r}"]
    if value_of(value) != raw:
        return [f"{path}: {raw!r} parsed as {value!r}"]
    return []


def lost_fields(raw, model, path="$"):
    """The keys of `raw` that `model`'s class declares but that did not survive parsing."""
    problems = []
    for name, field in type(model).model_fields.items():
        if name in ("additional_properties", "actual_instance"):
            continue
        key = field.alias or name
        if key in raw and raw[key] is not None:
            problems += _diff(raw[key], getattr(model, name), f"{path}.{key}")
    return problems


def assert_no_loss(raw, model):
    problems = lost_fields(raw, model)
    assert not problems, "lost in parsing: " + "; ".join(problems)


def assert_error(exc_info, status):
    """The SDK's typed exception carries the parsed ErrorResponse envelope."""
    exc = exc_info.value
    assert exc.status == status
    body = json.loads(exc.body)
    assert body.get("success") is False and body.get("status") == status, body
    assert isinstance(exc.data, ErrorResponse), f"error body did not parse: {exc.body}"
    assert ErrorResponse.from_json(exc.body) == exc.data
    assert exc.data.status == status
    assert exc.data.success is False
    assert exc.data.error.type and exc.data.error.message
    return exc.data


def create_upload(uploads_api, bucket, filename="hello.txt", content_type="text/plain", **fields):
    response = uploads_api.create_upload_buckets_with_http_info(
        bucket, CreateUploadRequest(filename=filename, content_type=content_type, **fields)
    )
    expect_status(response, 200)
    upload = response.data
    assert isinstance(upload, UploadResponse), f"create upload answered {response.raw_data!r}"
    assert_no_loss(raw_json(response), upload)
    return upload


def put_bytes(upload, data):
    """PUTs the bytes to the presigned URL, with the Content-Type the URL signs."""
    response = requests.put(
        upload.presigned_url, data=data, headers={"Content-Type": upload.content_type}, timeout=30
    )
    assert response.status_code == 200, response.text
    return response.headers.get("ETag", "").strip('"')


def confirm(uploads_api, bucket, upload_id, **kwargs):
    response = uploads_api.confirm_upload_buckets_with_http_info(bucket, upload_id, **kwargs)
    expect_status(response, 200)
    assert response.data is not None
    assert_no_loss(raw_json(response), response.data)
    return response.data


def uploaded(uploads_api, bucket, data=None, filename="hello.txt", content_type="text/plain", **fields):
    """An upload whose bytes are in S3 (not yet confirmed)."""
    data = data if data is not None else unique_bytes(filename)
    upload = create_upload(uploads_api, bucket, filename, content_type, **fields)
    put_bytes(upload, data)
    return upload, data


def confirmed(uploads_api, bucket, data=None, filename="hello.txt", content_type="text/plain", **fields):
    upload, data = uploaded(uploads_api, bucket, data, filename, content_type, **fields)
    result = confirm(uploads_api, bucket, upload.upload_id)
    assert value_of(result.status) == "COMPLETED", result
    return upload, result, data


def get_upload(uploads_api, bucket, upload_id, **kwargs):
    """get_upload is typed `object` by the SDK: `.data` is the JSON object as a dict. It is
    checked against UploadResponse, the model of an upload everywhere else."""
    response = uploads_api.get_upload_buckets_with_http_info(bucket, upload_id, **kwargs)
    expect_status(response, 200)
    assert isinstance(response.data, dict)
    assert response.data == raw_json(response)
    model = UploadResponse.from_dict(response.data)
    assert_no_loss(response.data, model)
    return model


def wait_task(tasks_api, task_id, timeout=30.0):
    deadline = time.monotonic() + timeout
    while True:
        response = tasks_api.get_task_with_http_info(task_id)
        expect_status(response, 200)
        task = response.data
        assert task.task_id == task_id
        assert_no_loss(raw_json(response), task)
        if value_of(task.status) in TERMINAL or time.monotonic() > deadline:
            return task
        time.sleep(0.2)


def items(values):
    """A task's inputs/outputs: a list of anyOf(str, dict) wrappers, unwrapped."""
    assert isinstance(values, list), values
    return [value.actual_instance for value in values]


def filters(spec):
    """The SDK's FilterCondition types `value` as DynamicValue (a reference to another field,
    {"type": "dynamic", "field": ...}), so a literal value cannot be built through it.
    LogicalOperatorInput.from_dict accepts the documented syntax anyway: it parses each
    condition as a nested LogicalOperatorInput whose field/operator/value ride along as
    additional properties, and sends {"case_sensitive": false, "field": ..., "operator": ...,
    "value": ...}. That is what an SDK user's filters look like on the wire."""
    return LogicalOperatorInput.from_dict(spec)


def cond(field, operator, value):
    return {"field": field, "operator": operator, "value": value}


# --- BucketsApi ----------------------------------------------------------------------------


def check_new_bucket(bucket, name):
    assert bucket.bucket_id
    assert bucket.bucket_name == name
    assert bucket.object_count == 0
    assert bucket.total_size_bytes == 0
    assert bucket.failed_object_count == 0
    assert bucket.last_upload_at is None
    assert value_of(bucket.status) == "ACTIVE"
    assert bucket.created_at is not None and bucket.updated_at is not None


def test_create_bucket_defaults(buckets_api):
    name = f"sdk-min-{uuid.uuid4().hex[:10]}"
    request = BucketCreateRequest(
        bucket_name=name,
        bucket_schema=BucketSchemaInput(
            properties={"content": BucketSchemaFieldInput(type=BucketSchemaFieldType.IMAGE)}
        ),
    )
    response = buckets_api.create_bucket_with_http_info(request)
    expect_status(response, 200)
    bucket = response.data
    assert_no_loss(raw_json(response), bucket)
    check_new_bucket(bucket, name)
    assert value_of(bucket.bucket_schema.properties["content"].type) == "image"


def test_create_bucket_realistic(buckets_api):
    name = f"sdk-media-{uuid.uuid4().hex[:10]}"
    request = BucketCreateRequest(
        bucket_name=name,
        description="Product photos and demo videos",
        metadata={"team": "catalog", "retention_days": 30},
        bucket_schema=BucketSchemaInput(
            properties={
                "photo": BucketSchemaFieldInput(type=BucketSchemaFieldType.IMAGE, required=True),
                "demo": BucketSchemaFieldInput(type=BucketSchemaFieldType.VIDEO),
                "manual": BucketSchemaFieldInput(type=BucketSchemaFieldType.PDF),
                "title": BucketSchemaFieldInput(
                    type=BucketSchemaFieldType.STRING, description="display title"
                ),
            }
        ),
    )
    response = buckets_api.create_bucket_with_http_info(request)
    expect_status(response, 200)
    bucket = response.data
    assert_no_loss(raw_json(response), bucket)
    check_new_bucket(bucket, name)
    assert bucket.description == "Product photos and demo videos"
    assert bucket.metadata == {"team": "catalog", "retention_days": 30}
    kinds = {key: value_of(field.type) for key, field in bucket.bucket_schema.properties.items()}
    assert kinds == {"photo": "image", "demo": "video", "manual": "pdf", "title": "string"}
    assert bucket.bucket_schema.properties["photo"].required is True


def test_get_bucket_defaults(buckets_api, dev_bucket_id):
    response = buckets_api.get_bucket_with_http_info(DEV_BUCKET)
    expect_status(response, 200)
    bucket = response.data
    assert_no_loss(raw_json(response), bucket)
    assert bucket.bucket_id == dev_bucket_id
    assert bucket.bucket_name == DEV_BUCKET
    assert value_of(bucket.status) == "ACTIVE"


def test_get_bucket_realistic_counts_uploads(buckets_api, uploads_api, new_bucket):
    created = new_bucket({"photo": BucketSchemaFieldType.IMAGE})
    by_name = buckets_api.get_bucket(created.bucket_name)
    assert by_name.bucket_id == created.bucket_id
    data = unique_bytes("photo")
    confirmed(uploads_api, created.bucket_id, data, "cat.png", "image/png", blob_property="photo")
    deadline = time.monotonic() + 10
    while True:
        response = buckets_api.get_bucket_with_http_info(created.bucket_id)
        bucket = response.data
        if bucket.object_count == 1 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert_no_loss(raw_json(response), bucket)
    assert bucket.object_count == 1
    assert bucket.total_size_bytes == len(data)
    assert bucket.failed_object_count == 0
    assert bucket.last_upload_at is not None
    assert value_of(bucket.bucket_schema.properties["photo"].type) == "image"


def test_list_buckets_defaults(buckets_api, dev_bucket_id):
    response = buckets_api.list_buckets_with_http_info()
    expect_status(response, 200)
    listing = response.data
    assert_no_loss(raw_json(response), listing)
    assert dev_bucket_id in [bucket.bucket_id for bucket in listing.results]
    assert listing.total_count >= 1
    assert listing.pagination.total == listing.total_count
    assert listing.pagination.page == 1


def test_list_buckets_realistic(buckets_api, new_bucket):
    first = new_bucket()
    second = new_bucket()
    # The SDK's default body ({"case_sensitive": false}) with paging in the query.
    everything = buckets_api.list_buckets(
        limit=1000, list_buckets_request=ListBucketsRequest()
    )
    ids = [bucket.bucket_id for bucket in everything.results]
    assert {first.bucket_id, second.bucket_id} <= set(ids)
    assert everything.total_count == len(ids) >= 3
    response = buckets_api.list_buckets_with_http_info(
        limit=1, offset=1, list_buckets_request=ListBucketsRequest()
    )
    expect_status(response, 200)
    page = response.data
    assert_no_loss(raw_json(response), page)
    assert len(page.results) == 1
    assert page.results[0].bucket_id == ids[1]
    assert page.total_count == everything.total_count
    assert page.pagination.total == everything.total_count
    assert page.pagination.page_size == 1
    assert page.pagination.total_pages == everything.total_count
    # page/page_size instead of limit/offset
    second = buckets_api.list_buckets(page=2, page_size=1, list_buckets_request=ListBucketsRequest())
    assert [bucket.bucket_id for bucket in second.results] == [ids[1]]
    assert second.pagination.page == 2 and second.pagination.page_size == 1


# --- BucketUploadsApi: create --------------------------------------------------------------


def test_create_upload_defaults(uploads_api, dev_bucket_id):
    upload = create_upload(uploads_api, DEV_BUCKET)
    assert upload.upload_id
    assert upload.bucket_id == dev_bucket_id
    assert upload.filename == "hello.txt"
    assert upload.content_type == "text/plain"
    assert value_of(upload.status) == "PENDING"
    assert upload.presigned_url and upload.presigned_url.startswith("http")
    assert upload.presigned_url_expiration == 3600  # the SDK's default
    assert upload.s3_key
    assert upload.create_object_on_confirm is True
    assert upload.skip_duplicates is True
    assert upload.is_duplicate is False
    assert upload.blob_type == "text"
    assert upload.expires_at > upload.created_at
    assert upload.object_id is None and upload.file_hash is None


@pytest.mark.parametrize(
    "content_type, blob_type",
    [
        ("image/png", "image"),
        ("video/mp4", "video"),
        ("audio/mpeg", "audio"),
        ("text/csv", "text"),
        ("application/pdf", "pdf"),
        ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "excel"),
        ("application/octet-stream", "string"),
    ],
)
def test_create_upload_derives_blob_type(uploads_api, content_type, blob_type):
    upload = create_upload(uploads_api, DEV_BUCKET, "file.bin", content_type)
    assert upload.blob_type == blob_type
    assert blob_type in {kind.value for kind in BucketSchemaFieldType}


def test_create_upload_realistic(uploads_api, new_bucket):
    bucket = new_bucket({"photo": BucketSchemaFieldType.IMAGE}).bucket_id
    data = unique_bytes("photo")
    upload = create_upload(
        uploads_api,
        bucket,
        "IMG_0042.png",
        "image/png",
        file_size_bytes=len(data),
        presigned_url_expiration=600,
        metadata={"source": "mobile", "album": "summer"},
        object_metadata={"caption": "beach", "rating": 5},
        blob_property="photo",
        blob_type="IMAGE",  # upper case is accepted and answered in lower case
        skip_duplicates=True,
    )
    assert value_of(upload.status) == "PENDING"
    assert upload.file_size_bytes == len(data)
    assert upload.presigned_url_expiration == 600
    assert upload.metadata == {"source": "mobile", "album": "summer"}
    assert upload.object_metadata == {"caption": "beach", "rating": 5}
    assert upload.blob_property == "photo"
    assert upload.blob_type == "image"
    assert upload.create_object_on_confirm is True
    lifetime = (upload.expires_at - upload.created_at).total_seconds()
    assert 590 <= lifetime <= 610
    assert put_bytes(upload, data)


def test_create_uploads_batch_defaults(uploads_api, dev_bucket_id):
    request = BatchUploadRequest(uploads=[CreateUploadRequest(filename="a.txt", content_type="text/plain")])
    response = uploads_api.create_uploads_batch_buckets_with_http_info(DEV_BUCKET, request)
    expect_status(response, 200)
    batch = response.data
    assert_no_loss(raw_json(response), batch)
    assert batch.total == 1 and len(batch.uploads) == 1
    upload = batch.uploads[0]
    assert upload.bucket_id == dev_bucket_id
    assert upload.filename == "a.txt"
    assert value_of(upload.status) == "PENDING"
    assert upload.presigned_url


def test_create_uploads_batch_realistic(uploads_api):
    request = BatchUploadRequest(
        uploads=[
            CreateUploadRequest(filename="one.jpg", content_type="image/jpeg", metadata={"n": 1, "shared": "mine"}),
            CreateUploadRequest(filename="two.mp4", content_type="video/mp4", file_size_bytes=2048),
            CreateUploadRequest(filename="three.pdf", content_type="application/pdf", presigned_url_expiration=900),
        ],
        shared_metadata={"shared": "batch", "campaign": "spring"},
        shared_object_metadata={"owner": "catalog"},
    )
    response = uploads_api.create_uploads_batch_buckets_with_http_info(DEV_BUCKET, request)
    expect_status(response, 200)
    batch = response.data
    assert_no_loss(raw_json(response), batch)
    assert batch.total == 3
    assert [u.filename for u in batch.uploads] == ["one.jpg", "two.mp4", "three.pdf"]
    assert [u.blob_type for u in batch.uploads] == ["image", "video", "pdf"]
    assert len({u.upload_id for u in batch.uploads}) == 3
    # individual metadata wins over the shared one
    assert batch.uploads[0].metadata == {"n": 1, "shared": "mine", "campaign": "spring"}
    assert batch.uploads[1].metadata == {"shared": "batch", "campaign": "spring"}
    assert batch.uploads[1].file_size_bytes == 2048
    assert batch.uploads[2].presigned_url_expiration == 900
    for upload in batch.uploads:
        assert value_of(upload.status) == "PENDING"
        assert upload.object_metadata == {"owner": "catalog"}
    data = unique_bytes("batch")
    put_bytes(batch.uploads[0], data)
    result = confirm(uploads_api, DEV_BUCKET, batch.uploads[0].upload_id)
    assert value_of(result.status) == "COMPLETED" and result.file_hash == sha256(data)


# --- BucketUploadsApi: confirm and get ------------------------------------------------------


def test_confirm_sync_defaults_and_get_upload(uploads_api):
    upload, data = uploaded(uploads_api, DEV_BUCKET)
    result = confirm(uploads_api, DEV_BUCKET, upload.upload_id)
    assert result.upload_id == upload.upload_id
    assert value_of(result.status) == "COMPLETED"
    assert result.object_id
    assert result.file_hash == sha256(data)
    assert result.file_size_bytes == len(data)
    assert result.etag
    assert result.verified_at is not None and result.completed_at is not None
    assert result.task_id
    assert result.message

    stored = get_upload(uploads_api, DEV_BUCKET, upload.upload_id)
    assert value_of(stored.status) == "COMPLETED"
    assert stored.object_id == result.object_id
    assert stored.file_hash == result.file_hash
    assert stored.etag == result.etag
    assert stored.file_size_bytes == len(data)
    assert stored.is_duplicate is False
    assert stored.duplicate_of_upload_id is None
    assert stored.completed_at is not None

    again = confirm(uploads_api, DEV_BUCKET, upload.upload_id)
    assert value_of(again.status) == "COMPLETED"
    assert (again.object_id, again.file_hash) == (result.object_id, result.file_hash)


def test_confirm_sync_realistic(uploads_api, tasks_api):
    data = unique_bytes("report")
    upload = create_upload(uploads_api, DEV_BUCKET, "report.pdf", "application/pdf", file_size_bytes=len(data))
    etag = put_bytes(upload, data)
    result = confirm(
        uploads_api,
        DEV_BUCKET,
        upload.upload_id,
        var_async=False,
        confirm_upload_request=ConfirmUploadRequest(etag=etag, file_size_bytes=len(data)),
    )
    assert value_of(result.status) == "COMPLETED"
    assert result.etag == etag
    assert result.file_size_bytes == len(data)
    assert result.file_hash == sha256(data)
    task = wait_task(tasks_api, result.task_id)
    assert value_of(task.status) == "COMPLETED"
    assert value_of(task.task_type) == "api_buckets_uploads_confirm"
    output = items(task.outputs)
    assert len(output) == 1
    assert output[0]["upload_id"] == upload.upload_id
    assert output[0]["object_id"] == result.object_id
    assert output[0]["file_hash"] == sha256(data)


def test_get_upload_realistic(uploads_api):
    upload, result, data = confirmed(uploads_api, DEV_BUCKET, filename="notes.txt")
    stored = get_upload(uploads_api, DEV_BUCKET, upload.upload_id, return_presigned_urls=True)
    assert stored.upload_id == upload.upload_id
    # The key the bytes are kept at once confirmed (it may differ from the key the
    # presigned URL wrote); the object's blob names the same key.
    assert stored.s3_key and upload.upload_id in stored.s3_key
    assert stored.s3_key.endswith("/notes.txt")
    assert stored.object_id == result.object_id
    assert stored.file_hash == sha256(data)
    pending = create_upload(uploads_api, DEV_BUCKET, "later.txt", "text/plain")
    stored = get_upload(uploads_api, DEV_BUCKET, pending.upload_id, return_presigned_urls=False)
    assert value_of(stored.status) == "PENDING"
    assert stored.object_id is None


def test_an_upload_past_5_gib_is_in_parts_and_the_sdk_parses_it(uploads_api):
    # One PUT carries at most 5 GiB: the upload is multipart, with no presigned_url, which
    # the SDK's UploadResponse allows; its parts are signed by a route the SDK does not have.
    upload = create_upload(
        uploads_api, DEV_BUCKET, "recording.mkv", "video/x-matroska", file_size_bytes=6 << 30
    )
    assert upload.presigned_url is None
    assert upload.file_size_bytes == 6 << 30
    assert value_of(get_upload(uploads_api, DEV_BUCKET, upload.upload_id).status) == "PENDING"
    response = uploads_api.delete_upload_buckets_with_http_info(DEV_BUCKET, upload.upload_id)
    expect_status(response, 204)
    assert value_of(get_upload(uploads_api, DEV_BUCKET, upload.upload_id).status) == "CANCELED"


def test_duplicate_upload_confirms_as_duplicate(uploads_api, new_bucket):
    bucket = new_bucket().bucket_id
    data = unique_bytes("same")
    first, first_result, _ = confirmed(uploads_api, bucket, data, "first.txt")
    second, second_result, _ = confirmed(uploads_api, bucket, data, "second.txt")
    assert second_result.file_hash == first_result.file_hash == sha256(data)
    stored = get_upload(uploads_api, bucket, second.upload_id)
    assert stored.is_duplicate is True
    assert stored.duplicate_of_upload_id == first.upload_id
    assert stored.object_id == first_result.object_id
    original = get_upload(uploads_api, bucket, first.upload_id)
    assert original.is_duplicate is False and original.duplicate_of_upload_id is None


def test_confirm_async(uploads_api, tasks_api, dev_bucket_id):
    upload, data = uploaded(uploads_api, DEV_BUCKET, filename="async.bin", content_type="application/octet-stream")
    accepted = confirm(uploads_api, DEV_BUCKET, upload.upload_id, var_async=True)
    assert accepted.upload_id == upload.upload_id
    assert value_of(accepted.status) == "PROCESSING"
    assert accepted.task_id and accepted.message
    task = wait_task(tasks_api, accepted.task_id)
    assert value_of(task.status) == "COMPLETED"
    assert value_of(task.task_type) == "api_buckets_uploads_confirm"
    assert task.error is None
    inputs = items(task.inputs)
    assert len(inputs) == 1
    assert inputs[0]["upload_id"] == upload.upload_id
    assert inputs[0]["bucket_id"] == dev_bucket_id
    assert "options" in inputs[0]
    outputs = items(task.outputs)
    assert len(outputs) == 1
    out = outputs[0]
    assert out["upload_id"] == upload.upload_id
    assert out["status"] == "COMPLETED"
    assert out["object_id"]
    assert out["file_hash"] == sha256(data)
    assert out["etag"]
    assert out["file_size_bytes"] == len(data)
    assert out["is_duplicate"] is False
    assert out.get("duplicate_of_upload_id") is None
    stored = get_upload(uploads_api, DEV_BUCKET, upload.upload_id)
    assert value_of(stored.status) == "COMPLETED" and stored.object_id == out["object_id"]


def test_confirm_async_of_missing_object_fails_its_task(uploads_api, tasks_api):
    upload = create_upload(uploads_api, DEV_BUCKET, "never.txt", "text/plain")
    accepted = confirm(uploads_api, DEV_BUCKET, upload.upload_id, var_async=True)
    assert value_of(accepted.status) == "PROCESSING"
    task = wait_task(tasks_api, accepted.task_id)
    assert value_of(task.status) == "FAILED"
    assert task.error
    outputs = items(task.outputs)
    assert len(outputs) == 1
    assert outputs[0]["upload_id"] == upload.upload_id
    assert outputs[0]["status_code"] == 400
    assert outputs[0]["error"]["type"] == "BadRequestError"
    assert outputs[0]["error"]["message"]
    assert outputs[0]["error"]["details"]["reason"] == "object_not_found"


def check_batch_confirm(uploads_api, tasks_api, bucket, request, upload_ids):
    response = uploads_api.confirm_uploads_batch_buckets_with_http_info(bucket, request)
    expect_status(response, 200)
    accepted = response.data
    assert_no_loss(raw_json(response), accepted)
    assert accepted.task_id
    assert accepted.confirmations_count == len(upload_ids)
    assert accepted.task.task_id == accepted.task_id
    assert value_of(accepted.task.task_type) == "api_buckets_uploads_batch_confirm"
    task = wait_task(tasks_api, accepted.task_id)
    inputs = items(task.inputs)
    assert [item["upload_id"] for item in inputs] == upload_ids
    assert all("options" in item for item in inputs)
    outputs = items(task.outputs)
    assert [item["upload_id"] for item in outputs] == upload_ids
    return task, outputs


def test_confirm_uploads_batch_defaults(uploads_api, tasks_api):
    good = [uploaded(uploads_api, DEV_BUCKET, filename=f"b{i}.txt") for i in range(3)]
    missing = create_upload(uploads_api, DEV_BUCKET, "missing.txt", "text/plain")
    order = [good[0][0].upload_id, missing.upload_id, good[1][0].upload_id, good[2][0].upload_id]
    request = BatchConfirmRequest(confirmations=[{"upload_id": upload_id} for upload_id in order])
    task, outputs = check_batch_confirm(uploads_api, tasks_api, DEV_BUCKET, request, order)
    assert value_of(task.status) == "COMPLETED_WITH_ERRORS"
    assert [item["status"] for item in outputs] == ["COMPLETED", "FAILED", "COMPLETED", "COMPLETED"]
    for (upload, data), item in zip(good, [outputs[0], outputs[2], outputs[3]]):
        assert item["object_id"]
        assert item["file_hash"] == sha256(data)
        assert item["is_duplicate"] is False
    assert outputs[1]["error"]
    assert outputs[1]["reason"] == "object_not_found"
    counts = task.additional_data
    assert counts["total"] == 4
    assert counts["completed"] == 3
    assert counts["failed"] == 1
    assert counts["canceled"] == 0
    assert counts["duplicates"] == 0
    stored = get_upload(uploads_api, DEV_BUCKET, good[1][0].upload_id)
    assert value_of(stored.status) == "COMPLETED" and stored.object_id == outputs[2]["object_id"]


def test_confirm_uploads_batch_realistic(uploads_api, tasks_api, new_bucket):
    bucket = new_bucket().bucket_id
    original, original_result, data = confirmed(uploads_api, bucket, filename="orig.txt")
    copy = create_upload(uploads_api, bucket, "copy.txt", "text/plain", file_size_bytes=len(data))
    copy_etag = put_bytes(copy, data)
    fresh_data = unique_bytes("fresh")
    fresh = create_upload(uploads_api, bucket, "fresh.txt", "text/plain")
    fresh_etag = put_bytes(fresh, fresh_data)
    order = [copy.upload_id, fresh.upload_id]
    request = BatchConfirmRequest(
        confirmations=[
            {"upload_id": copy.upload_id, "etag": copy_etag, "file_size_bytes": len(data)},
            {"upload_id": fresh.upload_id, "etag": fresh_etag, "file_size_bytes": len(fresh_data)},
        ]
    )
    task, outputs = check_batch_confirm(uploads_api, tasks_api, bucket, request, order)
    assert value_of(task.status) == "COMPLETED"
    assert [item["status"] for item in outputs] == ["COMPLETED", "COMPLETED"]
    assert outputs[0]["is_duplicate"] is True
    assert outputs[0]["object_id"] == original_result.object_id
    assert outputs[1]["is_duplicate"] is False
    assert outputs[1]["file_hash"] == sha256(fresh_data)
    counts = task.additional_data
    assert counts["total"] == 2 and counts["failed"] == 0 and counts["duplicates"] == 1
    assert counts["completed"] == 2
    stored = get_upload(uploads_api, bucket, copy.upload_id)
    assert stored.is_duplicate is True and stored.duplicate_of_upload_id == original.upload_id


# --- BucketUploadsApi: list and delete ------------------------------------------------------


@pytest.fixture
def listed_bucket(uploads_api, new_bucket):
    """A bucket holding two COMPLETED uploads, one PENDING and one CANCELED."""
    schema = {"doc": BucketSchemaFieldType.TEXT, "picture": BucketSchemaFieldType.IMAGE, "manual": BucketSchemaFieldType.PDF}
    bucket = new_bucket(schema).bucket_id
    a, _, a_data = confirmed(uploads_api, bucket, b"alpha " * 10, "Alpha.txt", "text/plain", blob_property="doc")
    b, _, b_data = confirmed(uploads_api, bucket, b"beta " * 100, "beta.png", "image/png", blob_property="picture")
    c = create_upload(uploads_api, bucket, "gamma.pdf", "application/pdf", file_size_bytes=4096, blob_property="manual")
    d = create_upload(uploads_api, bucket, "delta.txt", "text/plain", blob_property="doc")
    uploads_api.delete_upload_buckets(bucket, d.upload_id)
    return {
        "bucket": bucket,
        "ids": {"a": a.upload_id, "b": b.upload_id, "c": c.upload_id, "d": d.upload_id},
        "sizes": {"a": len(a_data), "b": len(b_data)},
        "hash_a": sha256(a_data),
    }


def list_ids(uploads_api, bucket, **kwargs):
    response = uploads_api.list_uploads_buckets_with_http_info(bucket, **kwargs)
    expect_status(response, 200)
    listing = response.data
    assert_no_loss(raw_json(response), listing)
    return listing, {upload.upload_id for upload in listing.results}


def test_list_uploads_defaults(uploads_api, listed_bucket):
    bucket, ids = listed_bucket["bucket"], listed_bucket["ids"]
    listing, found = list_ids(uploads_api, bucket)
    assert found == set(ids.values())
    assert listing.pagination.total == 4
    stats = listing.stats
    assert stats.total_uploads == 4
    counted = {status: count for status, count in stats.uploads_by_status.items() if count}
    assert counted == {"COMPLETED": 2, "PENDING": 1, "CANCELED": 1}
    assert stats.unique_buckets == 1
    assert stats.total_size_bytes >= sum(listed_bucket["sizes"].values())
    assert stats.avg_file_size_bytes > 0
    # the SDK's default body: {"return_presigned_urls": false, "limit": 20, "offset": 0}
    listing, found = list_ids(uploads_api, bucket, list_uploads_request=ListUploadsRequest())
    assert found == set(ids.values())
    assert all(upload.presigned_url is None for upload in listing.results if value_of(upload.status) == "COMPLETED")


def test_list_uploads_realistic_filters(uploads_api, listed_bucket):
    bucket, ids = listed_bucket["bucket"], listed_bucket["ids"]

    def query(spec, **fields):
        request = ListUploadsRequest(filters=filters(spec), **fields)
        return list_ids(uploads_api, bucket, list_uploads_request=request)

    listing, found = query({"AND": [cond("status", "eq", "COMPLETED")]})
    assert found == {ids["a"], ids["b"]}
    assert all(value_of(u.status) == "COMPLETED" for u in listing.results)
    assert listing.pagination.total == 2
    # the shorthand {"status": "COMPLETED"}
    shorthand = ListUploadsRequest(filters=LogicalOperatorInput.from_dict({"status": "COMPLETED"}))
    assert list_ids(uploads_api, bucket, list_uploads_request=shorthand)[1] == {ids["a"], ids["b"]}
    assert query({"OR": [cond("status", "eq", "PENDING"), cond("status", "eq", "CANCELED")]})[1] == {ids["c"], ids["d"]}
    assert query({"NOT": [cond("status", "eq", "COMPLETED")]})[1] == {ids["c"], ids["d"]}
    assert query({"AND": [cond("status", "ne", "COMPLETED")]})[1] == {ids["c"], ids["d"]}
    assert query({"AND": [cond("filename", "starts_with", "alpha")], "case_sensitive": False})[1] == {ids["a"]}
    assert query({"AND": [cond("filename", "ends_with", ".txt")]})[1] == {ids["a"], ids["d"]}
    assert query({"AND": [cond("filename", "contains", "amm")]})[1] == {ids["c"]}
    assert query({"AND": [cond("content_type", "in", ["image/png", "application/pdf"])]})[1] == {ids["b"], ids["c"]}
    assert query({"AND": [cond("content_type", "nin", ["text/plain"])]})[1] == {ids["b"], ids["c"]}
    assert query({"AND": [cond("file_hash", "eq", listed_bucket["hash_a"])]})[1] == {ids["a"]}
    assert query({"AND": [cond("upload_id", "eq", ids["b"])]})[1] == {ids["b"]}
    assert query({"AND": [cond("is_duplicate", "eq", False), cond("status", "eq", "COMPLETED")]})[1] == {ids["a"], ids["b"]}
    assert query({"AND": [cond("file_size_bytes", "gt", listed_bucket["sizes"]["a"])]})[1] == {ids["b"], ids["c"]}
    assert query({"AND": [cond("file_size_bytes", "gte", 4096)]})[1] == {ids["c"]}
    assert query({"AND": [cond("file_size_bytes", "lte", listed_bucket["sizes"]["a"])]})[1] == {ids["a"]}
    assert query({"AND": [cond("file_size_bytes", "lt", 4096), cond("status", "eq", "COMPLETED")]})[1] == {ids["a"], ids["b"]}
    # paging in the body
    listing, found = query({"AND": [cond("status", "ne", "FAILED")]}, limit=1, offset=1)
    assert len(found) == 1
    assert listing.pagination.total == 4
    assert listing.stats.total_uploads == 4


def test_delete_upload_defaults(uploads_api):
    upload = create_upload(uploads_api, DEV_BUCKET, "cancel-me.txt", "text/plain")
    response = uploads_api.delete_upload_buckets_with_http_info(DEV_BUCKET, upload.upload_id)
    expect_status(response, 204)
    assert response.data is None
    assert value_of(get_upload(uploads_api, DEV_BUCKET, upload.upload_id).status) == "CANCELED"


def test_delete_upload_realistic(uploads_api):
    upload, _ = uploaded(uploads_api, DEV_BUCKET, filename="put-then-cancel.txt")
    response = uploads_api.delete_upload_buckets_with_http_info(DEV_BUCKET, upload.upload_id, delete_s3_object=True)
    expect_status(response, 204)
    stored = get_upload(uploads_api, DEV_BUCKET, upload.upload_id)
    assert value_of(stored.status) == "CANCELED"
    assert stored.object_id is None
    done, _, _ = confirmed(uploads_api, DEV_BUCKET, filename="done.txt")
    with pytest.raises(ApiException) as exc_info:
        uploads_api.delete_upload_buckets(DEV_BUCKET, done.upload_id)
    assert exc_info.value.status in (400, 409)
    assert_error(exc_info, exc_info.value.status)


# --- TasksApi ----------------------------------------------------------------------------


def test_get_task_defaults(uploads_api, tasks_api):
    upload, result, data = confirmed(uploads_api, DEV_BUCKET)
    response = tasks_api.get_task_with_http_info(result.task_id)
    expect_status(response, 200)
    task = response.data
    assert_no_loss(raw_json(response), task)
    assert task.task_id == result.task_id
    assert value_of(task.status) == "COMPLETED"
    assert value_of(task.task_type) == "api_buckets_uploads_confirm"
    out = items(task.outputs)[0]
    assert (out["upload_id"], out["status"], out["object_id"]) == (upload.upload_id, "COMPLETED", result.object_id)
    assert out["file_hash"] == sha256(data) and out["file_size_bytes"] == len(data)
    assert out["etag"] == result.etag


def test_list_tasks_defaults(uploads_api, tasks_api):
    _, result, _ = confirmed(uploads_api, DEV_BUCKET)
    response = tasks_api.list_tasks_with_http_info()
    expect_status(response, 200)
    listing = response.data
    assert_no_loss(raw_json(response), listing)
    assert listing.pagination.total >= 1
    assert len(listing.results) >= 1
    # the SDK's default body ({}) with paging in the query
    everything = tasks_api.list_tasks(limit=1000, list_tasks_request=ListTasksRequest())
    assert result.task_id in [task.task_id for task in everything.results]


def test_list_tasks_realistic(uploads_api, tasks_api):
    for _ in range(3):
        confirmed(uploads_api, DEV_BUCKET)
    request = ListTasksRequest(task_type=TaskType.API_BUCKETS_UPLOADS_CONFIRM, status=TaskStatusEnum.COMPLETED)
    response = tasks_api.list_tasks_with_http_info(limit=2, offset=0, list_tasks_request=request)
    expect_status(response, 200)
    page = response.data
    assert_no_loss(raw_json(response), page)
    assert len(page.results) == 2
    assert all(value_of(t.task_type) == "api_buckets_uploads_confirm" for t in page.results)
    assert all(value_of(t.status) == "COMPLETED" for t in page.results)
    assert page.pagination.total >= 3
    assert page.pagination.page_size == 2
    assert page.pagination.total_pages >= 2
    second = tasks_api.list_tasks(limit=2, offset=2, list_tasks_request=request)
    assert second.results
    assert not {t.task_id for t in page.results} & {t.task_id for t in second.results}
    same = tasks_api.list_tasks(page=2, page_size=2, list_tasks_request=request)
    assert [t.task_id for t in same.results] == [t.task_id for t in second.results]
    assert same.pagination.page == 2 and same.pagination.page_size == 2
    failed = tasks_api.list_tasks(limit=1000, list_tasks_request=ListTasksRequest(status=TaskStatusEnum.FAILED))
    assert all(value_of(t.status) == "FAILED" for t in failed.results)


def test_kill_task_defaults_on_ended_task(uploads_api, tasks_api):
    _, result, _ = confirmed(uploads_api, DEV_BUCKET)
    response = tasks_api.kill_task_with_http_info(result.task_id)
    expect_status(response, 200)
    assert response.data.success is True
    assert response.data.message
    assert raw_json(response)["success"] is True
    assert value_of(wait_task(tasks_api, result.task_id).status) == "COMPLETED"
    again = tasks_api.kill_task(result.task_id)
    assert again.success is True


def test_kill_task_realistic_on_running_confirm(uploads_api, tasks_api):
    upload, _ = uploaded(uploads_api, DEV_BUCKET, filename="kill.txt")
    accepted = confirm(uploads_api, DEV_BUCKET, upload.upload_id, var_async=True)
    killed = tasks_api.kill_task(accepted.task_id)
    assert killed.success is True and killed.message
    task = wait_task(tasks_api, accepted.task_id)
    assert value_of(task.status) in {"CANCELED", "COMPLETED"}
    assert tasks_api.kill_task(accepted.task_id).success is True
    with pytest.raises(NotFoundException) as exc_info:
        tasks_api.kill_task(f"task_{uuid.uuid4().hex}")
    assert_error(exc_info, 404)


# --- BucketBatchesApi --------------------------------------------------------------------


def check_batch(batch, bucket_id, object_ids):
    assert batch.batch_id
    assert batch.bucket_id == bucket_id
    assert batch.namespace_id
    assert batch.object_ids == object_ids
    assert batch.created_at is not None and batch.updated_at is not None
    assert isinstance(batch.max_node_death_resubmits, int)
    assert isinstance(batch.max_deploy_resubmits, int)


def test_create_batch_defaults(uploads_api, batches_api, dev_bucket_id):
    _, result, _ = confirmed(uploads_api, DEV_BUCKET)
    response = batches_api.create_batch_buckets_batches_with_http_info(
        DEV_BUCKET, CreateBatchRequest(object_ids=[result.object_id])
    )
    expect_status(response, 200)
    batch = response.data
    assert_no_loss(raw_json(response), batch)
    check_batch(batch, dev_bucket_id, [result.object_id])
    assert value_of(batch.status) == "DRAFT"
    assert batch.task_id is None


def test_create_batch_realistic_get_list_submit(uploads_api, batches_api, tasks_api, new_bucket):
    bucket = new_bucket().bucket_id
    objects = [confirmed(uploads_api, bucket, filename=f"p{i}.txt")[1].object_id for i in range(2)]
    metadata = BatchMetadata(campaign_id="spring-24", source="sdk-tests", tags=["a", "b"], notes="nightly")
    response = batches_api.create_batch_buckets_batches_with_http_info(
        bucket,
        CreateBatchRequest(object_ids=objects, batch_name="nightly", metadata=metadata),
        skip_validation=False,
        auto_submit=False,
    )
    expect_status(response, 200)
    created = response.data
    assert_no_loss(raw_json(response), created)
    check_batch(created, bucket, objects)
    assert created.batch_name == "nightly"
    assert value_of(created.status) == "DRAFT"
    assert created.metadata.campaign_id == "spring-24"
    assert created.metadata.tags == ["a", "b"]
    assert created.metadata.notes == "nightly"

    # get_batch (its only arguments are the path)
    response = batches_api.get_batch_buckets_batches_with_http_info(bucket, created.batch_id)
    expect_status(response, 200)
    assert_no_loss(raw_json(response), response.data)
    assert response.data.batch_id == created.batch_id
    assert response.data.batch_name == "nightly"
    assert response.data.object_ids == objects

    # list_batches: no body, the SDK's default body, and a filter
    second = batches_api.create_batch_buckets_batches(bucket, CreateBatchRequest(object_ids=objects[:1]))
    response = batches_api.list_batches_buckets_with_http_info(bucket)
    expect_status(response, 200)
    listing = response.data
    assert_no_loss(raw_json(response), listing)
    assert {b.batch_id for b in listing.results} == {created.batch_id, second.batch_id}
    assert listing.total_count == 2
    assert listing.pagination is not None
    listing = batches_api.list_batches_buckets(bucket, ListBatchesRequest())
    assert listing.total_count == 2
    listing = batches_api.list_batches_buckets(bucket, ListBatchesRequest(status=TaskStatusEnum.DRAFT, limit=1))
    assert len(listing.results) == 1 and listing.total_count == 2

    # submit with the SDK's default body
    response = batches_api.submit_batch_buckets_batches_with_http_info(
        bucket, created.batch_id, submit_batch_request=SubmitBatchRequest()
    )
    expect_status(response, 200)
    task = response.data
    assert_no_loss(raw_json(response), task)
    assert task.task_id
    assert value_of(task.task_type) == "api_buckets_batches_submit"
    submitted = batches_api.get_batch_buckets_batches(bucket, created.batch_id)
    assert value_of(submitted.status) == "PENDING"
    assert submitted.task_id == task.task_id
    assert tasks_api.get_task(task.task_id).task_id == task.task_id
    listing = batches_api.list_batches_buckets(bucket, ListBatchesRequest(status=TaskStatusEnum.PENDING))
    assert [b.batch_id for b in listing.results] == [created.batch_id]


def test_submit_batch_defaults(uploads_api, batches_api, dev_bucket_id):
    _, result, _ = confirmed(uploads_api, DEV_BUCKET)
    batch = batches_api.create_batch_buckets_batches(DEV_BUCKET, CreateBatchRequest(object_ids=[result.object_id]))
    response = batches_api.submit_batch_buckets_batches_with_http_info(DEV_BUCKET, batch.batch_id)
    expect_status(response, 200)
    task = response.data
    assert_no_loss(raw_json(response), task)
    assert value_of(task.task_type) == "api_buckets_batches_submit"
    batch = batches_api.get_batch_buckets_batches(DEV_BUCKET, batch.batch_id)
    assert value_of(batch.status) == "PENDING"
    assert batch.task_id == task.task_id


def test_list_batches_defaults(uploads_api, batches_api):
    _, result, _ = confirmed(uploads_api, DEV_BUCKET)
    batch = batches_api.create_batch_buckets_batches(DEV_BUCKET, CreateBatchRequest(object_ids=[result.object_id]))
    response = batches_api.list_batches_buckets_with_http_info(DEV_BUCKET)
    expect_status(response, 200)
    listing = response.data
    assert_no_loss(raw_json(response), listing)
    assert batch.batch_id in [b.batch_id for b in listing.results]
    assert listing.total_count >= len(listing.results) >= 1


# --- BucketObjectsApi --------------------------------------------------------------------


def test_get_object_defaults(uploads_api, objects_api, dev_bucket_id):
    upload, result, data = confirmed(uploads_api, DEV_BUCKET, filename="object.txt")
    response = objects_api.get_object_buckets_with_http_info(DEV_BUCKET, result.object_id)
    expect_status(response, 200)
    obj = response.data
    assert_no_loss(raw_json(response), obj)
    assert obj.object_id == result.object_id
    assert obj.bucket_id == dev_bucket_id
    assert obj.created_at is not None and obj.updated_at is not None
    assert obj.status is not None
    assert len(obj.blobs) == 1
    blob = obj.blobs[0]
    assert blob.blob_id
    assert blob.var_property
    assert value_of(blob.type) == "text"
    assert blob.key_prefix == get_upload(uploads_api, DEV_BUCKET, upload.upload_id).s3_key
    assert blob.details.filename == "object.txt"
    assert blob.details.size_bytes == len(data)
    assert blob.details.mime_type == "text/plain"
    assert blob.details.hash == sha256(data)


def test_get_object_realistic(uploads_api, objects_api, new_bucket):
    bucket = new_bucket({"photo": BucketSchemaFieldType.IMAGE, "caption": BucketSchemaFieldType.STRING}).bucket_id
    data = unique_bytes("png")
    upload, result, _ = confirmed(
        uploads_api,
        bucket,
        data,
        "IMG_1.png",
        "image/png",
        blob_property="photo",
        blob_type="image",
        object_metadata={"caption": "sunset"},
    )
    response = objects_api.get_object_buckets_with_http_info(
        bucket, result.object_id, return_presigned_urls=True, include_document_count=False
    )
    expect_status(response, 200)
    obj = response.data
    assert_no_loss(raw_json(response), obj)
    assert obj.bucket_id == bucket
    blob = obj.blobs[0]
    assert blob.var_property == "photo"
    assert value_of(blob.type) == "image"
    assert blob.key_prefix == get_upload(uploads_api, bucket, upload.upload_id).s3_key
    assert blob.details.mime_type == "image/png"
    assert blob.details.hash == sha256(data)
    assert blob.details.size_bytes == len(data)
    assert obj.to_dict().get("metadata") == {"caption": "sunset"}


# --- errors --------------------------------------------------------------------------------


def test_400_confirm_of_upload_never_put(uploads_api):
    upload = create_upload(uploads_api, DEV_BUCKET, "nothing.txt", "text/plain")
    with pytest.raises(BadRequestException) as exc_info:
        uploads_api.confirm_upload_buckets(DEV_BUCKET, upload.upload_id)
    error = assert_error(exc_info, 400)
    assert error.error.type == "BadRequestError"
    assert error.error.details["reason"] == "object_not_found"


def test_401_bad_key():
    client = make_client(access_token="sk_not_a_real_key_" + uuid.uuid4().hex)
    try:
        with pytest.raises(UnauthorizedException) as exc_info:
            BucketsApi(client).get_bucket(DEV_BUCKET)
        assert_error(exc_info, 401)
    finally:
        client.rest_client.pool_manager.clear()


def test_404_unknown_bucket(buckets_api, uploads_api):
    with pytest.raises(NotFoundException) as exc_info:
        buckets_api.get_bucket(f"no-such-bucket-{uuid.uuid4().hex[:8]}")
    assert_error(exc_info, 404)
    with pytest.raises(NotFoundException) as exc_info:
        uploads_api.create_upload_buckets(
            f"no-such-bucket-{uuid.uuid4().hex[:8]}", CreateUploadRequest(filename="a", content_type="text/plain")
        )
    assert_error(exc_info, 404)
    with pytest.raises(NotFoundException) as exc_info:
        uploads_api.get_upload_buckets(DEV_BUCKET, f"upl_{uuid.uuid4().hex}")
    assert_error(exc_info, 404)


def test_422_out_of_range_expiration(uploads_api):
    # The SDK refuses presigned_url_expiration < 60 itself; model_construct skips its
    # validation so the value reaches the server, which must refuse it too.
    raw = CreateUploadRequest.model_construct(
        filename="a.txt", content_type="text/plain", presigned_url_expiration=10
    )
    with pytest.raises(UnprocessableEntityException) as exc_info:
        uploads_api.create_upload_buckets(DEV_BUCKET, raw)
    assert_error(exc_info, 422)
    raw = CreateUploadRequest.model_construct(
        filename="a.txt", content_type="text/plain", presigned_url_expiration=86401
    )
    with pytest.raises(UnprocessableEntityException) as exc_info:
        uploads_api.create_upload_buckets(DEV_BUCKET, raw)
    assert_error(exc_info, 422)


def test_422_unknown_body_key(batches_api, raw_http):
    # ListBatchesRequest keeps undeclared keys (additional_properties) and sends them.
    with pytest.raises(UnprocessableEntityException) as exc_info:
        batches_api.list_batches_buckets(DEV_BUCKET, ListBatchesRequest.from_dict({"bogus_key": 1}))
    assert_error(exc_info, 422)
    response = raw_http.post(
        f"{BASE_URL}/v1/buckets/{DEV_BUCKET}/uploads",
        json={"filename": "a.txt", "content_type": "text/plain", "bogus_key": 1},
        timeout=30,
    )
    assert response.status_code == 422
    error = ErrorResponse.from_json(response.text)
    assert error.status == 422 and error.success is False and error.error.type


def admin(*args):
    """`upconfirm admin ...` against the server's database; its stdout."""
    import subprocess

    out = subprocess.run(
        [os.environ["UPCONFIRM_BIN"], "admin", *args], capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


def test_429_rate_limited_organization(buckets_api):
    # An organization of its own, limited to a burst of 2 and one request a second.
    org = admin("create-org", "--name", f"sdk-limited-{uuid.uuid4().hex[:8]}")
    admin("create-namespace", "--org", org, "--name", "limited")
    key = admin("create-key", "--org", org).split()[-1]
    admin("set-rate-limit", "--org", org, "--per-second", "1", "--burst", "2")
    limited = BucketsApi(make_client(access_token=key, namespace="limited"))
    first = limited.list_buckets_with_http_info(list_buckets_request=ListBucketsRequest())
    assert first.status_code == 200
    first_headers = {k.lower(): v for k, v in first.headers.items()}
    assert first_headers["x-ratelimit-limit"] == "2"
    assert first_headers["x-ratelimit-remaining"] == "1"
    limited.list_buckets(list_buckets_request=ListBucketsRequest())
    with pytest.raises(ApiException) as exc_info:
        limited.list_buckets(list_buckets_request=ListBucketsRequest())
    error = assert_error(exc_info, 429)
    assert error.error.type == "TooManyRequestsError"
    headers = {k.lower(): v for k, v in exc_info.value.headers.items()}
    assert int(headers["retry-after"]) >= 1
    assert headers["x-ratelimit-remaining"] == "0"
    assert int(headers["x-ratelimit-reset"]) >= 1
    # Other organizations are not held up; the limited one passes again once a token is back.
    assert buckets_api.list_buckets(list_buckets_request=ListBucketsRequest()) is not None
    time.sleep(int(headers["retry-after"]) + 0.1)
    assert limited.list_buckets(list_buckets_request=ListBucketsRequest()) is not None
