"""Per-key monthly budgets: the conservative cost estimate of a job before it runs, and the month-to-date spend.

A key's budget is its keys-file `monthly_budget_usd`, else `NANOEDIT_KEY_MONTHLY_BUDGET_USD` (0 = none). At
submission the API refuses (402 `budget_exhausted`) a job whose estimate, added to the key's estimated spend this
calendar month (UTC, from `shared.usage_ledger`), would exceed it. Costs are estimates at the catalogue's prices
(shared/models.toml), like every `cost_usd` the API shows.
"""

from __future__ import annotations

from shared.apikeys import ApiKey
from shared.catalogue import ModelSpec, estimate_cost_usd
from shared.jobs.options import Usage
from shared.settings import Settings
from shared.usage_ledger import UsageLedger, days_of

# Prompt tokens assumed per job on top of the input images' tokens (the instruction and description).
PROMPT_TEXT_TOKENS = 1000


def budget_for(key: ApiKey, settings: Settings) -> float:
    """The key's monthly budget in USD (0 = none)."""
    own = key.limits.monthly_budget_usd
    return settings.key_monthly_budget_usd if own is None else own


def job_cost_estimate_usd(spec: ModelSpec | None, *, num_images: int, image_size: str, input_images: int) -> float:
    """An upper-end estimate of what a job will cost: every output billed once at the requested image_size (the
    largest the model offers when unset), the input images at the largest image token count, plus some text."""
    if spec is None:
        return 0.0
    size = image_size or (max(spec.image_tokens, key=lambda s: spec.image_tokens[s]) if spec.image_tokens else "")
    image_tokens = spec.image_tokens.get(size, max(spec.image_tokens.values(), default=0))
    largest = max(spec.image_tokens.values(), default=0)
    per_call = Usage(prompt_tokens=PROMPT_TEXT_TOKENS + input_images * largest, prompt_image_tokens=input_images
                     * largest, output_tokens=image_tokens, output_image_tokens=image_tokens)
    return num_images * (estimate_cost_usd(spec, per_call, 1, size) or 0.0)


def month_to_date_usd(ledger: UsageLedger, owner: str) -> float:
    """The owner's estimated spend since the 1st of this month (UTC)."""
    return ledger.totals(owner, days_of("month", ledger.today())).cost_usd
