"""`caxton message send`: send a FIPA-ACL message through the API, optionally wait for the reply.

``--content`` is JSON (an object, a number, ``"a string"`` in quotes, ...). A bare word such as
``hello`` is refused with a hint to quote it, so a typo in JSON never silently becomes text.
Without ``--wait`` it prints the ids the node gave the message. With ``--wait`` it prints the
reply, exits 1 when none came in time, and exits `EXIT_REPLY_FAILED` (5) when the reply is a
``failure`` or ``not_understood``: a script can tell "the agent said no" from success.
"""

from __future__ import annotations

import json
from typing import Any

import click

from caxton.cli._client import client_options, make_client
from caxton.cli._common import EXIT_REPLY_FAILED
from caxton.cli._output import api_errors, echo_json, print_fields
from caxton.config import parse_duration

__all__ = ["call", "content_text", "message"]

#: Extra seconds the HTTP call may take beyond ``--wait``.
_SLACK = 10.0
#: Replies that mean the request was not carried out: ``--wait`` exits `EXIT_REPLY_FAILED`.
FAILED_REPLIES = frozenset({"failure", "not_understood"})


def call(
    server: str,
    token: str | None,
    method: str,
    path: str,
    *,
    timeout: float | None = None,
    **kwargs: Any,
) -> Any:
    """One API call; an API error is printed and exits 1."""
    with api_errors():
        _, body = make_client(server, token).request(method, path, timeout=timeout, **kwargs)
    return body


def _json_option(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    if value is None:
        return None
    try:
        return json.loads(value)
    except ValueError as exc:
        hint = ""
        if value.strip() and value.strip()[0] not in '{["-0123456789':
            hint = f"; to send text, quote it as a JSON string: --content '{json.dumps(value)}'"
        raise click.BadParameter(f"not valid JSON ({exc}){hint}", ctx, param) from None


def _duration_option(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    if value is None:
        return None
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None
    if seconds <= 0:
        raise click.BadParameter("must be more than 0 (e.g. 5s)", ctx, param)
    return (value, seconds)


def content_text(content: Any, width: int = 60) -> str:
    """A message's content on one line, shortened to ``width`` characters."""
    text = json.dumps(content, ensure_ascii=False, separators=(",", ":"))
    return text if len(text) <= width else text[: width - 1] + "…"


@click.group()
def message() -> None:
    """Send messages to agents (through the HTTP API)."""


@message.command("send")
@click.option("--to", "receivers", multiple=True, required=True, help="Receiver; repeatable.")
@click.option("--performative", "-p", required=True, help="FIPA act: request, inform, cfp, ...")
@click.option(
    "--content", callback=_json_option, help="JSON content, e.g. '{\"a\":1}' or '\"text\"'."
)
@click.option("--conversation", "conversation_id", help="Conversation id (made up if absent).")
@click.option("--reply-with", help="reply_with: the replies' in_reply_to.")
@click.option("--in-reply-to", help="in_reply_to.")
@click.option("--reply-by", help="reply_by, RFC 3339 (2026-01-01T12:00:00Z).")
@click.option("--protocol", help="protocol, e.g. fipa-request.")
@click.option("--ontology", help="ontology.")
@click.option("--language", help="language.")
@click.option("--sender", help="Your name as the sender (not an agent's; made up if absent).")
@click.option(
    "--wait", metavar="DURATION", callback=_duration_option, help="Wait for the reply (5s)."
)
@client_options
def send(
    receivers: tuple[str, ...],
    performative: str,
    content: Any,
    wait: tuple[str, float] | None,
    server: str,
    token: str | None,
    output: str,
    **fields: str | None,
) -> None:
    """Send one message; print its ids, or with --wait the reply.

    With --wait: exit 1 if no reply came in time, 5 if the reply is failure or not_understood.
    """
    body: dict[str, Any] = {
        "performative": performative,
        "receiver": receivers[0] if len(receivers) == 1 else list(receivers),
    }
    if content is not None:
        body["content"] = content
    body.update({k: v for k, v in fields.items() if v is not None})
    query = {"wait": wait[0]} if wait else None
    timeout = wait[1] + _SLACK if wait else None
    answer = call(
        server, token, "POST", "/api/v1/messages", json_body=body, query=query, timeout=timeout
    )
    if output == "json":
        echo_json(answer)
    elif wait:
        # With --wait the server answers with the reply itself (docs/api.md, POST /api/v1/messages).
        _print_reply(answer)
    else:
        _print_ids(answer)
    if wait and isinstance(answer, dict) and answer.get("performative") in FAILED_REPLIES:
        click.echo(f"caxton: {answer.get('sender')} replied {answer['performative']}", err=True)
        raise SystemExit(EXIT_REPLY_FAILED)


def _print_ids(accepted: dict[str, Any]) -> None:
    print_fields(
        [
            ("message", accepted.get("message_id")),
            ("conversation", accepted.get("conversation_id")),
            ("sender", accepted.get("sender")),
            ("receivers", ", ".join(map(str, accepted.get("receivers") or []))),
        ]
    )


def _print_reply(reply: dict[str, Any]) -> None:
    print_fields(
        [
            ("conversation", reply.get("conversation_id")),
            ("reply", reply.get("message_id")),
            ("from", reply.get("sender")),
            ("to", reply.get("receiver")),
            ("performative", reply.get("performative")),
            ("in reply to", reply.get("in_reply_to")),
        ]
    )
    click.echo(json.dumps(reply.get("content"), indent=2, ensure_ascii=False))
