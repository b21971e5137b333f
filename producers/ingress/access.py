"""Who may call which route: one table, checked once per request when the caller is known.

Every authenticated route names the permission it needs. Roles grant permissions:
- `admin`: everything in its tenant;
- `developer`: every permission but the tenant's administration (`ADMINISTRATION`), unless
  the key also holds that scope;
- `service`: only the scopes the key holds;
- `auditor`: reading (`AUDITOR`);
- `user` (a person signed in with a token): their own work (`USER`); the routes scope
  what they see to their own user id.
`any` is every caller of the tenant. The README's table is made from `TABLE`
(`ayush docs`), and a test walks every route with every role.
"""

from __future__ import annotations

from fastapi.routing import APIRoute, APIWebSocketRoute
from starlette.routing import BaseRoute

from producers.ingress.caller import ROLES, Caller, Role
from producers.ingress.errors import ApiError

ANY = "any"

# (method, path) -> the permission it needs.
TABLE: dict[tuple[str, str], str] = {
    ("POST", "/v1/chat/completions"): "jobs:write",
    ("POST", "/v1/embeddings"): "jobs:write",
    ("POST", "/v1/messages"): "jobs:write",
    ("POST", "/v1/messages/count_tokens"): "jobs:write",
    ("POST", "/v1/responses"): "jobs:write",
    ("GET", "/v1/responses/{response_id}"): "jobs:read",
    ("DELETE", "/v1/responses/{response_id}"): "jobs:write",
    ("POST", "/v1/responses/{response_id}/cancel"): "jobs:write",
    ("GET", "/v1/responses/{response_id}/input_items"): "jobs:read",
    ("GET", "/v1/models"): ANY,
    ("GET", "/v1/models/{model:path}"): ANY,
    ("POST", "/v1/routing/explain"): "jobs:write",
    ("GET", "/v1/routing/routes"): ANY,
    ("POST", "/v1/jobs"): "jobs:write",
    ("GET", "/v1/jobs"): "jobs:read",
    ("GET", "/v1/jobs/{job_id}"): "jobs:read",
    ("GET", "/v1/jobs/{job_id}/events"): "jobs:read",
    ("GET", "/v1/audit/jobs/{job_id}"): "audit:read",
    ("POST", "/v1/memories"): "memories:write",
    ("GET", "/v1/memories"): "memories:read",
    ("DELETE", "/v1/memories"): "memories:write",
    ("POST", "/v1/memories/search"): "memories:read",
    ("GET", "/v1/memories/{memory_id}"): "memories:read",
    ("DELETE", "/v1/memories/{memory_id}"): "memories:write",
    ("DELETE", "/v1/users/{user_id}"): "users:forget",
    ("POST", "/v1/conversations"): "conversations:write",
    ("GET", "/v1/conversations"): "conversations:read",
    ("GET", "/v1/conversations/{conversation_id}"): "conversations:read",
    ("POST", "/v1/conversations/{conversation_id}"): "conversations:write",
    ("DELETE", "/v1/conversations/{conversation_id}"): "conversations:write",
    ("GET", "/v1/conversations/{conversation_id}/items"): "conversations:read",
    ("POST", "/v1/conversations/{conversation_id}/items"): "conversations:write",
    ("GET", "/v1/conversations/{conversation_id}/items/{item_id}"): "conversations:read",
    ("DELETE", "/v1/conversations/{conversation_id}/items/{item_id}"): "conversations:write",
    ("POST", "/v1/files"): "files:write",
    ("GET", "/v1/files/{file_id}"): "files:read",
    ("GET", "/v1/files/{file_id}/content"): "files:read",
    ("DELETE", "/v1/files/{file_id}"): "files:write",
    ("POST", "/v1/batches"): "batches:write",
    ("GET", "/v1/batches"): "batches:read",
    ("GET", "/v1/batches/{batch_id}"): "batches:read",
    ("POST", "/v1/batches/{batch_id}/cancel"): "batches:write",
    ("GET", "/v1/batches/{batch_id}/events"): "batches:read",
    ("GET", "/v1/usage"): "usage:read",
    ("GET", "/v1/me"): ANY,
    ("GET", "/v1/me/usage"): "usage:read",
    ("GET", "/v1/budgets/tenant"): "budgets:read",
    ("PUT", "/v1/budgets/tenant"): "budgets:write",
    ("GET", "/v1/budgets/keys/{key_id}"): "budgets:read",
    ("PUT", "/v1/budgets/keys/{key_id}"): "budgets:write",
    ("GET", "/v1/ratelimits/keys/{key_id}"): "ratelimits:read",
    ("PUT", "/v1/ratelimits/keys/{key_id}"): "ratelimits:write",
    ("DELETE", "/v1/ratelimits/keys/{key_id}"): "ratelimits:write",
    ("GET", "/v1/budgets/users/default"): "budgets:read",
    ("PUT", "/v1/budgets/users/default"): "budgets:write",
    ("DELETE", "/v1/budgets/users/default"): "budgets:write",
    ("GET", "/v1/budgets/users/{user_id}"): "budgets:read",
    ("PUT", "/v1/budgets/users/{user_id}"): "budgets:write",
    ("DELETE", "/v1/budgets/users/{user_id}"): "budgets:write",
    ("GET", "/v1/ratelimits/users/default"): "ratelimits:read",
    ("PUT", "/v1/ratelimits/users/default"): "ratelimits:write",
    ("DELETE", "/v1/ratelimits/users/default"): "ratelimits:write",
    ("GET", "/v1/ratelimits/users/{user_id}"): "ratelimits:read",
    ("PUT", "/v1/ratelimits/users/{user_id}"): "ratelimits:write",
    ("DELETE", "/v1/ratelimits/users/{user_id}"): "ratelimits:write",
    ("GET", "/v1/connectors"): ANY,
    ("POST", "/v1/connections"): "connections:write",
    ("GET", "/v1/connections"): "connections:read",
    ("GET", "/v1/connections/{connection_id}"): "connections:read",
    ("PATCH", "/v1/connections/{connection_id}"): "connections:write",
    ("DELETE", "/v1/connections/{connection_id}"): "connections:write",
    ("POST", "/v1/actions"): "actions:write",
    # Lists what the connection can do; asking an MCP server uses the connection's secret.
    ("GET", "/v1/connections/{connection_id}/tools"): "actions:write",
    ("POST", "/v1/webhook-endpoints"): "webhooks:write",
    ("POST", "/v1/rules"): "rules:write",
    ("POST", "/v1/webhook-subscriptions"): "webhooks:write",
    ("GET", "/v1/webhook-subscriptions"): "webhooks:read",
    ("GET", "/v1/webhook-subscriptions/{subscription_id}"): "webhooks:read",
    ("PATCH", "/v1/webhook-subscriptions/{subscription_id}"): "webhooks:write",
    ("DELETE", "/v1/webhook-subscriptions/{subscription_id}"): "webhooks:write",
    ("POST", "/v1/webhook-subscriptions/{subscription_id}/rotate-secret"): "webhooks:write",
    ("GET", "/v1/webhook-subscriptions/{subscription_id}/deliveries"): "webhooks:read",
    (
        "POST",
        "/v1/webhook-subscriptions/{subscription_id}/deliveries/{delivery_id}/redeliver",
    ): "webhooks:write",
    ("POST", "/v1/webhook-subscriptions/{subscription_id}/redeliver"): "webhooks:write",
    ("POST", "/v1/alert-rules"): "alerts:write",
    ("GET", "/v1/alert-rules"): "alerts:read",
    ("GET", "/v1/alert-rules/{rule_id}"): "alerts:read",
    ("PATCH", "/v1/alert-rules/{rule_id}"): "alerts:write",
    ("DELETE", "/v1/alert-rules/{rule_id}"): "alerts:write",
    ("GET", "/v1/alerts"): "alerts:read",
    ("POST", "/v1/schedules"): "schedules:write",
    ("GET", "/v1/schedules"): "schedules:read",
    ("GET", "/v1/schedules/{schedule_id}"): "schedules:read",
    ("PATCH", "/v1/schedules/{schedule_id}"): "schedules:write",
    ("DELETE", "/v1/schedules/{schedule_id}"): "schedules:write",
    ("POST", "/v1/schedules/{schedule_id}/pause"): "schedules:write",
    ("POST", "/v1/schedules/{schedule_id}/resume"): "schedules:write",
    ("POST", "/v1/tasks"): "tasks:write",
    ("GET", "/v1/tasks"): "tasks:read",
    ("GET", "/v1/tasks/{task_id}"): "tasks:read",
    ("PATCH", "/v1/tasks/{task_id}"): "tasks:write",
    ("DELETE", "/v1/tasks/{task_id}"): "tasks:write",
    ("GET", "/v1/tenant/settings"): "tenant:read",
    ("PUT", "/v1/tenant/settings"): "tenant:write",
    ("POST", "/v1/auth/issuers"): "issuers:write",
    ("GET", "/v1/auth/issuers"): "issuers:read",
    ("GET", "/v1/auth/issuers/{issuer_id}"): "issuers:read",
    ("DELETE", "/v1/auth/issuers/{issuer_id}"): "issuers:write",
    ("POST", "/v1/keys"): "keys:write",
    ("GET", "/v1/keys"): "keys:read",
    ("GET", "/v1/keys/{key_id}"): "keys:read",
    ("DELETE", "/v1/keys/{key_id}"): "keys:write",
    ("POST", "/v1/keys/{key_id}/rotate"): "keys:write",
    ("GET", "/v1/conversations/{conversation_id}/events"): "conversations:read",
    # The live WebSocket: any caller of the tenant may connect; each subscription then
    # needs the permission of what it reads (producers.ingress.live_socket).
    ("GET", "/v1/ws"): ANY,
}

