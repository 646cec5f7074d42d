"""Seeds the dev bucket for the schema check and writes its schemathesis configuration.

    python tests/sdk/schema_seed.py BASE_CONFIG OUT_CONFIG

Reads UPCONFIRM_BASE_URL, UPCONFIRM_API_KEY and UPCONFIRM_NAMESPACE, makes a few real
uploads (confirmed, pending, one in parts), an object, a batch and tasks in the dev bucket, and writes
BASE_CONFIG (schemathesis.toml) plus dictionaries of those ids to OUT_CONFIG, so that
generated paths name existing uploads, tasks, batches and objects most of the time instead
of stopping at 404.
"""

import json
import os
import sys
import tomllib
import uuid

import requests

BASE = os.environ["UPCONFIRM_BASE_URL"].rstrip("/")
HEADERS = {
    "Authorization": f"Bearer {os.environ['UPCONFIRM_API_KEY']}",
    "X-Namespace": os.environ.get("UPCONFIRM_NAMESPACE", "dev"),
}
BUCKET = os.environ.get("UPCONFIRM_BUCKET", "dev")


def call(method, path, **kwargs):
    response = requests.request(method, BASE + path, headers=HEADERS, timeout=30, **kwargs)
    if response.status_code >= 300:
        raise SystemExit(f"seeding: {method} {path} answered {response.status_code}: {response.text[:300]}")
    return response.json() if response.content else None


def upload(put=True):
    created = call("POST", f"/v1/buckets/{BUCKET}/uploads", json={"filename": "seed.txt", "content_type": "text/plain"})
    if put:
        response = requests.put(
            created["presigned_url"],
            data=f"seed {uuid.uuid4()}\n".encode(),
            headers={"Content-Type": "text/plain"},
            timeout=30,
        )
        if response.status_code != 200:
            raise SystemExit(f"seeding: PUT answered {response.status_code}")
    return created["upload_id"]


def main():
    base_config, out_config = sys.argv[1], sys.argv[2]
    with open(base_config, "rb") as fd:
        config = tomllib.load(fd)

    confirmed = [upload() for _ in range(2)]
    results = [call("POST", f"/v1/buckets/{BUCKET}/uploads/{u}/confirm") for u in confirmed]
    # One in parts, so that its parts routes answer 200 with real ids too.
    multipart = call(
        "POST",
        f"/v1/buckets/{BUCKET}/uploads",
        json={"filename": "seed.mkv", "content_type": "video/x-matroska", "file_size_bytes": 10 << 20, "multipart": True},
    )["upload_id"]
    uploads = confirmed + [upload(put=True), upload(put=False), multipart]
    objects = [r["object_id"] for r in results if r.get("object_id")]
    tasks = [r["task_id"] for r in results if r.get("task_id")]
    batch = call("POST", f"/v1/buckets/{BUCKET}/batches", json={"object_ids": objects})
    batches = [batch["batch_id"]]

    dictionaries = config.setdefault("dictionaries", {})
    parameters = config.setdefault("parameters", {})
    for name, values, parameter in [
        ("uploads", uploads, "path.upload_id"),
        ("objects", objects, "path.object_id"),
        ("tasks", tasks, "path.task_id"),
        ("batches", batches, "path.batch_id"),
    ]:
        dictionaries[name] = {"values": values}
        parameters[parameter] = {"dictionary": name, "probability": 0.8}

    # The configuration holds only tables of strings, numbers, booleans and lists: JSON spells
    # those as TOML does.
    lines = []
    for key, value in config.items():
        if key in ("dictionaries", "parameters"):
            continue
        if isinstance(value, dict):
            lines.append(f"\n[{key}]")
            for name, item in value.items():
                lines.append(f"{json.dumps(name)} = {json.dumps(item)}")
        else:
            lines.append(f"{json.dumps(key)} = {json.dumps(value)}")
    for name, dictionary in dictionaries.items():
        lines.append(f"\n[dictionaries.{name}]")
        for key, value in dictionary.items():
            lines.append(f"{json.dumps(key)} = {json.dumps(value)}")
    lines.append("\n[parameters]")
    for key, value in parameters.items():
        if isinstance(value, dict):
            inline = ", ".join(f"{json.dumps(k)} = {json.dumps(v)}" for k, v in value.items())
            lines.append(f"{json.dumps(key)} = {{ {inline} }}")
        else:
            lines.append(f"{json.dumps(key)} = {json.dumps(value)}")
    with open(out_config, "w") as fd:
        fd.write("\n".join(lines) + "\n")
    print(
        f"seeded {len(uploads)} uploads, {len(objects)} objects, {len(tasks)} tasks, "
        f"{len(batches)} batch in bucket {BUCKET} for the schema check"
    )


if __name__ == "__main__":
    main()
