"""Enqueued configurations: points the user wants tried before the suggester's own.

They come from a study file's `[[enqueue]]` tables (`parse_enqueue`) or from the command line as
`name=value` words (`parse_assignments`). Either way a point may be partial: it names searched
parameters only, and `complete_point` fills in the rest from a suggestion. Fixed parameters are
refused, because a point that changes them would not belong to the study.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any, TypeGuard

import numpy as np

from hpod.errors import SpaceError
from hpod.space import Space
from hpod.space_params import CategoricalParam, FloatParam, IntParam, Param
from hpod.spec_fields import Fields, describe, did_you_mean, join

__all__ = ["parse_enqueue", "parse_assignments", "complete_point", "domain_hint", "MAX_ENQUEUED",
           "USER_ORIGIN", "user_origin", "is_user_origin", "waiting_user_points", "drawn_point"]

MAX_ENQUEUED = 10_000  # more points than any budget a study file would sensibly list


def domain_hint(param: Param) -> str:
    """What a value of `param` must be, in words: "a number in [0.0001, 0.1]"."""
    if isinstance(param, CategoricalParam):
        return "one of " + ", ".join(_choice_text(c) for c in param.choices)
    if isinstance(param, IntParam) and param.step == 1:
        return f"a whole number in [{param.low}, {param.high}]"
    if param.step is None:
        return f"a number in [{param.low!r}, {param.high!r}]"
    count = param.count or 0  # a stepped parameter always has a count
    shown = [repr(param.grid_value(k)) for k in range(min(count, 3))]
    if count > 4:
        shown += ["...", repr(param.grid_value(count - 1))]
    elif count == 4:
        shown.append(repr(param.grid_value(3)))
    return "one of " + ", ".join(shown)


# -- study files -------------------------------------------------------------------------------


def parse_enqueue(f: Fields, raw: Any, space: Space,
                  budget_trials: int | None) -> tuple[dict[str, Any], ...]:
    """The `[[enqueue]]` tables of a study file, each checked against `space` and normalised.

    Errors name the point and the parameter (`enqueue[2].lr`)."""
    if raw is None:
        return ()
    if isinstance(raw, Mapping):
        f.fail("enqueue", "must be a list of tables, got a single table",
               "write each point as its own [[enqueue]] table (TOML), or a list (YAML/JSON)")
    if not isinstance(raw, list):
        f.fail("enqueue", f"must be a list of tables, got {describe(raw)}",
               'write [[enqueue]] tables, e.g. [[enqueue]] then lr = 0.01 on the next line')
    if len(raw) > MAX_ENQUEUED:
        f.fail("enqueue", f"has {len(raw)} points (at most {MAX_ENQUEUED})", "enqueue fewer points")
    if budget_trials is not None and len(raw) > budget_trials:
        f.fail("enqueue", f"has {len(raw)} points but budget.trials is {budget_trials}, so some "
               "would never run", f"raise budget.trials to at least {len(raw)}, or enqueue fewer")
    return tuple(_point(f, item, join("enqueue", i), space) for i, item in enumerate(raw))


def _point(f: Fields, raw: Any, where: str, space: Space) -> dict[str, Any]:
    if not isinstance(raw, Mapping):
        f.fail(where, f"must be a table of parameter values, got {describe(raw)}",
               f"write it as a table, e.g. {{ {_file_example(space.params[0])} }}")
    table = f.table(raw, where)
    if not table:
        f.fail(where, "is empty", "give at least one searched parameter, or remove it")
    out: dict[str, Any] = {}
    for name, value in table.items():
        field = join(where, name)
        param = _searched(space, name, lambda message, fix: f.fail(field, message, fix))
        if isinstance(param, FloatParam):
            # Fields.number refuses what float() would choke on (10**400) with a clear error.
            value = f.number(value, field)
        try:
            out[name] = param.normalise(value)
        except SpaceError as e:
            f.fail(field, e.message, _file_fix(param))
    return _ordered(space, out)


# -- the command line --------------------------------------------------------------------------


def parse_assignments(space: Space, words: Sequence[str]) -> dict[str, Any]:
    """`["lr=0.01", "act=relu"]` -> `{"lr": 0.01, "act": "relu"}`, typed by `space`.

    Floats and ints are read as numbers; a categorical value matches a choice by its text
    (`true`, `null`, `4` and `4.0` match the boolean, null and number choices; a string choice
    spelt the same wins). `name:=JSON` gives the value's type exactly (`c:=1` is the number 1
    even beside a choice "1"; `c:='"1"'` the string). Raises SpaceError whose field is the
    parameter's name and whose fix lists what is allowed."""
    if not words:
        raise SpaceError("no parameter given", field=None,
                         fix=f"give name=value pairs, e.g. {_example(space.params[0])}")
    out: dict[str, Any] = {}
    for word in words:
        name, sep, text = word.partition("=")
        name, text = name.strip(), text.strip()
        if not sep or not name:
            raise SpaceError(f"{word!r} is not a name=value pair", field=None,
                             fix=f"write it as {_example(space.params[0])}")

        def fail(message: str, fix: str, name: str = name) -> Any:
            raise SpaceError(message, field=name, fix=fix)

        exact = name.endswith(":")
        name = name.removesuffix(":").strip()
        param = _searched(space, name, fail)
        if name in out:
            fail("is given twice", "give each parameter once")
        out[name] = _exact(param, text) if exact else _typed(param, text)
    return _ordered(space, out)


