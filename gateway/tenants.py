"""Tenants at the gateway: which tenant a request acts for, which tokens may act for it, and its metric label.

Every VideoSearch request names its tenant (`tenant`; "" : the default tenant, index.schema.DEFAULT_TENANT, the
single-tenant deployment's). A bearer token may be bound to one tenant (settings.tenant_tokens); `auth_token` is bound
to none (an operator's). A bound token acts for its own tenant only: a request naming another is PERMISSION_DENIED,
one naming none acts for the token's. The tenant resolved here pins every read of the request (index.filters.RowScope),
beside the user's filter and never through it.
"""

from __future__ import annotations

import hmac
from collections.abc import Collection, Iterable, Mapping

from vidstrata.gateway.errors import InvalidArgument, PermissionDenied
from vidstrata.index.checks import check_tenant
from vidstrata.index.schema import DEFAULT_TENANT

DEFAULT_LABEL = "_default"  # the default tenant's metric label (no tenant name starts with "_")
OTHER_LABEL = "_other"  # every tenant not in settings.metric_tenants


def check_tenant_arg(tenant: str) -> str:
    """The tenant a request names, or InvalidArgument saying which names are allowed."""
    try:
        return check_tenant(tenant)
    except ValueError as exc:
        raise InvalidArgument(str(exc)) from exc


def sent_token(metadata: Iterable[tuple[str, str | bytes]] | None) -> str:
    """The bearer token of a call's `authorization: Bearer <token>` metadata; "" when it sent none."""
    sent = next((value for key, value in metadata or () if key == "authorization"), "")
    sent = sent.decode(errors="replace") if isinstance(sent, bytes) else sent
    return sent.removeprefix("Bearer ") if sent.startswith("Bearer ") else ""


def bound_tenant(tenant_tokens: Mapping[str, str], token: str) -> str | None:
    """The tenant `token` is bound to (settings.tenant_tokens), None for a token bound to none; compared in constant
    time per token."""
    found = None
    for bound_token, tenant in tenant_tokens.items():
        if hmac.compare_digest(token.encode(), bound_token.encode()):
            found = tenant
    return found


def request_tenant(asked: str, bound: str | None) -> str:
    """The tenant a request acts for: the one it names, checked (InvalidArgument); with a bound token, the token's
    when it names none, and PermissionDenied when it names another."""
    tenant = check_tenant_arg(asked)
    if bound is None:
        return tenant
    if tenant == DEFAULT_TENANT:
        return bound
    if tenant != bound:
        raise PermissionDenied("this token may act for its own tenant only")
    return tenant


def metric_label(tenant: str, labelled: Collection[str]) -> str:
    """The `tenant` label of a request's metrics: its name when listed in settings.metric_tenants, DEFAULT_LABEL for
    the default tenant, OTHER_LABEL else, so the label takes at most len(labelled) + 2 values."""
    if tenant == DEFAULT_TENANT:
        return DEFAULT_LABEL
    return tenant if tenant in labelled else OTHER_LABEL
