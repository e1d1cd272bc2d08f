"""Two runner commands written against ``octo_runner.plugin_api`` (see test_plugin_commands)."""

from __future__ import annotations

from octo_runner import plugin_api as api

from .helper import shout


def greet(request: api.Request, events: api.Events, cancel: api.CancelToken) -> api.Outcome:
    """Log a greeting with a substituted variable, set outputs, run a script."""
    args = api.arguments(request, "sample-greet")
    who = api.substitute(args.string("who"), request)
    events.log("info", shout(f"hello {who}"))
    events.log("info", "the secret is " + api.variables(request).get("Secret", "?"))
    api.set_output(events, "Greeted", who)
    api.set_output(events, "Token", "tok-" + who, sensitive=True)
    events.log("info", "token tok-" + who)
    script = api.run_script(
        request,
        events,
        cancel,
        syntax="bash",
        body="echo from the script #{Greeting}\necho \"##octo[setVariable name='$(echo -n "
        "FromScript | base64)' value='$(echo -n yes | base64)']\"\n",
    )
    return api.script_outcome(script)


def wait_for_cancel(
    request: api.Request, events: api.Events, cancel: api.CancelToken
) -> api.Outcome:
    events.log("info", "waiting")
    if api.wait(cancel, 60):
        return api.canceled(cancel)
    return api.Outcome(0, True, "never cancelled")
