"""``python -m adapters.localkafka``: run a local single-node Kafka broker until Ctrl-C."""

from adapters.localkafka.launcher import main

raise SystemExit(main())