def _typed(param: Param, text: str) -> Any:
    hint = f"use {domain_hint(param)}"
    if isinstance(param, CategoricalParam):
        value = _match_choice(param, text)
    else:
        try:
            number = float(text)
        except ValueError:
            raise SpaceError(f"{text!r} is not a number", field=param.name, fix=hint) from None
        if not math.isfinite(number):
            raise SpaceError(f"must be a finite number, got {text!r}", field=param.name, fix=hint)
        value = number
        if isinstance(param, IntParam):
            if not number.is_integer():
                raise SpaceError(f"must be a whole number, got {text!r}", field=param.name,
                                 fix=hint)
            value = int(text) if _is_int_text(text) else int(number)  # exact beyond 2**53
    try:
        return param.normalise(value)
    except SpaceError as e:
        raise SpaceError(e.message, field=param.name, fix=hint) from None


def _exact(param: Param, text: str) -> Any:
    """`name:=JSON`: the value as JSON types it; a choice must match in type as in value."""
    try:
        value = json.loads(text)
    except ValueError:
        raise SpaceError(f"{text!r} is not JSON (name:=VALUE takes a JSON value)",
                         field=param.name, fix='quote a string: name:=\'"text"\'') from None
    if isinstance(param, CategoricalParam):
        for choice in param.choices:
            if type(choice) is type(value) and choice == value:
                return choice
        raise SpaceError(f"{text} is not a choice (types count with :=)", field=param.name,
                         fix="use one of: " + ", ".join(json.dumps(c) for c in param.choices))
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SpaceError(f"{text} is not a number", field=param.name,
                         fix=f"use {domain_hint(param)}")
    return _typed(param, text)


def _is_int_text(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def _match_choice(param: CategoricalParam, text: str) -> Any:
    # A string choice spelt exactly wins: choices ["1", 2] take "1" as the string.
    for choice in param.choices:
        if isinstance(choice, str) and choice == text:
            return choice
    word = text.lower()
    for choice in param.choices:
        if choice is None and word in ("null", "none"):
            return None
        if isinstance(choice, bool):
            if word == str(choice).lower():
                return choice
        elif isinstance(choice, (int, float)):
            try:
                if float(text) == choice:
                    return choice
            except ValueError:
                pass
    shown = [_choice_text(c) for c in param.choices]
    guess = did_you_mean(text, shown)
    hint = f" Did you mean {guess!r}?" if guess else ""
    if len(set(shown)) < len(shown):  # "1" and 1 look alike here: name:= tells them apart
        raise SpaceError(f"{text!r} is not a choice.{hint}", field=param.name,
                         fix="use one of (as JSON, with name:=VALUE): "
                         + ", ".join(json.dumps(c) for c in param.choices))
    raise SpaceError(f"{text!r} is not a choice.{hint}", field=param.name,
                     fix=f"use one of: {', '.join(shown)}")


def _choice_text(choice: Any) -> str:
    """A choice as it is typed on the command line (and read back by _match_choice)."""
    if isinstance(choice, str):
        return choice
    return json.dumps(choice)  # true, false, null, 4, 0.01


def _file_fix(param: Param) -> str:
    if isinstance(param, CategoricalParam):  # as the file spells them: strings quoted
        return "use one of: " + ", ".join(json.dumps(c) for c in param.choices)
    return f"use {domain_hint(param)}"


def _file_example(param: Param) -> str:
    value = param.choices[0] if isinstance(param, CategoricalParam) else param.low
    return f"{param.name} = {json.dumps(value)}"


def _example(param: Param) -> str:
    if isinstance(param, CategoricalParam):
        return f"{param.name}={_choice_text(param.choices[0])}"
    return f"{param.name}={param.low!r}"


# -- completing a point ------------------------------------------------------------------------


def complete_point(space: Space, partial: Mapping[str, Any],
                   suggestion: Mapping[str, Any]) -> dict[str, Any]:
    """The full point to run: the values of `partial`, the rest from `suggestion`, fixed values
    added, in `space.names` order. Both are validated; SpaceError (field `params.<name>`) names
    what is wrong, including a searched parameter neither of them gives."""
    given = space.validate(partial)
    merged = {**space.validate(suggestion), **given}
    for p in space.params:
        if p.name not in merged:
            raise SpaceError("is missing from both the enqueued point and the suggestion",
                             field=f"params.{p.name}",
                             fix="the suggestion must be a full point of the space")
    merged.update(copy.deepcopy(space.fixed))
    return _ordered(space, merged)


def drawn_point(space: Space, origin: str) -> dict[str, Any]:
    """A point of `space` drawn at random, the same for the same origin: what completes a
    partial enqueued point once the suggester has nothing left to propose (a grid exhausted)."""
    seed = int.from_bytes(hashlib.sha256(origin.encode()).digest()[:8], "big")
    return space.sample(np.random.default_rng(seed))


# -- shared ------------------------------------------------------------------------------------


def _searched(space: Space, name: str, fail: Any) -> Param:
    """The searched parameter `name`; `fail(message, fix)` for a fixed or unknown name."""
    searched = [p.name for p in space.params]
    if name in space.fixed:
        fail(f"{name!r} is fixed in [space] to {space.fixed[name]!r}, so a point cannot set it",
             "remove it from the point, or make it a searched parameter in [space]")
    try:
        return space.param(name)
    except KeyError:
        guess = did_you_mean(name, searched)
        hint = f" Did you mean {guess!r}?" if guess else ""
        fail(f"unknown parameter {name!r}.{hint}", f"use one of: {', '.join(searched)}")
        raise  # unreachable: fail() raises


def _ordered(space: Space, point: Mapping[str, Any]) -> dict[str, Any]:
    return {name: point[name] for name in space.names if name in point}


# -- `hpod enqueue` across restarts ------------------------------------------------------------

FILE_ORIGIN = "file"


def file_origins(points: Sequence[Mapping[str, Any]]) -> list[str]:
    """The origin each of a study file's [[enqueue]] points gives its trial: "file:" and a
    digest of the point, so that adding, removing or reordering points (live, or between runs)
    leaves every point's identity as it was; equal points are told apart by their order
    ("file:<digest>.1"). Before 2026-11-25 the origin was the index ("file:0"), which an
    insertion shifted onto another point."""
    seen: dict[str, int] = {}
    origins = []
    for point in points:
        digest = hashlib.sha256(json.dumps(dict(point), sort_keys=True, default=str)
                                .encode()).hexdigest()[:16]
        copies = seen.get(digest, 0)
        seen[digest] = copies + 1
        origins.append(f"{FILE_ORIGIN}:{digest}" + (f".{copies}" if copies else ""))
    return origins


def is_file_origin(origin: str | None) -> TypeGuard[str]:
    return origin is not None and origin.startswith(FILE_ORIGIN + ":")


# The origin of a trial made from `hpod enqueue`: "user:<command id>". Plain "user" is what
# trials made before the command's id was recorded carry.
USER_ORIGIN = "user"


def user_origin(command_id: int) -> str:
    return f"{USER_ORIGIN}:{command_id}"


def is_user_origin(origin: str | None) -> TypeGuard[str]:
    return origin is not None and (origin == USER_ORIGIN or origin.startswith(USER_ORIGIN + ":"))


def waiting_user_points(applied: Sequence[tuple[int, Any]],
                        origins: Sequence[str | None]) -> list[tuple[str, Any]]:
    """The `hpod enqueue` points that have no trial yet, oldest first, as (origin, params):
    `applied` are the study's applied enqueue commands as (command id, params), `origins` those
    of its trials. Points are made trials in the order they came, so the first trials with a
    plain "user" origin (made before origins named their command) stand for the oldest ones."""
    made = set(origins)
    unnamed = sum(1 for origin in origins if origin == USER_ORIGIN)
    waiting = []
    for command_id, params in sorted(applied, key=lambda item: item[0]):
        if user_origin(command_id) in made:
            continue
        if unnamed:
            unnamed -= 1
            continue
        waiting.append((user_origin(command_id), params))
    return waiting
