"""The parts of the command worker, one job each (composed in `adapters.core.command_worker`).

- `model`: a command record decoded, and what validation makes of it;
- `validation`: whether a command can be sent, and the call it becomes;
- `decision`: what a command's ledger facts mean (pure: no Kafka, no I/O);
- `executor`: the vendor call, with look-ups to reconcile a call cut off by a crash;
- `scheduler`: per-subject order, one command per idempotency key, the committable offset;
- `txn_writer`: in-flight marks, results, ledger entries and DLQ copies as transactions;
- `partition_owner`: the consumer group, partition hand-overs and the fetch loop.

The ledger itself is `adapters.core.ledger` (its records), `ledger_store` (one partition's
ledger), `ledger_index` (its index on disk) and `ledger_log` (its topic).
"""
