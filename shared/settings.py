"""The one typed settings object: read from the environment once, then passed explicitly everywhere.

Names are the public `NANOEDIT_*` configuration (docs/operations.md#configuration; plus the SDK's own GEMINI_API_KEY /
GOOGLE_API_KEY). Nothing else in the code base reads `os.environ` for configuration.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from shared.blob_config import BlobConfig
from shared.circuit import CircuitConfig
from shared.limiter import LimitConfig
from shared.models import DEFAULT_MODEL, normalize_model_name
from shared.outbound import OutboundPolicy
from shared.redis_config import RedisSentinel, RedisTls
from shared.settings_env import (
    SettingsError as SettingsError,  # re-exported: callers catch it from here
)
from shared.settings_env import (
    check_bind,
    read_allow_hosts,
    read_blob_config,
    read_csv,
    read_float,
    read_int,
    read_pool_max,
    read_ports,
    read_redis_sentinel,
    read_redis_tls,
    read_redis_url,
    read_worker_class,
)
from shared.settings_env import (
    check_webhook_secret as check_webhook_secret,
)
from shared.settings_env import (
    is_loopback_host as is_loopback_host,
)


@dataclass(frozen=True, slots=True)
class Settings:
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_prefix: str = "nanoedit"
    redis_tls: RedisTls | None = None  # set when redis_url is rediss:// (shared/redis_config.py)
    redis_sentinel: RedisSentinel | None = None  # master found through Sentinel; the URL's host is then ignored
    data_dir: Path = Path("var")
    host: str = "127.0.0.1"
    port: int = 8000
    web_workers: int = 2  # gunicorn worker processes of one web instance (deploy/gunicorn.conf.py)
    web_threads: int = 4  # threads per gunicorn worker (gthread only)
    web_worker_class: str = "gevent"  # gunicorn worker class: gevent (default) | gthread (docs/operations.md)
    web_worker_connections: int = 2000  # gevent: simultaneous connections per worker process
    max_waiters: int = 1000  # per web worker process: requests held by `Prefer: wait` or an event stream
    stream_max_s: int = 300  # one event stream (GET /v1/jobs/{id}/events) lasts at most this long
    public_base_url: str = ""

    provider: str = "local"  # resolved: "gemini" | "local"
    provider_requested: str = "auto"
    gemini_api_key: str = field(default="", repr=False)
    gemini_base_url: str = ""
    gemini_model: str = DEFAULT_MODEL
    models_file: str = ""  # model catalogue TOML; "" = the packaged shared/models.toml (shared/catalogue.py)
    gemini_concurrency: int = 3
    gemini_rpm: int = 0
    gemini_timeout_s: float = 60.0
    gemini_images_per_min: int = 0
    gemini_lease_s: float = 0.0  # 0 = derive: the generate task's hard time limit + 10 s
    quota_wait_s: float = 2.0  # a generate task waits this long in its slot for quota before re-queueing
    rate_limit_cooldown_s: float = 10.0  # fleet pause after a 429 without RetryInfo
    circuit_failures: int = 10  # consecutive transient failures (why 10: shared/circuit.py)
    circuit_failure_ratio: float = 0.5
    circuit_min_calls: int = 20
    circuit_window_s: float = 60.0
    circuit_open_s: float = 30.0
    max_retries: int = 4
    retry_base_s: float = 1.0  # first retry waits up to this (full jitter), doubling per retry
    celery_rate_limit: str = ""  # BASELINE ONLY (bench): Celery's per-worker rate_limit on generate, e.g. "120/m"
    job_deadline_s: int = 600
    local_delay_s: float = 0.0  # artificial latency of the local provider (demos, chaos tests)

    api_keys: tuple[str, ...] = field(default=(), repr=False)
    api_keys_file: str = ""  # TOML [[keys]]: name, key_hash, webhook_secret, limits (shared/apikeys.py)
    key_hash_secret: str = field(default="", repr=False)  # HMAC secret for key hashes ("" = one in data_dir)
    key_submissions_per_min: int = 120  # per-key default; a key in the keys file may override it (0 = no limit)
    key_max_waiting_jobs: int = 1000  # per-key default of jobs accepted and not yet finished (0 = no limit)
    key_monthly_budget_usd: float = 0.0  # per-key default estimated spend per UTC month (0 = no budget)
    # Messages kept ready in each Celery job queue; the rest wait in per-key fair lines (shared/fairqueue.py).
    fair_queue_depth: int = 8
    admin_token: str = field(default="", repr=False)

    job_ttl_s: int = 24 * 3600
    max_images: int = 8
    max_image_bytes: int = 20 * 1024 * 1024
    max_request_bytes: int = 100 * 1024 * 1024
    max_image_pixels: int = 64_000_000
    max_long_edge: int = 2048
    # Intake bounds (docs/api.md, "Limits and accepted formats"): the web process refuses before it reads more.
    max_instruction_chars: int = 10_000
    max_form_parts: int = 64  # multipart parts (files + fields) per request
    max_form_field_bytes: int = 256 * 1024  # one multipart text field (werkzeug's MAX_FORM_MEMORY_SIZE)
    max_json_bytes: int = 32 * 1024 * 1024  # a JSON submission body (base64 images included)
    max_json_depth: int = 32  # nesting of arrays/objects in any JSON body
    max_frames: int = 1000  # frames/pages per input image (only the first is edited)
    # Output bounds (workers/output_bounds.py): every provider result is checked before it is stored.
    max_output_bytes: int = 32 * 1024 * 1024
    max_output_pixels: int = 4096 * 4096
    max_output_long_edge: int = 4096
    # Request hygiene (api/hygiene.py): Host names answered ("*" = any); non-loopback bind with auth off.
    allowed_hosts: tuple[str, ...] = ()
    allow_insecure: bool = False

    # Celery reliability (docs/architecture.md, "Celery reliability settings"). Hard limits per stage; the
    # visibility timeout derives from them.
    preprocess_soft_limit_s: int = 60
    preprocess_hard_limit_s: int = 90
    max_countdown_s: int = 120
    max_deliveries: int = 3
    visibility_timeout_s: int = 0  # 0 = derive: 2 × longest hard limit + max countdown + 60 s
    worker_heartbeat_s: int = 10
    pool_max_processes: int = 64  # ceiling of a run-time pool resize, per worker instance (monitoring/pools.py)
    metrics_port: int = 0  # a worker instance's Prometheus endpoint (main process, all children); 0 = off

    report_interval_s: int = 30
    report_min_samples: int = 20
    reconcile_interval_s: int = 15
    cache_ttl_s: int = 3600  # identical requests within this reuse stored outputs (0 = off)
    webhook_secret: str = field(default="", repr=False)
    webhook_timeout_s: float = 10.0  # one delivery attempt, start to end (connect, TLS, send, answer)
    webhook_max_attempts: int = 0  # 0 = no cap: NANOEDIT_WEBHOOK_RETRY_HOURS decides when to give up
    webhook_retry_hours: float = 24.0  # retry window, from the first attempt
    webhook_retry_base_s: float = 5.0  # first retry after ~this, doubling (jittered), capped at webhook_retry_cap_s
    webhook_retry_cap_s: float = 3600.0
    webhook_dispatch_interval_s: float = 5.0  # beat: due deliveries in the outbox → the webhooks queue
    webhook_allow_hosts: tuple[str, ...] = ()  # host names or IPs/CIDRs allowed though not public (shared/outbound.py)
    webhook_allowed_ports: tuple[int, ...] = (80, 443)
    webhook_resolve_timeout_s: float = 2.0  # DNS lookup of a webhook_url host at intake and at send time
    alert_rules: str = ""
    alert_webhook_url: str = ""
    alert_webhook_secret: str = field(default="", repr=False)
    slack_webhook_url: str = ""
    smtp_url: str = field(default="", repr=False)
    alert_email_to: str = ""
    pagerduty_routing_key: str = field(default="", repr=False)  # PagerDuty Events API v2 integration key
    pagerduty_url: str = "https://events.pagerduty.com/v2/enqueue"
    sms_url: str = ""  # Twilio-compatible Messages endpoint (form POST, HTTP basic auth)
    sms_account_sid: str = ""
    sms_auth_token: str = field(default="", repr=False)
    sms_from: str = ""
    sms_to: str = ""  # comma-separated numbers
    log_level: str = "INFO"
    blob: BlobConfig = field(default_factory=BlobConfig)  # files or an S3 bucket (shared/blob_config.py)

    @property
    def generate_soft_limit_s(self) -> int:
        return int(self.gemini_timeout_s) + 30

    @property
    def generate_hard_limit_s(self) -> int:
        return self.generate_soft_limit_s + 30

    @property
    def effective_lease_s(self) -> float:
        return self.gemini_lease_s or float(self.generate_hard_limit_s + 10)

    def limit_config(self) -> LimitConfig:
        """Env defaults of the fleet limiter (operators override them at run time, stored in Redis)."""
        return LimitConfig(concurrency=self.gemini_concurrency, rpm=self.gemini_rpm,
                           images_per_min=self.gemini_images_per_min, lease_s=self.effective_lease_s)

    def circuit_config(self) -> CircuitConfig:
        return CircuitConfig(consecutive_failures=self.circuit_failures, failure_ratio=self.circuit_failure_ratio,
                             min_calls=self.circuit_min_calls, window_s=self.circuit_window_s,
                             open_s=self.circuit_open_s)

    @property
    def effective_visibility_timeout_s(self) -> int:
        if self.visibility_timeout_s:
            return self.visibility_timeout_s
        longest = max(self.preprocess_hard_limit_s, self.generate_hard_limit_s)
        return 2 * longest + self.max_countdown_s + 60

    @property
    def auth_enabled(self) -> bool:
        return bool(self.api_keys or self.api_keys_file)

    @property
    def blob_dir(self) -> Path:
        """The file backend's root: a file NANOEDIT_BLOB_URL's directory, else data_dir/blobs."""
        return self.blob.root or self.data_dir / "blobs"

    def outbound_policy(self) -> OutboundPolicy:
        """Where client-chosen URLs (job webhooks) may point (shared/outbound.py)."""
        return OutboundPolicy.build(self.webhook_allow_hosts, self.webhook_allowed_ports,
                                    self.webhook_resolve_timeout_s)

    def with_(self, **changes: Any) -> Settings:
        """A copy with some fields changed (tests, CLI overrides)."""
        return replace(self, **changes)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        key = env.get("GEMINI_API_KEY", "").strip() or env.get("GOOGLE_API_KEY", "").strip()
        requested = env.get("NANOEDIT_PROVIDER", "auto").strip().lower() or "auto"
        if requested not in ("auto", "gemini", "local"):
            raise SettingsError(f"NANOEDIT_PROVIDER={requested!r}: use auto, gemini or local")
        provider = requested if requested != "auto" else ("gemini" if key else "local")
        if provider == "gemini" and not key:
            raise SettingsError("NANOEDIT_PROVIDER=gemini needs GEMINI_API_KEY or GOOGLE_API_KEY")
        secret = env.get("NANOEDIT_WEBHOOK_SECRET", "").strip()
        if secret:
            check_webhook_secret(secret)
        model = normalize_model_name(env.get("NANOEDIT_GEMINI_MODEL", "")) or DEFAULT_MODEL
        insecure = check_bind(env)
        return cls(
            redis_url=read_redis_url(env),
            redis_tls=read_redis_tls(env),
            redis_sentinel=read_redis_sentinel(env),
            redis_prefix=env.get("NANOEDIT_REDIS_PREFIX", "").strip() or "nanoedit",
            data_dir=Path(env.get("NANOEDIT_DATA_DIR", "").strip() or "var").resolve(),
            host=env.get("NANOEDIT_HOST", "").strip() or "127.0.0.1",
            port=read_int(env, "NANOEDIT_PORT", 8000, 1),
            web_workers=read_int(env, "NANOEDIT_WEB_WORKERS", 2, 1),
            web_threads=read_int(env, "NANOEDIT_WEB_THREADS", 4, 1),
            web_worker_class=read_worker_class(env),
            web_worker_connections=read_int(env, "NANOEDIT_WEB_WORKER_CONNECTIONS", 2000, 10),
            max_waiters=read_int(env, "NANOEDIT_MAX_WAITERS", 1000, 0),
            stream_max_s=read_int(env, "NANOEDIT_STREAM_MAX_S", 300, 1),
            public_base_url=env.get("NANOEDIT_PUBLIC_BASE_URL", "").strip().rstrip("/"),
            provider=provider,
            provider_requested=requested,
            gemini_api_key=key,
            gemini_base_url=env.get("NANOEDIT_GEMINI_BASE_URL", "").strip(),
            gemini_model=model,
            models_file=env.get("NANOEDIT_MODELS_FILE", "").strip(),
            gemini_concurrency=read_int(env, "NANOEDIT_GEMINI_CONCURRENCY", 3, 1),
            gemini_rpm=read_int(env, "NANOEDIT_GEMINI_RPM", 0, 0),
            gemini_timeout_s=read_float(env, "NANOEDIT_GEMINI_TIMEOUT_S", 60.0, 0.1),
            gemini_images_per_min=read_int(env, "NANOEDIT_GEMINI_IMAGES_PER_MIN", 0, 0),
            gemini_lease_s=read_float(env, "NANOEDIT_GEMINI_LEASE_S", 0.0, 0.0),
            quota_wait_s=read_float(env, "NANOEDIT_QUOTA_WAIT_S", 2.0, 0.0),
            rate_limit_cooldown_s=read_float(env, "NANOEDIT_RATE_LIMIT_COOLDOWN_S", 10.0, 0.0),
            circuit_failures=read_int(env, "NANOEDIT_CIRCUIT_FAILURES", 10, 1),
            circuit_failure_ratio=read_float(env, "NANOEDIT_CIRCUIT_FAILURE_RATIO", 0.5, 0.01),
            circuit_min_calls=read_int(env, "NANOEDIT_CIRCUIT_MIN_CALLS", 20, 1),
            circuit_window_s=read_float(env, "NANOEDIT_CIRCUIT_WINDOW_S", 60.0, 1.0),
            circuit_open_s=read_float(env, "NANOEDIT_CIRCUIT_OPEN_S", 30.0, 0.1),
            max_retries=read_int(env, "NANOEDIT_MAX_RETRIES", 4, 0),
            retry_base_s=read_float(env, "NANOEDIT_RETRY_BASE_S", 1.0, 0.0),
            celery_rate_limit=env.get("NANOEDIT_CELERY_RATE_LIMIT", "").strip(),
            job_deadline_s=read_int(env, "NANOEDIT_JOB_DEADLINE_S", 600, 1),
            local_delay_s=read_float(env, "NANOEDIT_LOCAL_DELAY_S", 0.0, 0.0),
            api_keys=read_csv(env, "NANOEDIT_API_KEYS"),
            api_keys_file=env.get("NANOEDIT_API_KEYS_FILE", "").strip(),
            key_hash_secret=env.get("NANOEDIT_KEY_HASH_SECRET", "").strip(),
            key_submissions_per_min=read_int(env, "NANOEDIT_KEY_SUBMISSIONS_PER_MIN", 120, 0),
            key_max_waiting_jobs=read_int(env, "NANOEDIT_KEY_MAX_WAITING_JOBS", 1000, 0),
            key_monthly_budget_usd=read_float(env, "NANOEDIT_KEY_MONTHLY_BUDGET_USD", 0.0, 0.0),
            fair_queue_depth=read_int(env, "NANOEDIT_FAIR_QUEUE_DEPTH", 8, 1),
            admin_token=env.get("NANOEDIT_ADMIN_TOKEN", "").strip(),
            job_ttl_s=read_int(env, "NANOEDIT_JOB_TTL_S", 24 * 3600, 1),
            max_images=read_int(env, "NANOEDIT_MAX_IMAGES", 8, 2),
            max_image_bytes=read_int(env, "NANOEDIT_MAX_IMAGE_BYTES", 20 * 1024 * 1024, 1024),
            max_request_bytes=read_int(env, "NANOEDIT_MAX_REQUEST_BYTES", 100 * 1024 * 1024, 1024),
            max_image_pixels=read_int(env, "NANOEDIT_MAX_IMAGE_PIXELS", 64_000_000, 1),
            max_long_edge=read_int(env, "NANOEDIT_MAX_LONG_EDGE", 2048, 64),
            max_instruction_chars=read_int(env, "NANOEDIT_MAX_INSTRUCTION_CHARS", 10_000, 1),
            max_form_parts=read_int(env, "NANOEDIT_MAX_FORM_PARTS", 64, 4),
            # Above werkzeug's 64 KiB read chunk, which its per-field check also counts.
            max_form_field_bytes=read_int(env, "NANOEDIT_MAX_FORM_FIELD_BYTES", 256 * 1024, 128 * 1024),
            max_json_bytes=read_int(env, "NANOEDIT_MAX_JSON_BYTES", 32 * 1024 * 1024, 1024),
            max_json_depth=read_int(env, "NANOEDIT_MAX_JSON_DEPTH", 32, 4),
            max_frames=read_int(env, "NANOEDIT_MAX_FRAMES", 1000, 1),
            max_output_bytes=read_int(env, "NANOEDIT_MAX_OUTPUT_BYTES", 32 * 1024 * 1024, 1024),
            max_output_pixels=read_int(env, "NANOEDIT_MAX_OUTPUT_PIXELS", 4096 * 4096, 4096),
            max_output_long_edge=read_int(env, "NANOEDIT_MAX_OUTPUT_LONG_EDGE", 4096, 64),
            allowed_hosts=tuple(h.lower() for h in read_csv(env, "NANOEDIT_ALLOWED_HOSTS")),
            allow_insecure=insecure,
            preprocess_soft_limit_s=read_int(env, "NANOEDIT_PREPROCESS_SOFT_LIMIT_S", 60, 1),
            preprocess_hard_limit_s=read_int(env, "NANOEDIT_PREPROCESS_HARD_LIMIT_S", 90, 2),
            max_countdown_s=read_int(env, "NANOEDIT_MAX_COUNTDOWN_S", 120, 1),
            max_deliveries=read_int(env, "NANOEDIT_MAX_DELIVERIES", 3, 1),
            visibility_timeout_s=read_int(env, "NANOEDIT_VISIBILITY_TIMEOUT_S", 0, 0),
            worker_heartbeat_s=read_int(env, "NANOEDIT_WORKER_HEARTBEAT_S", 10, 1),
            pool_max_processes=read_pool_max(env),
            metrics_port=read_int(env, "NANOEDIT_METRICS_PORT", 0, 0),
            report_interval_s=read_int(env, "NANOEDIT_REPORT_INTERVAL_S", 30, 1),
            report_min_samples=read_int(env, "NANOEDIT_REPORT_MIN_SAMPLES", 20, 1),
            reconcile_interval_s=read_int(env, "NANOEDIT_RECONCILE_INTERVAL_S", 15, 1),
            cache_ttl_s=read_int(env, "NANOEDIT_CACHE_TTL_S", 3600, 0),
            webhook_secret=env.get("NANOEDIT_WEBHOOK_SECRET", "").strip(),
            webhook_timeout_s=read_float(env, "NANOEDIT_WEBHOOK_TIMEOUT_S", 10.0, 0.1),
            webhook_max_attempts=read_int(env, "NANOEDIT_WEBHOOK_MAX_ATTEMPTS", 0, 0),
            webhook_retry_hours=read_float(env, "NANOEDIT_WEBHOOK_RETRY_HOURS", 24.0, 0.0),
            webhook_retry_base_s=read_float(env, "NANOEDIT_WEBHOOK_RETRY_BASE_S", 5.0, 0.01),
            webhook_retry_cap_s=read_float(env, "NANOEDIT_WEBHOOK_RETRY_CAP_S", 3600.0, 0.01),
            webhook_dispatch_interval_s=read_float(env, "NANOEDIT_WEBHOOK_DISPATCH_INTERVAL_S", 5.0, 0.5),
            webhook_allow_hosts=read_allow_hosts(env),
            webhook_allowed_ports=read_ports(env, "NANOEDIT_WEBHOOK_ALLOWED_PORTS", (80, 443)),
            webhook_resolve_timeout_s=read_float(env, "NANOEDIT_WEBHOOK_RESOLVE_TIMEOUT_S", 2.0, 0.1),
            alert_rules=env.get("NANOEDIT_ALERT_RULES", "").strip(),
            alert_webhook_url=env.get("NANOEDIT_ALERT_WEBHOOK_URL", "").strip(),
            alert_webhook_secret=env.get("NANOEDIT_ALERT_WEBHOOK_SECRET", "").strip(),
            slack_webhook_url=env.get("NANOEDIT_SLACK_WEBHOOK_URL", "").strip(),
            smtp_url=env.get("NANOEDIT_SMTP_URL", "").strip(),
            alert_email_to=env.get("NANOEDIT_ALERT_EMAIL_TO", "").strip(),
            pagerduty_routing_key=env.get("NANOEDIT_PAGERDUTY_ROUTING_KEY", "").strip(),
            pagerduty_url=(env.get("NANOEDIT_PAGERDUTY_URL", "").strip()
                           or "https://events.pagerduty.com/v2/enqueue"),
            sms_url=env.get("NANOEDIT_SMS_URL", "").strip(),
            sms_account_sid=env.get("NANOEDIT_SMS_ACCOUNT_SID", "").strip(),
            sms_auth_token=env.get("NANOEDIT_SMS_AUTH_TOKEN", "").strip(),
            sms_from=env.get("NANOEDIT_SMS_FROM", "").strip(),
            sms_to=env.get("NANOEDIT_SMS_TO", "").strip(),
            log_level=(env.get("NANOEDIT_LOG_LEVEL", "").strip() or "INFO").upper(),
            blob=read_blob_config(env),
        )
