"""Drives a complaint case through the Python client generated from /openapi.json (by
scripts/client-check.sh): start, read, find the task in the assignee's inbox, complete it, read
the history. Every answer must parse into the generated models; any mismatch between the
document and the server fails here.

    python scripts/client_drive.py BASE_URL
"""
import sys

from caseflow_client import AuthenticatedClient
from caseflow_client.api.cases import get_instance, history, start
from caseflow_client.api.tasks import complete, inbox
from caseflow_client.models import (
    CaseStatus,
    CompleteRequest,
    Completed,
    CompleteRequestFields,
    History,
    Instance,
    StartRequest,
    StartRequestFields,
    TaskPage,
)


def client(base: str, token: str) -> AuthenticatedClient:
    return AuthenticatedClient(base_url=base, token=token, raise_on_unexpected_status=True)


def main(base: str) -> None:
    crm = client(base, "dev-crm")
    fields = StartRequestFields.from_dict(
        {"customer": "第一中学", "contact": "138-0000-0000", "content": "投影仪无法开机", "urgency": "high"}
    )
    case = start.sync(client=crm, body=StartRequest(process="complaint", fields=fields), idempotency_key="py-client-1")
    assert isinstance(case, Instance), case
    assert case.status == CaseStatus.RUNNING and case.current_steps == ["receive"], case
    task = case.tasks[0]
    again = get_instance.sync(str(case.id), client=crm)
    assert isinstance(again, Instance) and again.business_key == case.business_key, again
    # The assignee finds the task in their inbox and completes it (tokens are dev-<user>).
    assignee = client(base, "dev-" + task.assignee.replace("_", "-"))
    page = inbox.sync(client=assignee, limit=50)
    assert isinstance(page, TaskPage), page
    assert task.id in [t.id for t in page.tasks], page
    answers = CompleteRequestFields.from_dict({"cause": "quality"})
    moved = complete.sync(task.id, client=assignee, body=CompleteRequest(fields=answers))
    # The case as it is now, and the caller's tasks in it to go on with (`next_for_you`).
    assert isinstance(moved, Completed), moved
    assert moved.fields["department"] == "rnd", moved.fields
    assert moved.next_for_you == [t.id for t in moved.tasks if t.assignee == task.assignee], moved
    trail = history.sync(str(case.id), client=client(base, "dev-admin"))
    assert isinstance(trail, History), trail
    events = [e.event for e in trail.history]
    assert events[0] == "started" and "task_completed" in events, events
    print(f"python client: case {case.id} started, read, task {task.id} completed, {len(events)} history entries")


if __name__ == "__main__":
    main(sys.argv[1])
