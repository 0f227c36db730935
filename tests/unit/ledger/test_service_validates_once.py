"""A command is validated once on its way to the batcher: by the ledger, unless the caller says
it has validated that very (frozen) command, as the HTTP routes do before the Idempotency-Key.
The routes' own check is what then stands between bad input and the ledger."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import pytest

from kassa.api.routes import transactions, transfers
from kassa.api.schemas import TransferCreate
from kassa.api.transaction_schemas import PostingIn, TransactionCreate
from kassa.ledger import service
from kassa.ledger.domain.model import CreateTransfer
from kassa.ledger.service import LedgerService
from kassa.shared.errors import InvalidRequest

if TYPE_CHECKING:
    from kassa.ledger.adapters.engine import Job, JobResult


class Recording:
    """A batcher that records what reaches it and answers nothing useful."""

    expiry_writers: ClassVar[list[Any]] = []

    def __init__(self) -> None:
        self.jobs: list[Job] = []

    async def submit(self, job: Job) -> JobResult:
        self.jobs.append(job)
        return InvalidRequest("stub")


def command(amount: int, metadata: dict[str, Any] | None = None) -> CreateTransfer:
    return CreateTransfer("ten_1", "t1", "a", "b", "EUR", amount, False, None, None, metadata or {}, b"h")


@pytest.fixture
def validations(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    seen: list[object] = []
    real = service.validate

    def counting(cmd: Any) -> None:
        seen.append(cmd)
        real(cmd)

    monkeypatch.setattr(service, "validate", counting)
    return seen


async def test_the_ledger_validates_a_command_it_is_not_told_was_validated(validations: list[object]) -> None:
    batcher = Recording()
    ledger = LedgerService(None, batcher)  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest, match="amount"):
        await ledger.execute(command(0))
    assert batcher.jobs == [] and len(validations) == 1
    with pytest.raises(InvalidRequest, match="stub"):
        await ledger.execute(command(5))
    assert len(batcher.jobs) == 1 and len(validations) == 2


async def test_a_command_the_caller_validated_is_not_validated_again(validations: list[object]) -> None:
    batcher = Recording()
    ledger = LedgerService(None, batcher)  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest, match="stub"):
        await ledger.execute(command(5), validated=True)
    assert len(batcher.jobs) == 1 and validations == []


def test_the_routes_validate_the_commands_they_hand_over_as_validated() -> None:
    # Input the edge schema lets through and only the domain check refuses: a reserved metadata key.
    reserved = {"kassa_product": "ppv"}
    with pytest.raises(InvalidRequest, match="reserved"):
        transfers.to_command(
            "ten_1",
            TransferCreate(debit_account_id="a", credit_account_id="b", amount=1, currency="EUR", metadata=reserved),
        )
    leg = PostingIn(debit_account_id="a", credit_account_id="b", amount=1, currency="EUR")
    with pytest.raises(InvalidRequest, match="reserved"):
        transactions.to_command("ten_1", TransactionCreate(postings=[leg], metadata=reserved))
    with pytest.raises(InvalidRequest, match="'XXX'"):  # an unknown currency passes the schema's pattern
        unknown = TransferCreate(debit_account_id="a", credit_account_id="b", amount=1, currency="XXX")
        transfers.to_command("ten_1", unknown)