# Routes served as WebSockets (their handshake is a GET): checked when the socket opens,
# before it is accepted.
SOCKETS: frozenset[tuple[str, str]] = frozenset({("GET", "/v1/ws")})

# Routes that answer for the whole tenant or for a key, never for one person: a signed-in
# user is refused them even though the role holds the permission (their own view is
# under /v1/me).
NOT_FOR_USERS: frozenset[tuple[str, str]] = frozenset({("GET", "/v1/usage")})

# The tenant's administration: a developer key needs the scope itself.
ADMINISTRATION = frozenset(
    {
        "audit:read",
        "budgets:write",
        "ratelimits:write",
        "connections:read",
        "connections:write",
        "webhooks:read",
        "webhooks:write",
        "rules:write",
        "alerts:read",
        "alerts:write",
        "keys:read",
        "keys:write",
        "issuers:read",
        "issuers:write",
        "tenant:read",
        "tenant:write",
        "users:forget",
    }
)
AUDITOR = frozenset(
    {
        "jobs:read",
        "conversations:read",
        "batches:read",
        "files:read",
        "usage:read",
        "audit:read",
        "budgets:read",
        "ratelimits:read",
        "keys:read",
        "issuers:read",
        "tenant:read",
        "webhooks:read",
        "schedules:read",
        "alerts:read",
        "connections:read",
    }
)
USER = frozenset(
    {
        "jobs:write",
        "jobs:read",
        "memories:write",
        "memories:read",
        "files:write",
        "files:read",
        "batches:write",
        "batches:read",
        "usage:read",
        "conversations:write",
        "conversations:read",
        # A signed-in user's own schedules (the routes scope them) and tasks.
        "schedules:write",
        "schedules:read",
        "tasks:write",
        "tasks:read",
    }
)


