"""The ``#{...}`` engine: references, nesting, filters, conditions, loops, and its errors."""

from __future__ import annotations

import pytest
from octo_runner.substitution import (
    TemplateSyntaxError,
    UnresolvedVariablesError,
    VariableLoopError,
    evaluate_variables,
    substitute,
)

VARIABLES = {
    "Name": "world",
    "Greeting": "hello #{Name}",
    "Deep": "<#{Greeting}>",
    "Octopus.Action[Deploy web].Output.Port": "8080",
    "Env": "prod",
    "Port[prod]": "443",
    "Padded": "  spaced  ",
    "Quote": 'say "hi"\n',
    "Markup": "<a & 'b'>",
    "Yes": "True",
    "No": "False",
    "Zero": "0",
    "Empty": "",
    "List": "a, b,,c ",
    "Servers": "web1,web2",
    "Prefix": "srv-",
    "Item": "global item",
    "Encoded": "c2VjcmV0",
}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("no references", "no references"),
        ("#{Name}", "world"),
        ("Hi #{Name}, #{Name}!", "Hi world, world!"),
        ("#{name} #{NAME}", "world world"),  # names are case-insensitive
        ("#{ Name }", "world"),
        ("#{Greeting}", "hello world"),  # a value is a template too
        ("#{Deep}", "<hello world>"),  # ... recursively
        ("#{Octopus.Action[Deploy web].Output.Port}", "8080"),
        ("#{Port[#{Env}]}", "443"),  # a reference inside a name
        ("#{Name | ToUpper}", "WORLD"),
        ("#{Name|toupper}", "WORLD"),
        ("#{Greeting | ToUpper | ToLower}", "hello world"),
        ("[#{Padded | Trim}]", "[spaced]"),
        ("#{Quote | JsonEscape}", 'say \\"hi\\"\\n'),
        ("#{Name | Base64}", "d29ybGQ="),
        ("#{Name | ToBase64}", "d29ybGQ="),
        ("#{Encoded | FromBase64}", "secret"),
        ("#{Markup | HtmlEscape}", "&lt;a &amp; &#x27;b&#x27;&gt;"),
        ("#{Markup | XmlEscape}", "&lt;a &amp; &apos;b&apos;&gt;"),
        ("#{if Yes}y#{else}n#{/if}", "y"),
        ("#{if No}y#{else}n#{/if}", "n"),
        ("#{if Zero}y#{else}n#{/if}", "n"),
        ("#{if Empty}y#{else}n#{/if}", "n"),
        ("#{if Missing}y#{else}n#{/if}", "n"),  # a missing variable is false, not an error
        ("#{if Name}y#{/if}", "y"),
        ('#{if Env == "prod"}live#{else}test#{/if}', "live"),
        ('#{if Env != "prod"}test#{else}live#{/if}', "live"),
        ("#{unless No}shown#{/unless}", "shown"),
        ("#{if Yes}#{if No}a#{else}b#{/if}#{/if}", "b"),
        ("#{each s in Servers}[#{s}]#{/each}", "[web1][web2]"),
        ("#{each x in List}#{x};#{/each}", "a;b;c;"),
        ("#{each item in Servers}#{Prefix}#{item | ToUpper} #{/each}", "srv-WEB1 srv-WEB2 "),
        ("#{each item in Servers}#{item}#{/each} #{Item}", "web1web2 global item"),
        (
            "#{each a in Servers}#{each b in Servers}#{a}#{b} #{/each}#{/each}",
            "web1web1 web1web2 web2web1 web2web2 ",
        ),
        ("##{Name} stays", "#{Name} stays"),  # the escape
        ("x #{ unterminated", "x #{ unterminated"),
        ("bash ${#array[@]} and {#not}", "bash ${#array[@]} and {#not}"),
    ],
)
def test_substitute(template: str, expected: str) -> None:
    assert substitute(template, VARIABLES) == expected


def test_unresolved_names_are_all_listed_once() -> None:
    with pytest.raises(UnresolvedVariablesError) as caught:
        substitute("#{Missing} #{Name} #{Other | ToUpper} #{Missing}", VARIABLES)
    assert caught.value.names == ["Missing", "Other"]
    assert "Missing, Other" in str(caught.value)
    assert caught.value.hint


def test_unresolved_inside_a_value_names_the_missing_variable() -> None:
    with pytest.raises(UnresolvedVariablesError) as caught:
        substitute("#{Uses}", {"Uses": "x #{Nowhere}"})
    assert caught.value.names == ["Nowhere"]


def test_unresolved_in_untaken_branch_is_not_an_error() -> None:
    assert substitute("#{if No}#{Missing}#{/if}ok", VARIABLES) == "ok"


def test_each_over_missing_list_is_unresolved() -> None:
    with pytest.raises(UnresolvedVariablesError) as caught:
        substitute("#{each x in Nothing}#{x}#{/each}", VARIABLES)
    assert caught.value.names == ["Nothing"]


def test_lenient_mode_leaves_unresolved_references_as_written() -> None:
    text = "#{Name} #{Missing | ToUpper} #{each x in Nope}#{x}#{/each}"
    assert substitute(text, VARIABLES, strict=False) == (
        "world #{Missing | ToUpper} #{each x in Nope}#{x}#{/each}"
    )


@pytest.mark.parametrize(
    ("variables", "chain"),
    [
        ({"A": "#{A}"}, ["A", "A"]),
        ({"A": "#{B}", "B": "#{C}", "C": "x #{A}"}, ["A", "B", "C", "A"]),
    ],
)
def test_reference_loops_are_detected(variables: dict[str, str], chain: list[str]) -> None:
    with pytest.raises(VariableLoopError) as caught:
        substitute("#{A}", variables)
    assert caught.value.chain == chain
    assert " -> ".join(chain) in str(caught.value)


@pytest.mark.parametrize(
    ("template", "fragment"),
    [
        ("#{if Yes}never closed", "never closed"),
        ("#{each x in List}never closed", "never closed"),
        ("#{/if}", "without a matching"),
        ("#{else}", "without a matching"),
        ("#{if Yes}a#{else}b#{else}c#{/if}", "#{else}"),
        ("#{if Yes}a#{/each}", "closes a block"),
        ("#{Name | NoSuchFilter}", "NoSuchFilter"),
        ("#{if Env == prod}x#{/if}", "quoted literal"),
        ("#{each x of List}#{/each}", "malformed each"),
    ],
)
def test_syntax_errors(template: str, fragment: str) -> None:
    with pytest.raises(TemplateSyntaxError) as caught:
        substitute(template, VARIABLES)
    assert fragment in str(caught.value)


def test_evaluate_variables_expands_what_it_can_and_keeps_the_rest() -> None:
    evaluated = evaluate_variables(
        {"A": "#{B}!", "B": "b", "Loop": "#{Loop}", "Open": "#{if B}x", "Half": "#{Nope} #{B}"}
    )
    assert evaluated == {
        "A": "b!",
        "B": "b",
        "Loop": "#{Loop}",
        "Open": "#{if B}x",
        "Half": "#{Nope} b",
    }
