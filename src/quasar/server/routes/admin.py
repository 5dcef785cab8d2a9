"""The admin API for managed keys: /admin/keys list, create, update, revoke. Needs the master key."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from quasar.auth.managed import create_key, parse_expiry, public
from quasar.errors import NotFound, PermissionDenied
from quasar.parse import parse_body
from quasar.server.responses import JSON
from quasar.store import keys as key_rows

router = APIRouter(prefix="/admin")
_NO_NUL = r"^[^\x00]*$"  # Postgres text holds no NUL character


class KeyFields(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    name: str | None = Field(None, min_length=1, max_length=200, pattern=_NO_NUL)
    models: list[Annotated[str, Field(min_length=1, max_length=200, pattern=_NO_NUL)]] | None = None
    rpm: Annotated[int, Field(ge=1, le=key_rows.MAX_RATE)] | None = None
    tpm: Annotated[int, Field(ge=1, le=key_rows.MAX_RATE)] | None = None
    budget: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
    budget_period: Literal["total", "day", "month"] | None = None
    expires: float | int | str | None = None

    def values(self) -> dict[str, Any]:
        """The fields the client sent (an explicit null clears a limit)."""
        values = {name: getattr(self, name) for name in self.model_fields_set}
        if "expires" in values:
            values["expires"] = parse_expiry(values["expires"])
        if values.get("name", "") is None:
            del values["name"]
        if "models" in values and values["models"] is None:
            values["models"] = []  # every model
        if "budget_period" in values and values["budget_period"] is None:
            values["budget_period"] = "total"
        return values


async def admin_only(request: Request) -> None:
    principal = await request.app.state.keys.authenticate(request.headers.get("authorization"))
    if not principal.is_admin:
        raise PermissionDenied("The admin API needs the master key.", code="admin_only")


async def _changed(request: Request, key_id: str) -> None:
    request.app.state.keys.invalidate()
    if request.app.state.key_events is not None:
        await request.app.state.key_events.publish(key_id)


def _engine(request: Request) -> Any:
    return request.app.state.store.engine


@router.get("/keys", summary="List managed keys")
async def list_keys(request: Request) -> Response:
    await admin_only(request)
    rows = await key_rows.all_keys(_engine(request))
    return JSON({"object": "list", "data": [public(r) for r in rows]})


@router.post("/keys", status_code=201, summary="Create a managed key; the key is in this answer only")
async def create(request: Request) -> Response:
    await admin_only(request)
    fields = parse_body(await request.body(), KeyFields).values()
    key, row = await create_key(_engine(request), fields)
    await _changed(request, row["id"])
    return JSON({**public(row), "key": key}, status_code=201)


async def _existing(request: Request, key_id: str) -> dict[str, Any]:
    row = await key_rows.by_id(_engine(request), key_id) if "\x00" not in key_id else None
    if row is None:
        raise NotFound(f"No key with id '{key_id}'.", param="key_id")
    return row


@router.get("/keys/{key_id}", summary="One managed key")
async def get_key(key_id: str, request: Request) -> Response:
    await admin_only(request)
    return JSON(public(await _existing(request, key_id)))


@router.patch("/keys/{key_id}", summary="Change a key's name, models, limits, budget or expiry")
async def update(key_id: str, request: Request) -> Response:
    await admin_only(request)
    await _existing(request, key_id)
    fields = parse_body(await request.body(), KeyFields).values()
    row = await key_rows.update_key(_engine(request), key_id, fields)
    await _changed(request, key_id)
    return JSON(public(row or {}))


@router.delete("/keys/{key_id}", summary="Revoke a key")
@router.post("/keys/{key_id}/revoke", summary="Revoke a key")
async def revoke(key_id: str, request: Request) -> Response:
    await admin_only(request)
    await _existing(request, key_id)
    row = await key_rows.revoke_key(_engine(request), key_id)
    await _changed(request, key_id)
    return JSON(public(row or {}))


@router.post("/reload", summary="Reload the config file: models, deployments, prices, router settings, static keys")
async def reload(request: Request) -> Response:
    await admin_only(request)
    return JSON(await request.app.state.reloader.reload())
