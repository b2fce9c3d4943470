"""Who may call what: a request's bearer credential checked against the credentials file and
the role its call needs, for the HTTP listeners (``Access.check``) and the gRPC ones (a server
interceptor); each use and each refusal is reported to the self-audit.

A caller learns only UNAUTHENTICATED / 401 (the same answer whether the credential is missing,
malformed, unknown, wrong or revoked) or PERMISSION_DENIED / 403 (valid, but for another role);
the reason is kept in the trail (token.failure_reason), where only readers of the trail see it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import unquote

import grpc
from grpc_status import rpc_status

from tokenotel.errors import PermissionDenied, TokenotelError, Unauthenticated, rich_status
from tokenotel.security.audit import Caller, SelfAudit
from tokenotel.security.credentials import Credential, CredentialFile, Failure, Role, credential_id

#: The gRPC health service stays open on every listener: collectors and load balancers probe
#: it without a credential.
HEALTH_METHODS = "/grpc.health.v1.Health/"
UNAUTHENTICATED = (
    "this listener requires a valid credential: send 'authorization: Bearer <credential>' with "
    "one made by `tokenotel auth add`"
)


class Access:
    """Checks credentials for the listeners of one service."""

    def __init__(self, credentials: CredentialFile, audit: SelfAudit) -> None:
        self.credentials = credentials
        self._audit = audit

    def check(
        self, authorization: list[str], need: Role, caller: Caller, *, http: bool = False
    ) -> Credential:
        """The credential of a request whose ``authorization`` header or metadata values are
        given; raises Unauthenticated or PermissionDenied (``http``: the audit notes the HTTP
        status too)."""
        presented, failure = _bearer(authorization)
        credential = None
        if failure is None:
            verdict = self.credentials.verify(presented)
            credential, failure = verdict.credential, verdict.failure
        if failure is not None or credential is None:
            self._audit.failed(
                failure or Failure.UNKNOWN,
                caller,
                credential=credential,
                presented=presented,
                token_id=credential_id(presented),
                status=401 if http else 0,
            )
            raise Unauthenticated(UNAUTHENTICATED)
        if not credential.role.allows(need):
            self._audit.failed(
                Failure.WRONG_ROLE,
                caller,
                credential=credential,
                presented=presented,
                status=403 if http else 0,
            )
            roles = "admin" if need is Role.ADMIN else f"{need} or admin"
            raise PermissionDenied(
                f"this credential (role {credential.role}) may not call the {caller.listener} "
                f"listener: use one with role {roles}"
            )
        self._audit.used(credential, presented, caller)
        return credential


def _bearer(values: list[str]) -> tuple[str, Failure | None]:
    """The credential of ``Authorization: Bearer <credential>``, or why there is none."""
    if not values:
        return "", Failure.MISSING
    if len(values) > 1:
        return values[0], Failure.MALFORMED
    scheme, _, rest = values[0].strip().partition(" ")
    if scheme.lower() != "bearer" or not rest.strip():
        return values[0], Failure.MALFORMED
    return rest.strip(), None


def peer_address(peer: str) -> str:
    """The IP address in a gRPC peer (``ipv4:127.0.0.1:5000``, ``ipv6:%5B::1%5D:5000``)."""
    kind, _, rest = unquote(peer).partition(":")
    if kind not in ("ipv4", "ipv6"):
        return ""
    return rest.rpartition(":")[0].strip("[]")


class GrpcAccess(grpc.aio.ServerInterceptor):
    """Requires a credential of the role ``need_of(method)`` gives (None: open) on a gRPC
    listener; the check runs in the call, where the peer's address is known."""

    def __init__(
        self, access: Access, listener: str, need_of: Callable[[str], Role | None]
    ) -> None:
        self._access = access
        self._listener = listener
        self._need_of = need_of

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        need = None if method.startswith(HEALTH_METHODS) else self._need_of(method)
        if handler is None or need is None:
            return handler

        async def check(context: grpc.aio.ServicerContext) -> None:
            caller = Caller(peer_address(context.peer()), self._listener, method)
            metadata = context.invocation_metadata() or ()
            values = [str(value) for key, value in metadata if key == "authorization"]
            try:
                self._access.check(values, need, caller)
            except TokenotelError as e:
                status = rpc_status.to_status(rich_status(e))
                await context.abort(status.code, status.details)

        return _guarded(handler, check)


def _guarded(handler: Any, check: Callable[[Any], Awaitable[None]]) -> Any:
    """``handler`` with ``check(context)`` run before its behaviour, whatever its kind (the
    behaviours of a grpc.aio server are coroutines and async generators, which the stubs of
    grpc.RpcMethodHandler do not describe)."""
    kinds: dict[str, Any] = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary is not None:
        unary_unary = handler.unary_unary

        async def one_to_one(request: Any, context: Any) -> Any:
            await check(context)
            return await unary_unary(request, context)

        return grpc.unary_unary_rpc_method_handler(one_to_one, **kinds)
    if handler.unary_stream is not None:
        unary_stream = handler.unary_stream

        async def one_to_many(request: Any, context: Any) -> AsyncIterator[Any]:
            await check(context)
            async for response in unary_stream(request, context):
                yield response

        return grpc.unary_stream_rpc_method_handler(one_to_many, **kinds)
    if handler.stream_unary is not None:
        stream_unary = handler.stream_unary

        async def many_to_one(requests: Any, context: Any) -> Any:
            await check(context)
            return await stream_unary(requests, context)

        return grpc.stream_unary_rpc_method_handler(many_to_one, **kinds)
    stream_stream = handler.stream_stream

    async def many_to_many(requests: Any, context: Any) -> AsyncIterator[Any]:
        await check(context)
        async for response in stream_stream(requests, context):
            yield response

    return grpc.stream_stream_rpc_method_handler(many_to_many, **kinds)
