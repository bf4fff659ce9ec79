"""The baseline of the "http" bench: the accept and status routes a competent engineer writes first, in Flask.

Accept (`POST /jobs`): read the multipart upload, sha256 it, write the file, one Redis pipeline for the record
(HSET) and a sorted set of pending jobs (ZADD), Celery `send_task` to a queue nobody consumes (its own Redis
database), answer 202 with JSON. Status (`GET /jobs/<id>`): HGETALL + ZRANK, answer JSON. No validation, limits,
auth, fair queueing, idempotency or metrics: the point is what nanoedit's extra work costs. Served by gunicorn
with the same worker class, processes and connections as nanoedit's web (bench/http_bench.py).

Configured by BENCH_NAIVE_REDIS_URL, BENCH_NAIVE_BROKER_URL and BENCH_NAIVE_DATA_DIR (bench-only, not service
settings).
"""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from pathlib import Path

import redis
from celery import Celery
from flask import Flask, jsonify, request
from flask.typing import ResponseReturnValue

PENDING = "naive-pending"


def record_key(job_id: str) -> str:
    return f"naivejob-{job_id}"


def create_app() -> Flask:
    app = Flask(__name__)
    r = redis.Redis.from_url(os.environ["BENCH_NAIVE_REDIS_URL"], decode_responses=True)
    celery = Celery("naive", broker=os.environ["BENCH_NAIVE_BROKER_URL"])
    data_dir = Path(os.environ["BENCH_NAIVE_DATA_DIR"])
    data_dir.mkdir(parents=True, exist_ok=True)

    @app.post("/jobs")
    def accept() -> ResponseReturnValue:
        upload = request.files["image"]
        data = upload.read()
        digest = hashlib.sha256(data).hexdigest()
        job_id = uuid.uuid4().hex
        (data_dir / f"{job_id}.bin").write_bytes(data)
        now = time.time()
        pipe = r.pipeline()
        pipe.hset(record_key(job_id), mapping={"id": job_id, "state": "pending", "sha256": digest,
                                               "bytes": len(data), "instruction": request.form.get("instruction", ""),
                                               "created_at": now})
        pipe.zadd(PENDING, {job_id: now})
        pipe.execute()
        celery.send_task("naive.process", args=[job_id], queue="naive-nobody")
        return jsonify({"id": job_id, "state": "pending"}), 202

    @app.get("/jobs/<job_id>")
    def status(job_id: str) -> ResponseReturnValue:
        pipe = r.pipeline(transaction=False)
        pipe.hgetall(record_key(job_id))
        pipe.zrank(PENDING, job_id)
        record, rank = pipe.execute()
        if not record:
            return jsonify({"error": "not found"}), 404
        return jsonify({**record, "queue_position": rank})

    return app


app = create_app() if "BENCH_NAIVE_REDIS_URL" in os.environ else None