def permissions() -> frozenset[str]:
    """Every permission a route names: the scopes a service key may be given."""
    return frozenset(p for p in TABLE.values() if p != ANY)


def may(role: Role, scopes: frozenset[str], permission: str) -> bool:
    if permission == ANY or role == "admin" or permission in scopes:
        return True
    if role == "developer":
        return permission not in ADMINISTRATION
    if role == "auditor":
        return permission in AUDITOR
    if role == "user":
        return permission in USER
    return False


def authorize(caller: Caller, method: str, route: BaseRoute | None) -> None:
    """Raises 403 when the caller's role and scopes do not grant what the route needs."""
    path = route.path if isinstance(route, (APIRoute, APIWebSocketRoute)) else None
    permission = TABLE.get((method, path)) if path else None
    if permission is None:
        # A route nobody listed is refused rather than open (see `check_complete`).
        raise ApiError(403, "forbidden", "this route is not open to API callers")
    if caller.role == "user" and (method, path) in NOT_FOR_USERS:
        raise ApiError(
            403,
            "forbidden",
            "a signed-in user sees their own view of this under /v1/me (usage: /v1/me/usage)",
        )
    if not may(caller.role, caller.scopes, permission):
        raise ApiError(
            403,
            "forbidden",
            f"the {caller.role} role may not do this: it needs the {permission} permission"
            " (an admin key, or a key given that scope)",
        )


def allows(role: Role, scopes: frozenset[str], method: str, path: str) -> bool:
    """Whether `authorize` lets a caller of this role and scopes call the route."""
    permission = TABLE.get((method, path))
    if permission is None or (role == "user" and (method, path) in NOT_FOR_USERS):
        return False
    return may(role, scopes, permission)


def check_complete(routes: list[APIRoute | APIWebSocketRoute]) -> None:
    """Every authenticated route must be in the table, and the table name only real routes
    (a WebSocket's as a GET, also listed in SOCKETS)."""
    served = {
        (method, route.path)
        for route in routes
        for method in (route.methods or () if isinstance(route, APIRoute) else ("GET",))
    }
    sockets = {("GET", r.path) for r in routes if isinstance(r, APIWebSocketRoute)}
    if sockets != SOCKETS:
        raise RuntimeError(f"access table: WebSocket routes {sorted(sockets)} != SOCKETS")
    unlisted = sorted(served - TABLE.keys())
    stale = sorted((TABLE.keys() | NOT_FOR_USERS) - served)
    if unlisted or stale:
        raise RuntimeError(f"access table: unlisted routes {unlisted}, stale rows {stale}")


def allowed_roles(permission: str) -> list[Role]:
    return [role for role in ROLES if may(role, frozenset(), permission)]


def every_permission() -> frozenset[str]:
    """Every permission a role or a scope can carry."""
    return permissions() | ADMINISTRATION | AUDITOR | USER


def scope_problem(role: str, scopes: frozenset[str]) -> str | None:
    """Why these scopes cannot be given to a key of this role, or None when they can."""
    unknown = sorted(scopes - permissions())
    if unknown:
        return f"unknown scopes {unknown}; known: {sorted(permissions())}"
    if role == "service" and not scopes:
        return "a service key needs at least one scope"
    return None


def exceeds(
    role: Role, scopes: frozenset[str], holder_role: Role, holder_scopes: frozenset[str]
) -> list[str]:
    """What a key of `role` with `scopes` could do that the holder cannot (sorted)."""
    return sorted(
        p
        for p in every_permission()
        if may(role, scopes, p) and not may(holder_role, holder_scopes, p)
    )
