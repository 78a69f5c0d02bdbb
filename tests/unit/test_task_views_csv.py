"""Saved views and the task CSV files: who sees and changes a view, how a view
and explicit parameters combine, a view's filter checked by the list's own
schema; the CSV cells a spreadsheet would run, the import's rows and errors."""
import csv
import io

import pytest
from marshmallow import ValidationError

from shared import csvtext
from shared.errors import Forbidden, ValidationFailed
from task_svc import domain, schemas


def member(role="member", teams=None):
    return {"role": role, "employee_id": "e-me", "user_id": "u-me", "status": "active",
            "teams": teams or {}}


def view(**kw):
    return {"_id": "v1", "org_id": "o1", "owner_user_id": "u-owner", "visibility": "private",
            "team_id": None, "filter": {}, **kw}


# --- who sees, who changes -------------------------------------------------------------
def test_a_private_view_is_its_owners_alone_whatever_the_role():
    private = view()
    assert domain.can_see_view(private, "u-owner", member())
    assert not domain.can_see_view(private, "u-me", member("owner"))
    assert not domain.can_change_view(private, "u-me", member("owner"))


def test_a_team_view_is_seen_by_that_teams_members_and_an_org_view_by_everyone():
    team = view(visibility="team", team_id="t1")
    assert domain.can_see_view(team, "u-me", member(teams={"t1": "member"}))
    assert not domain.can_see_view(team, "u-me", member(teams={"t2": "member"}))
    assert not domain.can_see_view(team, "u-me", member("admin"))  # not in the team: not listed
    assert domain.can_see_view(view(visibility="org"), "u-me", member())


def test_a_shared_view_is_changed_by_its_owner_or_a_manager_not_by_a_member():
    shared = view(visibility="org")
    assert domain.can_change_view(shared, "u-owner", member())
    assert domain.can_change_view(shared, "u-me", member("manager"))
    assert not domain.can_change_view(shared, "u-me", member())


def test_sharing_with_a_team_needs_membership_of_it_or_a_manager():
    domain.require_view_share(member(teams={"t1": "member"}), "team", "t1")
    domain.require_view_share(member("manager"), "team", "t9")
    domain.require_view_share(member(), "org", None)
    with pytest.raises(Forbidden):
        domain.require_view_share(member(teams={"t1": "member"}), "team", "t2")


def test_explicit_parameters_replace_the_views_and_paging_is_the_requests():
    saved = {"status": "todo", "sort": "due", "labels": ["a"]}
    assert domain.applied_view_args(saved, {"view": "v1", "status": "done", "limit": "5"}) == \
        {"status": "done", "sort": "due", "labels": ["a"], "limit": "5"}
    # the merged arguments go through the list's own schema
    loaded = schemas.ListArgsSchema().load(domain.applied_view_args(saved, {"labels": "b,c"}))
    assert loaded["labels"] == ["b", "c"] and loaded["sort"] == "due"


# --- a view's filter: the list route's schema -----------------------------------------------
def test_a_views_filter_is_checked_and_stored_in_wire_form():
    data = schemas.ViewSchema().load({"name": "Mine", "filter": {
        "status": "todo", "labels": "docs,release", "due_before": "2026-03-01T00:00:00+01:00",
        "overdue": "true", "sort": "-due"}})
    assert data["filter"] == {"status": "todo", "labels": ["docs", "release"],
                              "due_before": "2026-03-01T00:00:00+01:00", "overdue": True,
                              "sort": "-due"}
    assert data["visibility"] == "private" and data["team_id"] is None


@pytest.mark.parametrize("body, field", [
    ({"name": "x", "filter": {"status": "someday"}}, "filter"),
    ({"name": "x", "filter": {"sort": "random"}}, "filter"),
    ({"name": "x", "filter": {"colour": "red"}}, "filter"),
    ({"name": "x", "filter": {"limit": "5"}}, "filter"),
    ({"name": "x", "filter": ["status"]}, "filter"),
    ({"name": ""}, "name"),
    ({"name": "x", "visibility": "team"}, "team_id"),
    ({"name": "x", "visibility": "org", "team_id": "t1"}, "team_id"),
    ({"name": "x", "visibility": "public"}, "visibility"),
])
def test_a_bad_view_names_the_field(body, field):
    with pytest.raises(ValidationError) as refused:
        schemas.ViewSchema().load(body)
    assert field in refused.value.messages, refused.value.messages


