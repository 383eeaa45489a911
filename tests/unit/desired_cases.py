"""Good and bad desired-state files, each with what loading it gives: the tables that
the loader's tests (test_loading) and the JSON Schema's (test_loading_schema) share."""

from __future__ import annotations

import pytest

from syncd.core.desired import DesiredUser

HEAD = "version: 1\nusers:\n"


def user(username: str, emails: tuple[str, ...] | None = None, **profile: str) -> DesiredUser:
    return DesiredUser(username, profile, emails)


GOOD = [
    pytest.param(
        HEAD + "  janedoe:\n"
        "    full_name: Jane Doe\n"
        "    location: Private Island\n"
        "    company: Retired\n"
        "    profile_url: http://janedoe.com/\n"
        "    gravatar_email: jane.doe@example.com\n"
        "    emails:\n"
        "      - jane.doe@example.com\n"
        "      - jane.doe+other@example.com\n",
        [
            user(
                "janedoe",
                ("jane.doe@example.com", "jane.doe+other@example.com"),
                full_name="Jane Doe",
                location="Private Island",
                company="Retired",
                profile_url="http://janedoe.com/",
                gravatar_email="jane.doe@example.com",
            )
        ],
        id="every-setting",
    ),
    pytest.param(
        HEAD + "  janedoe:\n    full_name: Jane Doe\n",
        [user("janedoe", full_name="Jane Doe")],
        id="absent-keys-are-unmanaged",
    ),
    pytest.param(
        HEAD + '  janedoe:\n    full_name: ""\n    location:\n    company: ~\n'
        "    profile_url: ''\n    gravatar_email: null\n",
        [
            user(
                "janedoe", full_name="", location="", company="", profile_url="", gravatar_email=""
            )
        ],
        id="empty-string-and-null-mean-empty",
    ),
    pytest.param(
        HEAD + "  janedoe: {}\n  johnsmith:\n  ops_robot: ~\n",
        [user("janedoe"), user("johnsmith"), user("ops_robot")],
        id="users-listed-with-nothing-managed",
    ),
    pytest.param(
        HEAD + "  janedoe:\n    emails: []\n", [user("janedoe", ())], id="emails-empty-list"
    ),
    pytest.param(
        HEAD + "  janedoe:\n    emails: [b@example.com, A@example.com]\n",
        [user("janedoe", ("b@example.com", "A@example.com"))],
        id="emails-as-written-in-order",
    ),
    pytest.param("version: 1\nusers: {}\n", [], id="no-users"),
    pytest.param("version: 1\nusers:\n", [], id="users-null"),
    pytest.param(
        HEAD + "  zeta: {}\n  alpha: {}\n  mike: {}\n",
        [user("zeta"), user("alpha"), user("mike")],
        id="key-order-kept",
    ),
    pytest.param(HEAD + "  1234: {}\n", [user("1234")], id="numeric-username-is-text"),
    pytest.param(
        HEAD + "  janedoe:\n    location: no\n    company: on\n",
        [user("janedoe", location="no", company="on")],
        id="yaml-1.2-no-is-a-string",
    ),
    pytest.param(
        HEAD + "  janedoe:\n    location: 2024-01-31\n    company: 1_000\n",
        [user("janedoe", location="2024-01-31", company="1_000")],
        id="yaml-1.2-core-schema-dates-are-text",
    ),
    pytest.param(
        HEAD + '  janedoe:\n    location: "42"\n', [user("janedoe", location="42")], id="quoted"
    ),
    pytest.param(
        "\ufeff" + HEAD + "  janedoe: {}\n", [user("janedoe")], id="utf8-byte-order-mark"
    ),
    pytest.param(
        (HEAD + "  janedoe:\n    full_name: Jane\n").replace("\n", "\r\n"),
        [user("janedoe", full_name="Jane")],
        id="crlf",
    ),
    pytest.param(
        "# comment\n{version: 1, users: {janedoe: {emails: [j@example.com]}}}  # flow\n",
        [user("janedoe", ("j@example.com",))],
        id="flow-style-and-comments",
    ),
    pytest.param(
        HEAD + "  janedoe: &jane\n    full_name: Jane\n",
        [user("janedoe", full_name="Jane")],
        id="unused-anchor-is-harmless",
    ),
    pytest.param(
        "---\n" + HEAD + "  janedoe:\n    full_name: Zoë Ångström 山田\n...\n",
        [user("janedoe", full_name="Zoë Ångström 山田")],
        id="document-markers-and-unicode",
    ),
]


