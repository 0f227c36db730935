"""A process that sells test purchases through the ledger's batcher as fast as it can (for chaos tests).

    python tests/support/product_worker.py DATABASE_URL TENANT CLIENTS FIRST_ID

Each client buys purchases `p<FIRST_ID + k*CLIENTS + client>` from one of the buyers, and prints
`ack <id>` (postings and product rows committed) or `refused <id> <code>` as soon as the ledger
answers, flushing each line, so that a parent that SIGKILLs this process knows what was
acknowledged. With FIRST_ID negative it instead retries the ids read from stdin, one per line.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kassa.ledger import Batcher, LedgerService, TransactionApplied
from kassa.shared.errors import KassaError
from kassa.store.pool import create_pool
from support.product import Purchase, Purchases, purchase_command, purchase_write

BUYERS = [f"buyer{n}" for n in range(8)]
PRICE = 100


def purchase(tenant: str, number: int) -> Purchase:
    return Purchase(tenant, f"p{number}", BUYERS[number % len(BUYERS)], PRICE)


async def buy(ledger: LedgerService, writer: Purchases, item: Purchase) -> None:
    try:
        result = await ledger.execute(purchase_command(item), product=purchase_write(writer, item))
    except KassaError as error:
        print(f"refused {item.id} {error.code}", flush=True)
        return
    assert isinstance(result, TransactionApplied)
    print(f"ack {item.id}", flush=True)


async def main(url: str, tenant: str, clients: int, first: int) -> None:
    pool = await create_pool(url, size_max=4)
    batcher = Batcher(pool)
    batcher.start()
    ledger = LedgerService(pool, batcher)
    writer = Purchases()
    if first < 0:
        numbers = [int(line.strip().removeprefix("p")) for line in sys.stdin if line.strip()]
        await asyncio.gather(*(buy(ledger, writer, purchase(tenant, n)) for n in numbers))
        print("done", flush=True)
        await batcher.stop()
        await pool.close()
        return

    async def client(index: int) -> None:
        number = first + index
        while True:
            await buy(ledger, writer, purchase(tenant, number))
            number += clients

    await asyncio.gather(*(client(i) for i in range(clients)))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
