"""GET /v1/models: the model catalogue (shared/models.toml or NANOEDIT_MODELS_FILE) as clients see it.

Public, like GET /v1: which models exist, what each accepts (image sizes, aspect ratios, reference images,
thinking levels), their catalogue prices (with source and date: the cost a job shows is an estimate from these)
and lifecycle (shutdown date, replacement). The submit page fills its option lists from it.
"""

from __future__ import annotations

import datetime as dt

from flask import Blueprint, Response, jsonify

from api.services import services
from shared.catalogue import load_catalogue

bp = Blueprint("models", __name__)


@bp.get("/v1/models")
def list_models() -> Response:
    svc = services()
    catalogue = load_catalogue(svc.settings.models_file)
    today = dt.datetime.fromtimestamp(svc.clock.now(), dt.UTC).date()
    default = catalogue.resolve(svc.settings.gemini_model, today).model.id
    return jsonify({"default": default, "provider": svc.settings.provider, "source": catalogue.source,
                    "models": [m.to_dict(today) for m in catalogue.models.values()]})