BAD = [
    pytest.param(
        HEAD + "  janedoe:\n    ful_name: Jane\n",
        ["d.yaml:4:5: unknown key 'ful_name' (did you mean 'full_name'?)"],
        id="near-miss",
    ),
    pytest.param(
        HEAD + "  janedoe:\n    Emails: []\n",
        ["d.yaml:4:5: unknown key 'Emails' (did you mean 'emails'?)"],
        id="near-miss-by-case",
    ),
    pytest.param(
        "version: 1\nuser: {}\nusers: {}\n",
        ["d.yaml:2:1: unknown key 'user' (did you mean 'users'?)"],
        id="top-level-near-miss",
    ),
    pytest.param(
        "version: 1\nusers: {}\njanedoe: {}\n",
        ["d.yaml:3:1: unknown key 'janedoe' (users go under 'users:')"],
        id="user-at-top-level",
    ),
    pytest.param("users: {}\n", ["d.yaml:1:1: missing 'version: 1'"], id="missing-version"),
    pytest.param(
        "version: 1\n",
        ["d.yaml:1:1: missing 'users' (a mapping of usernames; 'users: {}' for none)"],
        id="missing-users",
    ),
    pytest.param(
        "version: 2\nusers: {}\n",
        ["d.yaml:1:10: unsupported version 2: this syncd reads version 1"],
        id="version-2",
    ),
    pytest.param(
        "version: '1'\nusers: {}\n",
        ["d.yaml:1:10: version must be the number 1, not the string '1'"],
        id="version-string",
    ),
    pytest.param(
        "version: true\nusers: {}\n",
        ["d.yaml:1:10: version must be the number 1, not true"],
        id="version-boolean",
    ),
    pytest.param(
        "version: 1.0\nusers: {}\n",
        ["d.yaml:1:10: version must be the number 1, not 1.0"],
        id="version-float",
    ),
    pytest.param(
        "- 1\n",
        ["d.yaml:1:1: the top level must be a mapping with 'version: 1' and 'users', not a list"],
        id="top-level-list",
    ),
    pytest.param(
        "version: 1\nusers: [janedoe]\n",
        ["d.yaml:2:8: 'users' must be a mapping of usernames to their settings, not a list"],
        id="users-list",
    ),
    pytest.param(
        HEAD + "  Jane_Doe: {}\n",
        [
            "d.yaml:3:3: invalid username 'Jane_Doe': 4 to 30 of lowercase a-z, 0-9 and '_'"
            " (did you mean 'jane_doe'?)"
        ],
        id="username-case",
    ),
    pytest.param(
        HEAD + "  jan: {}\n",
        ["d.yaml:3:3: invalid username 'jan': 4 to 30 of lowercase a-z, 0-9 and '_'"],
        id="username-short",
    ),
    pytest.param(
        HEAD + "  janedoe: [x]\n",
        ["d.yaml:3:12: user 'janedoe' must be a mapping of settings (or empty), not a list"],
        id="user-list",
    ),
    pytest.param(
        HEAD + "  janedoe:\n    location: 42\n",
        [
            'd.yaml:4:15: location must be a string ("" or null for empty), not a number'
            ' (quote it to mean the text: "42")'
        ],
        id="profile-number",
    ),
    pytest.param(
        HEAD + "  janedoe:\n    location: 0x2A\n",
        [
            'd.yaml:4:15: location must be a string ("" or null for empty), not a number'
            ' (quote it to mean the text: "0x2A")'
        ],
        id="profile-hex-number-quoted-as-written",
    ),
    pytest.param(
        HEAD + "  janedoe:\n    company: [a]\n",
        ['d.yaml:4:14: company must be a string ("" or null for empty), not a list'],
        id="profile-list",
    ),
    pytest.param(
        HEAD + "  janedoe:\n    company: {a: b}\n",
        ['d.yaml:4:14: company must be a string ("" or null for empty), not a mapping'],
        id="profile-mapping",
    ),
    pytest.param(
        HEAD + "  janedoe:\n    full_name: " + "x" * 256 + "\n",
        ["d.yaml:4:16: full_name is 256 characters long; the limit is 255"],
        id="full-name-too-long",
    ),
    pytest.param(
        HEAD + "  janedoe:\n    emails: j@example.com\n",
        ["d.yaml:4:13: emails must be a list of addresses, not a string"],
        id="emails-string",
    ),
    pytest.param(
        HEAD + "  janedoe:\n    emails:\n",
        [
            "d.yaml:4:5: emails must be a list of addresses, not null:"
            " write 'emails: []' to keep only the primary address"
        ],
        id="emails-null-at-its-key",
    ),
    pytest.param(
        HEAD + "  janedoe:\n    groups:\n    ignore: ~\n",
        [
            "d.yaml:4:5: groups must be a list of names, not null:"
            " write 'groups: []' or leave the key out for none",
            "d.yaml:5:13: ignore must be a list of names, not null:"
            " write 'ignore: []' or leave the key out for none",
        ],
        id="groups-and-ignore-null-get-their-own-hint",
    ),
    pytest.param(
        HEAD + "  janedoe:\n    emails: [j@example.com, [k@example.com]]\n",
        ["d.yaml:4:29: an email address must be a string, not a list"],
        id="email-not-string",
    ),
    pytest.param(
        HEAD + "  janedoe:\n    emails:\n      - j@example\n",
        ["d.yaml:5:9: invalid email address 'j@example'"],
        id="invalid-email",
    ),
    pytest.param(
        HEAD + "  janedoe:\n    gravatar_email: j.example.com\n",
        ["d.yaml:4:21: gravatar_email: invalid email address 'j.example.com'"],
        id="invalid-gravatar-email",
    ),
    pytest.param(
        HEAD + "  janedoe:\n    profile_url: www.example.com\n",
        [
            "d.yaml:4:18: profile_url: invalid URL 'www.example.com':"
            ' expected http:// or https://, or "" for none'
        ],
        id="invalid-url",
    ),
    pytest.param(
        HEAD + "  janedoe:\n    emails: [J@Example.com, j@example.com, x@example.com]\n",
        [
            "d.yaml:4:14: duplicate email 'J@Example.com'"
            " (also at d.yaml:4:29; addresses compare case-insensitively)",
            "d.yaml:4:29: duplicate email 'j@example.com'"
            " (also at d.yaml:4:14; addresses compare case-insensitively)",
        ],
        id="duplicate-email-by-case",
    ),
    pytest.param(
        HEAD + "  janedoe:\n    emails: [j@example.com, j@example.com]\n",
        [
            "d.yaml:4:14: duplicate email 'j@example.com' (also at d.yaml:4:29)",
            "d.yaml:4:29: duplicate email 'j@example.com' (also at d.yaml:4:14)",
        ],
        id="duplicate-email-same-case",
    ),
    pytest.param(
        HEAD + "  janedoe: {}\n  johnsmith: {}\n  janedoe: {}\n  janedoe: {}\n",
        [
            "d.yaml:3:3: duplicate user 'janedoe' (also at d.yaml:5:3, d.yaml:6:3)",
            "d.yaml:5:3: duplicate user 'janedoe' (also at d.yaml:3:3, d.yaml:6:3)",
            "d.yaml:6:3: duplicate user 'janedoe' (also at d.yaml:3:3, d.yaml:5:3)",
        ],
        id="duplicate-user-in-file",
    ),
    pytest.param(
        HEAD + "  janedoe:\n    company: A\n    company: B\n",
        [
            "d.yaml:4:5: duplicate key 'company' (also at d.yaml:5:5)",
            "d.yaml:5:5: duplicate key 'company' (also at d.yaml:4:5)",
        ],
        id="duplicate-profile-key",
    ),
    pytest.param(
        HEAD + "  janedoe:\n    full_name: *name\n",
        ["d.yaml:4:16: YAML aliases are not allowed ('*name'): write the value out"],
        id="alias",
    ),
    pytest.param(
        HEAD + "  janedoe:\n    full_name: !!python/name:os.system ''\n",
        [
            "d.yaml:4:16: YAML tag '!!python/name:os.system' is not allowed:"
            " the desired state holds only strings, lists and mappings"
        ],
        id="python-tag",
    ),
    pytest.param(
        HEAD + "  janedoe:\n    full_name: [Jane\n",
        [
            "d.yaml:5:1: invalid YAML: did not find expected ',' or ']'"
            " (while parsing a flow sequence at 4:16)"
        ],
        id="syntax-error",
    ),
    pytest.param(
        HEAD + "\tjanedoe: {}\n",
        [
            "d.yaml:3:1: invalid YAML: found character '\\t' that cannot start any token;"
            " indent with spaces, YAML does not allow tabs there"
        ],
        id="tab",
    ),
    pytest.param("", ["d.yaml:1:1: empty file: expected 'version: 1' and 'users'"], id="empty"),
    pytest.param(
        "# only a comment\n\n",
        ["d.yaml:1:1: empty file: expected 'version: 1' and 'users'"],
        id="only-comments",
    ),
    pytest.param(
        HEAD + "  janedoe:\n    suspend: true\n",
        [
            "d.yaml:4:14: suspend must be a mapping with a reason and, optionally, an end: "
            "{reason: INC-123} or {reason: INC-123, until: 2027-01-31}, not a boolean"
        ],
        id="suspend-boolean",
    ),
    pytest.param(
        HEAD + "  janedoe:\n    suspend: INC-123\n",
        [
            "d.yaml:4:14: suspend must be a mapping with a reason and, optionally, an end: "
            "{reason: INC-123} or {reason: INC-123, until: 2027-01-31}, not a string"
        ],
        id="suspend-string",
    ),
    pytest.param(
        HEAD + "  janedoe:\n    suspend: {reason: 123}\n",
        [
            "d.yaml:4:23: suspend.reason must be a string (an incident, a ticket), not a number"
            ' (quote it to mean the text: "123")'
        ],
        id="suspend-reason-number",
    ),
    pytest.param(
        HEAD + "  janedoe:\n    suspend: {reason: x, until: [2027]}\n",
        [
            "d.yaml:4:33: suspend.until must be a date (2027-01-31) or an ISO datetime with a "
            "zone (2027-01-31T18:00:00+01:00), not a list"
        ],
        id="suspend-until-list",
    ),
    pytest.param(
        "version: 1\nusers: {}\n---\nversion: 1\n",
        ["d.yaml:3:1: a second YAML document ('---') is not allowed: one document per file"],
        id="two-documents",
    ),
]
