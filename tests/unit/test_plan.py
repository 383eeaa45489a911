"""The planner: tables of cases and properties over random states."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syncd.core.desired import DesiredState, DesiredUser, EmailsMode
from syncd.core.fields import PROFILE_FIELDS, email_key, gravatar_digest, gravatar_url
from syncd.core.live import LiveAccount, LiveEmail
from syncd.core.plan import (
    AddEmail,
    DeleteEmail,
    FieldChange,
    Plan,
    UpdateProfile,
    UserEmail,
    build_plan,
)
from syncd.core.problem import Problem
from tests.unit.conftest import profile


def emails(*addresses: str) -> tuple[LiveEmail, ...]:
    """The first address is the primary."""
    return tuple(LiveEmail(a, True, i == 0) for i, a in enumerate(addresses))


def plan_one(desired: DesiredUser, live: LiveAccount | Problem) -> Plan:
    return build_plan(DesiredState((desired,)), {desired.username: live})


CASES = [
    pytest.param(
        DesiredUser("janedoe", {"full_name": "Jane Doe"}),
        LiveAccount("janedoe", profile(full_name="Jane")),
        (UpdateProfile("janedoe", (FieldChange("full_name", "Jane", "Jane Doe"),)),),
        id="profile-field-differs",
    ),
    pytest.param(
        DesiredUser("janedoe", {"full_name": "Jane"}),
        LiveAccount("janedoe", profile(full_name="Jane", location="Moon")),
        (),
        id="unmanaged-field-left-alone",
    ),
    pytest.param(
        DesiredUser("janedoe", {"location": ""}),
        LiveAccount("janedoe", profile(location="Moon")),
        (UpdateProfile("janedoe", (FieldChange("location", "Moon", ""),)),),
        id="empty-string-means-must-be-empty",
    ),
    pytest.param(
        DesiredUser("janedoe", {"gravatar_email": "Jane@Example.com "}),
        LiveAccount("janedoe", profile(gravatar_url=gravatar_url("jane@example.com"))),
        (),
        id="gravatar-same-md5-digest",
    ),
    pytest.param(
        DesiredUser("janedoe", {"gravatar_email": "jane@example.com"}),
        LiveAccount(
            "janedoe",
            profile(
                gravatar_url="https://secure.gravatar.com/avatar/"
                + gravatar_digest("jane@example.com", "sha256")
                + ".jpg?s=80"
            ),
        ),
        (),
        id="gravatar-same-sha256-digest",
    ),
    pytest.param(
        DesiredUser("janedoe", {"gravatar_email": "jane@example.com"}),
        LiveAccount("janedoe", profile(gravatar_url=gravatar_url("other@example.com"))),
        (UpdateProfile("janedoe", (FieldChange("gravatar_email", None, "jane@example.com"),)),),
        id="gravatar-differs",
    ),
    pytest.param(
        DesiredUser("janedoe", {"gravatar_email": ""}),
        LiveAccount("janedoe", profile(gravatar_url="")),
        (),
        id="gravatar-empty-and-none-set",
    ),
    pytest.param(
        DesiredUser("janedoe", emails=("jane@example.com", "new@example.com")),
        LiveAccount("janedoe", emails=emails("jane@example.com", "old@example.com")),
        (AddEmail("janedoe", "new@example.com"), DeleteEmail("janedoe", "old@example.com")),
        id="emails-add-and-delete",
    ),
    pytest.param(
        DesiredUser("janedoe", emails=("JANE@example.com",)),
        LiveAccount("janedoe", emails=emails("jane@EXAMPLE.com")),
        (),
        id="emails-case-insensitive",
    ),
    pytest.param(
        DesiredUser("janedoe", emails=("b@example.com", "A@example.com")),
        LiveAccount("janedoe", emails=emails("a@example.com", "b@example.com")),
        (),
        id="emails-same-in-another-order-and-case",
    ),
    pytest.param(
        DesiredUser("katek", emails=("p@example.com", "kate@example.com")),
        LiveAccount("katek", emails=emails("p@example.com", "\u212aate@example.com")),
        (AddEmail("katek", "kate@example.com"), DeleteEmail("katek", "\u212aate@example.com")),
        id="emails-case-is-ascii-only-kelvin-sign-is-not-k",
    ),
    pytest.param(
        DesiredUser("katek", emails=("p@example.com", "kate@example.com")),
        LiveAccount("katek", emails=emails("p@example.com", " kate@example.com")),
        (AddEmail("katek", "kate@example.com"), DeleteEmail("katek", " kate@example.com")),
        id="emails-a-live-address-with-spaces-is-another-address",
    ),
    pytest.param(
        DesiredUser("janedoe", emails=("jane@example.com", "x@example.com")),
        LiveAccount("janedoe", emails=emails("jane@example.com", "x@example.com")),
        (),
        id="emails-exactly-equal",
    ),
    pytest.param(
        DesiredUser("janedoe", emails=("jane@example.com",)),
        LiveAccount("janedoe", emails=emails("jane@example.com", "jane@example.com")),
        (),
        id="emails-live-repeats-a-desired-address",
    ),
    pytest.param(
        DesiredUser("janedoe", emails=("jane@example.com",)),
        LiveAccount("janedoe", emails=emails("jane@example.com", "old@x.org", "OLD@X.org")),
        (DeleteEmail("janedoe", "old@x.org"), DeleteEmail("janedoe", "OLD@X.org")),
        id="emails-each-live-spelling-of-an-unwanted-address-is-deleted",
    ),
    pytest.param(
        DesiredUser("janedoe", {"company": "Acme"}),
        LiveAccount(
            "janedoe", profile(company="Acme"), emails("jane@example.com", "x@example.com")
        ),
        (),
        id="emails-unmanaged",
    ),
]


@pytest.mark.parametrize(("desired", "live", "expected"), CASES)
def test_build_plan_cases(desired: DesiredUser, live: LiveAccount, expected: tuple[object, ...]):
    plan = plan_one(desired, live)
    assert plan.changes == expected
    assert plan.errors == ()


def test_primary_is_never_deleted_and_is_a_warning():
    plan = plan_one(
        DesiredUser("janedoe", emails=("other@example.com",)),
        LiveAccount("janedoe", emails=emails("jane@example.com", "other@example.com")),
    )
    assert plan.changes == ()
    assert [(w.user, w.code) for w in plan.warnings] == [("janedoe", "primary_email_not_desired")]


def test_a_delete_removes_only_its_own_spelling_from_the_account():
    # The other spelling's DELETE may fail: the cache must not call it gone.
    live = LiveAccount("janedoe", emails=emails("jane@example.com", "old@x.org", "OLD@X.org"))
    assert live.with_email_removed("OLD@X.org").emails == emails("jane@example.com", "old@x.org")


@pytest.mark.parametrize(
    "code",
    [
        "no_credentials",
        "unauthorized",
        "forbidden",
        "user_not_found",
        "fetch_failed",
        "malformed_response",
    ],
)
def test_a_user_that_could_not_be_read_is_an_error_and_the_plan_incomplete(code: str):
    plan = plan_one(DesiredUser("janedoe", {"full_name": "x"}), Problem("janedoe", code, "-"))
    assert plan.changes == ()
    assert plan.warnings == ()
    assert [f.code for f in plan.errors] == [code]
    assert plan.unreadable == ["janedoe"]
    assert not plan.complete
    assert plan.summary()["users_unreadable"] == 1


def test_a_failure_every_read_met_is_one_error_naming_all_its_users():
    desired = DesiredState((DesiredUser("abby"), DesiredUser("bert"), DesiredUser("cleo")))
    down = "the API at http://127.0.0.1:9 failed: ConnectError"
    live = {
        name: Problem(name, "fetch_failed", f"{name}: GET …: ConnectError", down, shared=True)
        for name in ("abby", "bert")
    }
    live["cleo"] = Problem("cleo", "user_not_found", "no such user", "404")
    document = build_plan(desired, live).to_json({})
    assert document["errors"] == [
        {"user": None, "code": "fetch_failed", "message": down, "users": ["abby", "bert"]},
        {"user": "cleo", "code": "user_not_found", "message": "no such user"},
    ]
    assert document["summary"]["users_unreadable"] == 3


def test_changes_are_ordered_by_user_then_kind():
    desired = DesiredState(
        (
            DesiredUser("zed_user", {"company": "Z"}, ("z@example.com",)),
            DesiredUser("abby", {"company": "A"}, ("a@example.com", "b@example.com")),
        )
    )
    live = {
        "zed_user": LiveAccount("zed_user", profile(), emails("z@example.com")),
        "abby": LiveAccount("abby", profile(), emails("a@example.com", "c@example.com")),
    }
    kinds = [(a.user, a.action) for a in build_plan(desired, live).changes]
    assert kinds == [
        ("abby", "update_profile"),
        ("abby", "add_email"),
        ("abby", "delete_email"),
        ("zed_user", "update_profile"),
    ]


def test_plan_json_follows_the_contract():
    plan = plan_one(
        DesiredUser("janedoe", {"full_name": "B"}, ("jane@example.com", "n@example.com")),
        LiveAccount("janedoe", profile(full_name="A"), emails("jane@example.com")),
    )
    document = plan.to_json({"files": []})
    assert document["format_version"] == 1
    assert document["changes"] == [
        {
            "user": "janedoe",
            "action": "update_profile",
            "fields": {"full_name": {"before": "A", "after": "B"}},
        },
        {"user": "janedoe", "action": "add_email", "email": "n@example.com"},
    ]
    assert document["summary"]["users_changed"] == 1


# -- properties ---------------------------------------------------------------

usernames = st.from_regex(r"[a-z0-9_]{4,12}", fullmatch=True)
addresses = st.from_regex(r"[a-z]{1,6}@(example\.com|Example\.org)", fullmatch=True)
texts = st.text(alphabet="abcXYZ -", max_size=8)


@st.composite
def desired_users(draw: st.DrawFn, username: str) -> DesiredUser:
    fields = draw(st.lists(st.sampled_from(PROFILE_FIELDS), unique=True))
    values = {f: draw(addresses if f == "gravatar_email" else texts) for f in fields}
    managed = draw(st.booleans())
    email_list = draw(st.lists(addresses, unique_by=email_key, min_size=1)) if managed else None
    return DesiredUser(username, values, tuple(email_list) if email_list else None)


@st.composite
def desired_states(draw: st.DrawFn) -> DesiredState:
    names = draw(st.lists(usernames, unique=True, min_size=1, max_size=5))
    return DesiredState(tuple(draw(desired_users(name)) for name in names))


def live_of(desired: DesiredState) -> dict[str, LiveAccount | Problem]:
    """The live state in which every desired thing is already true."""
    live: dict[str, LiveAccount | Problem] = {}
    for user in desired.users:
        values = {f: v for f, v in user.profile.items() if f != "gravatar_email"}
        gravatar = user.profile.get("gravatar_email")
        live_profile = profile(**values, gravatar_url=gravatar_url(gravatar) if gravatar else "")
        live[user.username] = LiveAccount(
            user.username, live_profile, emails(*user.emails) if user.emails else None
        )
    return live


def apply_in_memory(live: LiveAccount, plan: Plan, desired: DesiredUser) -> LiveAccount:
    """What the API would hold after the plan's actions (the test's model of the API)."""
    for action in plan.changes:
        if isinstance(action, UpdateProfile):
            assert live.profile is not None
            body = action.body()
            gravatar = body.pop("gravatar_email", None)
            new_profile = dataclasses.replace(live.profile, **body)
            if gravatar is not None:
                new_profile = dataclasses.replace(
                    new_profile, gravatar_url=gravatar_url(gravatar) if gravatar else ""
                )
            live = dataclasses.replace(live, profile=new_profile)
        elif isinstance(action, AddEmail):
            live = live.with_email_added(LiveEmail(action.email, False, False))
        else:
            live = live.with_email_removed(action.email)
    return live


@given(desired_states())
def test_plan_of_desired_against_its_own_live_state_is_empty(desired: DesiredState):
    plan = build_plan(desired, live_of(desired))
    assert plan.changes == ()
    assert plan.warnings == ()


@given(desired_states(), st.randoms())
def test_plan_does_not_depend_on_order(desired: DesiredState, random):
    live = {
        u.username: LiveAccount(u.username, profile(), emails("p@example.com", "q@example.com"))
        for u in desired.users
    }
    users = list(desired.users)
    random.shuffle(users)
    shuffled = [
        dataclasses.replace(u, emails=tuple(random.sample(u.emails, len(u.emails))))
        if u.emails
        else u
        for u in users
    ]
    assert build_plan(desired, live) == build_plan(DesiredState(tuple(shuffled)), live)


@given(desired_states(), st.data())
def test_applying_the_plan_yields_the_desired_state(desired: DesiredState, data):
    live: dict[str, LiveAccount | Problem] = {}
    for user in desired.users:
        extra = data.draw(st.lists(addresses, unique_by=email_key, max_size=3))
        primary = "primary@example.net"
        wanted = list(user.emails or ())
        live[user.username] = LiveAccount(
            user.username,
            profile(full_name="old", gravatar_url=gravatar_url("old@example.net")),
            emails(primary, *[e for e in extra if email_key(e) not in map(email_key, wanted)]),
        )
    plan = build_plan(desired, live)
    after: dict[str, LiveAccount | Problem] = {}
    for user in desired.users:
        before = live[user.username]
        assert isinstance(before, LiveAccount)
        own = Plan(tuple(a for a in plan.changes if a.user == user.username))
        after[user.username] = apply_in_memory(before, own, user)
    second = build_plan(desired, after)
    assert second.changes == ()


@pytest.mark.parametrize(
    ("address", "url", "matches"),
    [
        pytest.param("a@example.com", gravatar_url("a@example.com").upper(), True, id="upper-hex"),
        pytest.param("", gravatar_url(""), True, id="digest-of-empty-means-none"),
        pytest.param("", "", True, id="no-url-no-address"),
        pytest.param("a@example.com", "", False, id="no-url-but-address"),
        pytest.param("", gravatar_url("a@example.com"), False, id="url-but-no-address"),
    ],
)
def test_gravatar_comparison_edges(address: str, url: str, matches: bool):
    from syncd.core.fields import gravatar_matches

    assert gravatar_matches(address, url) is matches


MODE_CASES = [
    # mode, owned keys, actions, unmanaged notes, claims
    pytest.param(
        EmailsMode.EXACT,
        frozenset(),
        [AddEmail("janedoe", "new@example.com"), DeleteEmail("janedoe", "hand@example.com")],
        [],
        [],
        id="exact-deletes-the-unlisted",
    ),
    pytest.param(
        EmailsMode.ADDITIVE,
        frozenset({"hand@example.com"}),
        [AddEmail("janedoe", "new@example.com")],
        [],
        [],
        id="additive-deletes-nothing-even-owned",
    ),
    pytest.param(
        EmailsMode.OWNED,
        frozenset(),
        [AddEmail("janedoe", "new@example.com")],
        [UserEmail("janedoe", "hand@example.com")],
        [UserEmail("janedoe", "jane@example.com")],
        id="owned-with-an-empty-ledger-deletes-nothing",
    ),
    pytest.param(
        EmailsMode.OWNED,
        frozenset({"hand@example.com", "jane@example.com"}),
        [AddEmail("janedoe", "new@example.com"), DeleteEmail("janedoe", "hand@example.com")],
        [],
        [],
        id="owned-deletes-what-it-owns",
    ),
]


@pytest.mark.parametrize(("mode", "owned", "actions", "unmanaged", "claims"), MODE_CASES)
def test_emails_mode(
    mode: EmailsMode,
    owned: frozenset[str],
    actions: list[AddEmail | DeleteEmail],
    unmanaged: list[UserEmail],
    claims: list[UserEmail],
) -> None:
    desired = DesiredUser("janedoe", {}, ("jane@example.com", "new@example.com"), None, mode)
    live = LiveAccount("janedoe", profile(), emails("jane@example.com", "Hand@example.com"))
    plan = build_plan(DesiredState((desired,)), {"janedoe": live}, owned={"janedoe": owned})
    expected = [
        DeleteEmail("janedoe", "Hand@example.com") if isinstance(a, DeleteEmail) else a
        for a in actions
    ]
    assert list(plan.changes) == expected
    assert [note.email.lower() for note in plan.unmanaged] == [n.email for n in unmanaged]
    assert list(plan.claims) == claims
    document = plan.to_json({})
    assert ("unmanaged_emails" in document) == bool(unmanaged)


@pytest.mark.parametrize("mode", list(EmailsMode))
def test_an_owned_address_read_gone_is_released_in_any_mode(mode: EmailsMode) -> None:
    # Even `exact` with nothing to change: a user `owned` again later must not find
    # the owner's address, added again by hand meanwhile, still syncd's.
    desired = DesiredUser("janedoe", {}, ("jane@example.com",), None, mode)
    live = LiveAccount("janedoe", profile(), emails("jane@example.com"))
    owned = {"janedoe": frozenset({"jane@example.com", "gone@example.com"})}
    plan = build_plan(DesiredState((desired,)), {"janedoe": live}, owned=owned)
    assert list(plan.releases) == [UserEmail("janedoe", "gone@example.com")]


def unmarked(*addresses: str) -> tuple[LiveEmail, ...]:
    return tuple(LiveEmail(a, True, False) for a in addresses)


@pytest.mark.parametrize(
    ("live", "deleted"),
    [
        pytest.param(
            LiveAccount(
                "janedoe", profile(email="kate@example.com"), unmarked("kate@example.com")
            ),
            [],
            id="the-profile-names-it",
        ),
        pytest.param(
            LiveAccount("janedoe", None, unmarked("kate@example.com")),
            [],
            id="the-profile-unread-any-may-be-the-primary",
        ),
        pytest.param(
            LiveAccount("janedoe", profile(email=""), unmarked("kate@example.com")),
            ["kate@example.com"],
            id="no-primary-at-all",
        ),
        pytest.param(
            LiveAccount(
                "janedoe",
                profile(email="kate@example.com"),
                (
                    LiveEmail("kate@example.com", True, False),
                    LiveEmail("p@example.com", True, True),
                ),
            ),
            [],
            id="list-and-profile-disagree-both-kept",
        ),
    ],
)
def test_an_address_that_may_be_the_primary_is_never_deleted(
    live: LiveAccount, deleted: list[str]
):
    desired = DesiredUser("janedoe", emails=("p@example.com",))
    plan = plan_one(desired, live)
    assert [a.email for a in plan.changes if isinstance(a, DeleteEmail)] == deleted
    assert bool(plan.warnings) == (not deleted)
