"""Fixtures of the SDK test suite.

The tests drive a running upconfirm through the official Python SDK (`mixpeek`), whose
models and API methods are the contract. tests/sdk/run.sh starts a server and sets:

- UPCONFIRM_BASE_URL   the API's base URL (http://127.0.0.1:PORT)
- UPCONFIRM_API_KEY    a key of the namespace below
- UPCONFIRM_NAMESPACE  the namespace every request names in X-Namespace (`dev`)
- UPCONFIRM_BUCKET     a bucket that exists in it (`dev`)
"""

import os
import uuid

import mixpeek
import pytest
import requests
from mixpeek.api import BucketBatchesApi, BucketObjectsApi, BucketsApi, BucketUploadsApi, TasksApi
from mixpeek.models import BucketCreateRequest, BucketSchemaFieldInput, BucketSchemaInput

BASE_URL = os.environ.get("UPCONFIRM_BASE_URL", "http://127.0.0.1:8080").rstrip("/")
API_KEY = os.environ.get("UPCONFIRM_API_KEY", "")
NAMESPACE = os.environ.get("UPCONFIRM_NAMESPACE", "dev")
DEV_BUCKET = os.environ.get("UPCONFIRM_BUCKET", "dev")


def make_client(access_token=None, namespace=NAMESPACE):
    """An ApiClient as an SDK user builds one. The SDK's methods authenticate with the
    `BearerAuth` setting only (Configuration.access_token becomes `Authorization: Bearer`);
    none of them sends the namespace, so it goes in as a default header."""
    config = mixpeek.Configuration(host=BASE_URL, access_token=access_token or API_KEY)
    client = mixpeek.ApiClient(config)
    client.set_default_header("X-Namespace", namespace)
    return client


@pytest.fixture(scope="session")
def api_client():
    if not API_KEY:
        pytest.fail("UPCONFIRM_API_KEY is not set: run the suite through tests/sdk/run.sh")
    client = make_client()
    yield client
    client.rest_client.pool_manager.clear()


@pytest.fixture(scope="session")
def buckets_api(api_client):
    return BucketsApi(api_client)


@pytest.fixture(scope="session")
def uploads_api(api_client):
    return BucketUploadsApi(api_client)


@pytest.fixture(scope="session")
def tasks_api(api_client):
    return TasksApi(api_client)


@pytest.fixture(scope="session")
def batches_api(api_client):
    return BucketBatchesApi(api_client)


@pytest.fixture(scope="session")
def objects_api(api_client):
    return BucketObjectsApi(api_client)


@pytest.fixture(scope="session")
def raw_http():
    """Plain HTTP with the same credentials, for requests the SDK refuses to build."""
    session = requests.Session()
    session.headers.update({"Authorization": f"Bearer {API_KEY}", "X-Namespace": NAMESPACE})
    yield session
    session.close()


@pytest.fixture(scope="session")
def dev_bucket_id(raw_http):
    """The id of the dev bucket, read without the SDK so that a parse problem of
    BucketResponse shows in the bucket tests only."""
    response = raw_http.get(f"{BASE_URL}/v1/buckets/{DEV_BUCKET}", timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["bucket_id"]


@pytest.fixture
def new_bucket(buckets_api):
    """Creates a bucket of its own for a test (exact counts, its own duplicates)."""

    def create(schema=None, **fields):
        # One file-type property: uploads that name no blob_property land in it (the SDK's
        # rule), and text/plain matches its type.
        properties = schema or {"content": "text"}
        request = BucketCreateRequest(
            bucket_name=fields.pop("bucket_name", f"sdk-{uuid.uuid4().hex[:12]}"),
            bucket_schema=BucketSchemaInput(
                properties={
                    name: BucketSchemaFieldInput(type=kind) for name, kind in properties.items()
                }
            ),
            **fields,
        )
        response = buckets_api.create_bucket_with_http_info(request)
        assert response.status_code == 200
        assert response.data is not None and response.data.bucket_id
        return response.data

    return create
