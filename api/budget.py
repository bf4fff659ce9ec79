"""The per-key monthly budget at submission: 402 `budget_exhausted` before anything is stored or enqueued.

The numbers come from `shared.budget` (estimate of the job, month-to-date spend from the usage ledger). Auth off
(anonymous callers) or a budget of 0: no check.
"""

from __future__ import annotations

from flask import request

from api.auth import caller_key
from api.services import Services
from shared.budget import budget_for, job_cost_estimate_usd, month_to_date_usd
from shared.catalogue import load_catalogue
from shared.errors import NanoeditError
from shared.usage_ledger import UsageLedger


def check_budget(svc: Services, *, model: str, num_images: int, image_size: str, input_images: int) -> None:
    """402 `budget_exhausted` when this job's estimate would take the caller's key over its monthly budget."""
    key = caller_key(svc.settings, svc.keyring, request)
    if key is None:
        return
    budget = budget_for(key, svc.settings)
    if budget <= 0:
        return
    estimate = job_cost_estimate_usd(load_catalogue(svc.settings.models_file).get(model), num_images=num_images,
                                     image_size=image_size, input_images=input_images)
    spent = month_to_date_usd(UsageLedger(svc.redis, svc.settings.redis_prefix, svc.clock), key.owner)
    if spent + estimate > budget:
        raise NanoeditError(f"this key's estimated spend this month is ${spent:.4f} of its ${budget:.2f} budget; "
                            f"this job is estimated at up to ${estimate:.4f}", code="budget_exhausted")