# --- CSV cells ------------------------------------------------------------------------------
@pytest.mark.parametrize("value, cell", [("=1+2", "'=1+2"), ("+33 1", "'+33 1"), ("-5", "'-5"),
                                         ("@SUM(A1)", "'@SUM(A1)"), ("\tx", "'\tx"),
                                         ("plain", "plain"), (None, ""), (3, "3")])
def test_cells_a_spreadsheet_would_run_are_quoted(value, cell):
    assert csvtext.safe_cell(value) == cell


def test_the_task_export_parses_back_with_its_columns():
    task = {"task_id": "k1", "title": '=HYPERLINK("http://evil")', "description": "a, \"b\"\nc",
            "status": "todo", "priority": "high", "labels": ["docs", "release"], "overdue": False,
            "due_at": None}
    rows = list(csv.DictReader(io.StringIO(schemas.csv_text([task], header=True))))
    assert list(rows[0]) == list(schemas.CSV_COLUMNS)
    assert rows[0]["title"].startswith("'=") and rows[0]["description"] == "a, \"b\"\nc"
    assert rows[0]["labels"] == "docs,release" and rows[0]["overdue"] == "false"
    assert rows[0]["due_at"] == ""


# --- the import's rows --------------------------------------------------------------------
def test_rows_are_checked_by_the_create_schema_with_their_line_numbers():
    text = ("Title,priority,labels,due_at,status\r\n"
            "Write notes,high,\"docs,release\",2026-03-01T12:00:00Z,done\r\n"
            ",low,,,\r\n"
            "\r\n"
            "Ship,someday,,,\r\n"
            "'=cmd,,,,\r\n")
    valid, errors = schemas.check_rows(domain.parse_rows(text))
    assert [(v["row"], v["task"]["title"], v["task"]["priority"]) for v in valid] == \
        [(2, "Write notes", "high"), (6, "=cmd", "medium")]  # an export's quote goes again
    assert valid[0]["task"]["labels"] == ["docs", "release"]
    assert [(e["row"], sorted(e["fields"])) for e in errors] == [(3, ["title"]), (5, ["priority"])]
    assert "priority" in errors[1]["error"]


@pytest.mark.parametrize("text", ["name,priority\r\nx,low\r\n", "", "title,title\r\nx,y\r\n"])
def test_a_file_that_is_not_a_task_csv_is_one_422_on_the_file(text):
    with pytest.raises(ValidationFailed) as refused:
        domain.parse_rows(text)
    assert "file" in refused.value.errors


def test_a_file_over_the_row_limit_is_refused():
    with pytest.raises(ValidationFailed):
        domain.parse_rows("title\r\n" + "x\r\n" * 4, max_rows=3)


def test_rows_naming_a_foreign_team_or_someone_not_active_are_refused():
    valid, _ = schemas.check_rows([(2, {"title": "a", "team_id": "t1", "assignee_id": "e1"}),
                                 (3, {"title": "b", "team_id": "t-other"}),
                                 (4, {"title": "c", "assignee_id": "e-gone"}),
                                 (5, {"title": "d"})])
    kept, errors = domain.refer_rows(valid, {"t1": {"team_id": "t1"}, "t-other": None},
                                     {"e1": {"status": "active"}, "e-gone": {"status": "inactive"}})
    assert [k["row"] for k in kept] == [2, 5]
    assert [(e["row"], list(e["fields"])) for e in errors] == [(3, ["team_id"]), (4, ["assignee_id"])]


@pytest.mark.parametrize("package", ["task_svc", "gateway_svc"])
def test_nameko_run_finds_one_service_in_a_module_with_entrypoint_mixins(package):
    """``nameko run <pkg>.service`` starts every class with entrypoints in the module's
    namespace: the entrypoint and route mixins must not be among them."""

    from nameko.cli.run import import_service

    found = import_service(f"{package}.service")
    assert [cls.__name__ for cls in found] == \
        [{"task_svc": "TaskService", "gateway_svc": "GatewayService"}[package]]
