"""The OpenAPI document: FastAPI's, plus the job spec's JSON Schema (the same one `zlt schema` prints) as the
request body of the submit, validate and render routes, in JSON and (for submit) multipart form."""

from __future__ import annotations

from typing import Any

from zlt import backends
from zlt.spec.agent_schema import agent_spec_schema

SPEC_REF = "#/components/schemas/JobSpec"


HTTP_DATASET_PATH = ("Image folder inside one of the server's data roots: absolute, or relative to a data root. "
                     "Leave it out and upload a zip (multipart field 'dataset') when the server has no data roots.")


def spec_schemas() -> dict[str, Any]:
    """JobSpec and every model it uses, as OpenAPI component schemas (the same as GET /v1/schema)."""
    schema = agent_spec_schema(backends.names(), dataset_path=HTTP_DATASET_PATH,
                               ref_template="#/components/schemas/{model}")
    defs = schema.pop("$defs", {})
    return {**defs, "JobSpec": schema}


def json_spec_body(description: str) -> dict[str, Any]:
    return {"requestBody": {"required": True, "description": description,
                            "content": {"application/json": {"schema": {"$ref": SPEC_REF}}}}}


def submit_body() -> dict[str, Any]:
    return {"requestBody": {
        "required": True,
        "description": "The job spec as JSON (the schema `zlt schema` prints; the same as the YAML). The dataset is "
                       "either `dataset.path`, a folder inside one of the server's data roots, or a zip uploaded as "
                       "multipart/form-data with the spec (JSON text) in field `spec` and the zip in field `dataset`.",
        "content": {
            "application/json": {"schema": {"$ref": SPEC_REF}},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["spec"],
                    "additionalProperties": False,
                    "properties": {
                        "spec": {"type": "string", "description": "The job spec as JSON text."},
                        "dataset": {"type": "string", "format": "binary",
                                    "description": "A zip of the dataset folder (images with .txt captions)."},
                    },
                },
                "encoding": {"dataset": {"contentType": "application/zip"}},
            },
        },
    }}


def document_415(doc: dict[str, Any]) -> None:
    """Every operation that reads a body answers 415 to a content type it does not read (zlt/serve/jsonbody.py's
    one rule): say so in each, with the error body the other codes use."""
    for item in doc.get("paths", {}).values():
        for op in item.values():
            if not isinstance(op, dict) or "requestBody" not in op:
                continue
            responses = op.setdefault("responses", {})
            if "415" not in responses:
                body = responses.get("422", {}).get("content") or {
                    "application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
                responses["415"] = {"description": "Unsupported content type", "content": body}


def install(app: Any) -> None:
    """Make `app.openapi()` carry the spec schemas; computed once."""
    from fastapi.openapi.utils import get_openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            doc.setdefault("components", {}).setdefault("schemas", {}).update(spec_schemas())
            document_415(doc)
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi
