"""Property: any valid desired state, written as YAML, loads back as the same users."""

from __future__ import annotations

import io
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from syncd.core.desired import DesiredUser
from syncd.core.fields import (
    MAX_TEXT_LENGTH,
    PROFILE_FIELDS,
    email_key,
    is_valid_email,
    is_valid_url,
)
from syncd.desired.loading import parse_desired

usernames = st.from_regex(r"[a-z0-9_]{4,30}", fullmatch=True)
addresses = st.builds(
    "{}@{}.{}".format,
    st.from_regex(r"[A-Za-z0-9][A-Za-z0-9+_-]{0,12}", fullmatch=True),
    st.from_regex(r"[a-z0-9][a-z0-9-]{0,10}[a-z0-9]", fullmatch=True),
    st.from_regex(r"[a-z]{2,6}", fullmatch=True),
).filter(is_valid_email)
urls = st.builds(
    "{}://{}.{}{}".format,
    st.sampled_from(["http", "https"]),
    st.from_regex(r"[a-z0-9]{1,12}", fullmatch=True),
    st.from_regex(r"[a-z]{2,6}", fullmatch=True),
    st.from_regex(r"(/[A-Za-z0-9._~%-]{0,10}){0,3}", fullmatch=True),
).filter(is_valid_url)
# Everything printable that YAML text may hold on one line: letters, digits,
# punctuation (':', '#', '-', '&', '*', '!' ...), symbols and spaces.
texts = st.text(st.characters(categories=("L", "N", "P", "S", "Zs")), max_size=MAX_TEXT_LENGTH)
VALUES = {
    "full_name": texts,
    "location": texts,
    "company": texts,
    "profile_url": st.one_of(st.just(""), urls),
    "gravatar_email": st.one_of(st.just(""), addresses),
}


@st.composite
def desired_users(draw: st.DrawFn) -> DesiredUser:
    stated = draw(st.lists(st.sampled_from(PROFILE_FIELDS), unique=True))
    profile: dict[str, str] = {
        name: draw(VALUES[name]) for name in PROFILE_FIELDS if name in stated
    }
    emails = draw(st.none() | st.lists(addresses, unique_by=email_key, max_size=5).map(tuple))
    return DesiredUser(draw(usernames), profile, emails)


def as_yaml(users: list[DesiredUser], empty_as_null: bool) -> bytes:
    data: dict[str, Any] = {}
    for user in users:
        settings: dict[str, Any] = {
            name: None if value == "" and empty_as_null else value
            for name, value in user.profile.items()
        }
        if user.emails is not None:
            settings["emails"] = list(user.emails)
        data[user.username] = settings or (None if empty_as_null else {})
    stream = io.StringIO()
    yaml = YAML(typ="safe", pure=True)
    # Block style: ruamel reads a plain "?0" in a flow mapping as a key indicator,
    # although its own emitter writes it unquoted there.
    yaml.default_flow_style = False
    yaml.representer.sort_base_mapping_type_on_output = False  # users keep their order
    yaml.dump({"version": 1, "users": data}, stream)
    return stream.getvalue().encode()


@settings(database=None, max_examples=100, deadline=None)
@given(
    st.lists(desired_users(), unique_by=lambda user: user.username, max_size=8),
    st.booleans(),
)
def test_a_dumped_state_loads_back_the_same(users: list[DesiredUser], empty_as_null: bool) -> None:
    loaded = parse_desired([("random.yaml", as_yaml(users, empty_as_null))])
    assert list(loaded.users) == users
    assert [list(user.profile) for user in loaded.users] == [list(u.profile) for u in users]
