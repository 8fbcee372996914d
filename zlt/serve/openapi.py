"""The OpenAPI document: FastAPI's, plus the job spec's JSON Schema (the same one `zlt schema` prints) as the
request body of the submit, validate and render routes, in JSON and (for submit) multipart form."""

from __future__ import annotations

from typing import Any

SPEC_REF = "#/components/schemas/JobSpec"


HTTP_DATASET_PATH = ("Image folder inside one of the server's data roots: absolute, or relative to a data root. "
                     "Leave it out and upload a zip (multipart field 'dataset') when the server has no data roots.")


def spec_schemas() -> dict[str, Any]:
    """JobSpec and every model it uses, as OpenAPI component schemas (the same as GET /v1/schema)."""
    from zlt.spec.agent_schema import agent_spec_schema

    schema = agent_spec_schema(dataset_path=HTTP_DATASET_PATH, ref_template="#/components/schemas/{model}")
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


def install(app: Any) -> None:
    """Make `app.openapi()` carry the spec schemas; computed once."""
    from fastapi.openapi.utils import get_openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            doc.setdefault("components", {}).setdefault("schemas", {}).update(spec_schemas())
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi
