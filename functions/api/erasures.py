"""Requests to erase a recipient's tracking data.

The API function may not delete raw events or tracking logs (only the tracking workflow writes
them), so a request is recorded here and the workflow, started at once, carries it out. The email
addresses kept for the opt-out feed are the API's own (written at rendering): erased here at once,
before the request is recorded, so a failure leaves no request that looks complete.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

from functions.api import launcher as launchers
from functions.api import opt_outs
from functions.api.launcher import WorkflowLauncher
from functions.api.opt_outs import OptOutStore
from functions.shared import ids, timeutil
from functions.shared.errors import InvalidRequest
from functions.shared.models import ErasureModel

MAX_RECIPIENT_ID = 256


class ErasureRequested(BaseModel):
    id: str
    recipient_id: str
    status: str
    requested_at: str
    run_id: str


def request_erasure(
    recipient_id: str,
    now: datetime | None = None,
    launcher: WorkflowLauncher | None = None,
    emails: OptOutStore | None = None,
) -> ErasureRequested:
    if not recipient_id or len(recipient_id) > MAX_RECIPIENT_ID:
        raise InvalidRequest(f"a recipient id is 1 to {MAX_RECIPIENT_ID} characters long")
    (emails or opt_outs.repository()).erase_emails(recipient_id)
    moment = now or timeutil.now()
    erasure = ErasureModel(
        sk=ids.run_id(moment), recipient_id=recipient_id, requested_at=timeutil.iso(moment)
    )
    erasure.save()
    run_id = ids.run_id(moment)
    (launcher or launchers.launcher()).launch(run_id)
    return ErasureRequested(
        id=str(erasure.sk),
        recipient_id=recipient_id,
        status="pending",
        requested_at=str(erasure.requested_at),
        run_id=run_id,
    )
