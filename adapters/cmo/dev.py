"""Mitratech CMO's fake as `workbridge dev` runs it: HTTP, the dev key as a static user token."""

from __future__ import annotations

from typing import Any

from adapters.devkit import DEV_API_KEY, DevVendor

# The company time zone of the dev fake and the bridge's instance: the document's example
# ("India Standard Time").
DEV_TIME_ZONE = "Asia/Kolkata"

# The document's GET example action.
DOCUMENT_ACTION_ID = "14b44c76-b1d4-4df1-84b6-2f2f583ae67d"


async def start_dev() -> DevVendor:
    """Start the fake CMO over HTTP with the dev key as the static token of user 20518
    (`superadmin`, whose password for `/api/token` is the dev key too), and a few actions;
    actions change through the control API (`/_fake/actions/…`)."""
    from adapters.cmo.fake import DOCUMENT_USER_ID, FakeCmo, FakeCmoBehaviour

    fake = FakeCmo(
        # Static tokens alongside JWT: the document accepts them only with JWT and mTLS off;
        # here both kinds work, so the bridge may be switched to either.
        behaviour=FakeCmoBehaviour(static_token="always", company_time_zone=DEV_TIME_ZONE),
        static_tokens={DEV_API_KEY: DOCUMENT_USER_ID},
        logins={"superadmin": DEV_API_KEY},
    )
    ids = seed(fake)
    base_url = await fake.start()

    def subscribe(url: str) -> None:
        # CMO has no webhooks and no list: the bridge watches the actions it knows.
        del url

    return DevVendor(
        fake=fake,
        base_url=base_url,
        settings={
            "credentials": {"token": DEV_API_KEY},
            "options": {
                "auth": "token",
                "company_time_zone": DEV_TIME_ZONE,
                "tracked_ids": ids,
            },
        },
        changing_resources=frozenset({"actions"}),
        subscribe=subscribe,
        hints=f"""Change an action "in CMO" (found by the next watch round):
  curl -X PATCH {fake.control_url}/actions/{DOCUMENT_ACTION_ID} \\
    -d '{{"status": 3, "progress": 100}}'
  curl -X DELETE {fake.control_url}/actions/{ids[1]}""",
    )


def seed(fake: Any) -> list[str]:
    """The document's example actions (its GET example with its id, its POST example) and
    one created by an Event Workflow; their ids."""
    ids = [
        fake.create_action(
            {
                "orgUnitName": "Albama",
                "entityName": "Abs new test entity",
                "actionCategoryName": "Act",
                "actionText": "Action Created via public API #4 asd",
                "guidanceText": "Guidance Text for Action Created via public API #4",
                "responsibleUserLogin": "superadmin",
                "carbonCopyEmail": "test@example.com",
                "actionPriorityName": "High",
                "gpsCoordinates": {"X": -30.442976, "Y": 136.849222},
                "dueDate": "2021-07-02T13:59:59.997Z",
                "hoursTaken": 15,
                "actionValue": 25,
                "progress": 90,
                "residualRisk": {"consequenceCode": -1, "likelihoodCode": -1},
                "inherentRisk": {"consequenceCode": 2, "likelihoodCode": 2},
                "customFields": [{"customFieldName": "happiness", "value": "not so high score"}],
            },
            action_id=DOCUMENT_ACTION_ID,
        ),
        fake.create_action(
            {
                "orgUnitName": "North America Operations",
                "entityName": "Head Office",
                "actionCategoryName": "Emergency Response",
                "actionText": "Fix the pipes ",
                "guidanceText": "Guidance Text for Action Created via public API #3",
                "responsibleUserName": "Dan Johnson",
                "carbonCopyEmail": "test@example.com",
                "actionPriorityName": "High",
                "gpsCoordinates": {"X": 1, "Y": 2, "Z": 3},
                "dueDate": "2021-07-22T18:29:59.997Z",
                "hoursTaken": 15,
                "actionValue": 25,
                "progress": 33,
                "residualRisk": {"consequenceCode": 1, "likelihoodCode": 1},
                "inherentRisk": {"consequenceCode": 2, "likelihoodCode": 2},
                "attachmentRequired": True,
                "confidential": False,
                "customFields": [{"customFieldName": "happiness", "value": "very high score"}],
            }
        ),
        fake.create_action(
            {
                "orgUnitName": "North America Operations",
                "actionCategoryName": "Emergency Response",
                "actionText": "Inspect the pressure valve after the alarm",
                "responsibleUserLogin": "superadmin",
                "dueDate": "2021-07-23T18:29:59.997Z",
            },
            created_by_event_workflow=True,
        ),
    ]
    return ids
