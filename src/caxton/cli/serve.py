"""`caxton serve`: run a node in the foreground until SIGTERM or SIGINT.

Once the node has stopped cleanly (state file closed, log written), the process has nothing
left to do but tear down the interpreter: freeing every object, module and wasm instance one
by one. That took 0.2 s on an idle machine and over a second on a busy one, between "caxton
stopped" and the exit a supervisor waits for. `exit_after_clean_stop` (called by the console
script's `main`) skips it: it runs the ``atexit`` handlers (logging's final flush among them),
flushes stdout and stderr and ends the process with ``os._exit(0)``.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import dataclasses
import os
import sys
import threading

import click

from caxton.cli._common import (
    EXIT_CLUSTER,
    EXIT_CONFIG,
    EXIT_FAILED,
    EXIT_LISTEN,
    EXIT_LOCKED,
    config_option,
    fail,
    load_or_exit,
)
from caxton.config import Config, parse_address
from caxton.errors import ClusterError, ConfigError, Error, StateLockedError
from caxton.observability import configure_logging
from caxton.server import ListenError, run_server

__all__ = ["exit_after_clean_stop", "serve", "serve_command"]

#: Set when a node ran in this process and stopped cleanly (`exit_after_clean_stop`).
_stopped_cleanly = False


def _event_loop_runner() -> asyncio.Runner:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.Runner()
    return asyncio.Runner(loop_factory=uvloop.new_event_loop)


def serve_command(
    config_path: str | None, *, bind: str | None, examples: bool | None = None
) -> None:
    """Load the config, set up logging and run a node; exit with a trustworthy code.

    `examples` None means: deploy the example agents on the embedded default only.
    """
    config = load_or_exit(config_path)
    if examples is None:
        examples = config.source is None
    if bind is not None:
        try:
            address = parse_address(bind)
        except ValueError as exc:
            fail(f"--bind: {exc}", EXIT_CONFIG)
        config = config.replace(
            networking=dataclasses.replace(config.networking, bind_address=address)
        )
    _run(config, examples)


def _run(config: Config, examples: bool) -> None:
    global _stopped_cleanly
    logging_setup = configure_logging(config.observability)
    logging_setup.register_secret(config.security.jwt_secret)
    if config.observability.log_file is not None:
        # Otherwise a node started in a terminal says nothing at all while it runs.
        click.echo(f"caxton: logging to {config.observability.log_file}", err=True)
    try:
        with _event_loop_runner() as runner:
            runner.run(run_server(config, deploy_examples=examples))
        _stopped_cleanly = True
    except ConfigError as exc:
        fail(f"configuration error:\n{exc.message}", EXIT_CONFIG)
    except ListenError as exc:
        fail(exc.message, EXIT_LISTEN)
    except StateLockedError as exc:
        fail(exc.message, EXIT_LOCKED)
    except ClusterError as exc:
        taken = exc.details.get("in_use") == "coordination.bind_addr"
        fail(f"the cluster could not start: {exc.message}", EXIT_LISTEN if taken else EXIT_CLUSTER)
    except Error as exc:
        fail(exc.message, EXIT_FAILED)
    except KeyboardInterrupt:
        _stopped_cleanly = True
    finally:
        logging_setup.close()


def exit_after_clean_stop() -> None:
    """End the process at once (exit code 0) if a node ran here and stopped cleanly.

    Returns (so the caller exits the usual way) when no node ran, when it did not stop
    cleanly, or when a thread that is not a daemon still runs: the interpreter would wait for
    it, and so must we.
    """
    if not _stopped_cleanly:
        return
    main = threading.main_thread()
    if any(t is not main and not t.daemon and t.is_alive() for t in threading.enumerate()):
        return
    atexit._run_exitfuncs()  # logging.shutdown() and what libraries registered
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe: nothing more to say
            stream.flush()
    os._exit(0)


@click.command()
@config_option
@click.option(
    "--bind",
    metavar="HOST:PORT",
    default=None,
    help="Override networking.bind_address (the API address).",
)
@click.option(
    "--examples/--no-examples",
    default=None,
    help="Deploy the example agents (default: only on the embedded default).",
)
def serve(config_path: str | None, bind: str | None, examples: bool | None) -> None:
    """Run a node in the foreground (SIGTERM or Ctrl-C drains and stops it)."""
    serve_command(config_path, bind=bind, examples=examples)
