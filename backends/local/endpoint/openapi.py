"""The OpenAPI 3 description of the local endpoint (request and response of POST /score)."""

from __future__ import annotations

from typing import Any

from src.scoring import Scorer

_ERROR = {
    "description": "The request was refused; the message names the problem",
    "content": {
        "application/json": {
            "schema": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}
        }
    },
}


def feature_schema(scorer: Scorer, feature: Any) -> dict[str, Any]:
    """One column as the dataset schema recorded with the model describes it: a number (an integer where
    the signature says so) or a category (text; the known ones listed), nullable where the column imputes."""
    levels = scorer.category_levels(feature.name)
    if feature.text:
        out: dict[str, Any] = {"type": "string", "description": "A category; one the model never saw is answered (as no known category) and counted"}
        if levels:
            out["example"] = levels[0]
            out["description"] += f". Known: {', '.join(map(str, levels[:50]))}"
    else:
        out = {"type": "integer" if feature.integer else "number"}
        if levels:
            out["description"] = f"A category code. Known: {', '.join(map(str, levels[:50]))}"
    if feature.nullable:
        out["nullable"] = True
        out["description"] = (out.get("description", "") + ". Null: imputed inside the model").lstrip(". ")
    return out


def record_schema(scorer: Scorer | None) -> dict[str, Any]:
    """One input record: every feature of the model, typed as its dataset schema says."""
    if scorer is None:
        return {"type": "object", "additionalProperties": {"type": "number"}}
    properties = {f.name: feature_schema(scorer, f) for f in scorer.features}
    return {"type": "object", "required": list(scorer.names), "properties": properties}


def _label_type(scorer: Scorer | None) -> dict[str, Any]:
    if scorer is not None and scorer.classes and all(isinstance(c, str) for c in scorer.classes):
        return {"type": "string", "enum": list(scorer.classes)}
    return {"type": "integer"}


def openapi_document(endpoint: str, scorer: Scorer | None) -> dict[str, Any]:
    """The document served at GET /openapi.json."""
    max_rows = scorer.max_rows if scorer is not None else 1000
    example = scorer.example_request() if scorer is not None else {"data": [{}]}
    request = {
        "type": "object",
        "required": ["data"],
        "properties": {
            "data": {"type": "array", "minItems": 1, "maxItems": max_rows, "items": record_schema(scorer)},
            "return_probabilities": {"type": "boolean", "default": False},
        },
    }
    labels = {"type": "array", "items": _label_type(scorer), "description": "The predicted label of each record, as the data labels it"}
    with_proba = {
        "type": "object",
        "required": ["predictions", "probabilities", "classes"],
        "properties": {
            "predictions": labels,
            "probabilities": {"type": "array", "items": {"type": "array", "items": {"type": "number"}}},
            "classes": {"type": "array", "items": _label_type(scorer), "description": "The label of each probability column"},
        },
    }
    return {
        "openapi": "3.0.3",
        "info": {
            "title": f"heartflow endpoint {endpoint}",
            "version": "1",
            "description": "Real-time scoring of the heart-disease classifier. Name a deployment with the "
            "azureml-model-deployment header; otherwise the traffic split picks one.",
        },
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "paths": {
            "/score": {
                "post": {
                    "operationId": "score",
                    "security": [{"bearer": []}],
                    "parameters": [
                        {
                            "name": "azureml-model-deployment",
                            "in": "header",
                            "required": False,
                            "schema": {"type": "string"},
                            "description": "Send the request to this deployment whatever its traffic",
                        }
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": request, "example": example}},
                    },
                    "responses": {
                        "200": {
                            "description": "Predictions; with return_probabilities, also class probabilities",
                            "content": {"application/json": {"schema": {"oneOf": [labels, with_proba]}}},
                        },
                        "400": _ERROR,
                        "401": _ERROR,
                        "404": _ERROR,
                        "408": _ERROR,
                        "413": _ERROR,
                        "503": _ERROR,
                    },
                }
            },
            "/health": {"get": {"operationId": "health", "responses": {"200": {"description": "The host is alive"}}}},
            "/ready": {
                "get": {
                    "operationId": "ready",
                    "responses": {
                        "200": {"description": "Every deployment is loaded and one takes traffic"},
                        "503": {"description": "Not ready yet (or a deployment failed to load)"},
                    },
                }
            },
        },
    }
